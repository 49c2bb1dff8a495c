/** What the proxy benchmark's child scripts share. */

/** The HTTP target's body: 63 visible bytes and a newline. Every response through a proxy must be exactly this. */
export const BODY = 'archlab bench proxy target '.padEnd(63, '.') + '\n';
