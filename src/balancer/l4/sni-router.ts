/**
 * Picks the pool for a TLS stream by its SNI server name (TLS passthrough). Pure; built once per
 * listener from `listeners[].sni`.
 *
 * An exact name wins; otherwise the longest matching wildcard ("*.example.com" matches any depth of
 * subdomain, as L7 host routes do, but not "example.com" itself); otherwise `defaultPool`. A hello
 * without SNI, or a stream that is not TLS, goes to `defaultPool`. `undefined` means: close.
 */
export interface SniRoute {
  /** Lower-case "db.example.com" or "*.example.com" (config.ts validates and lower-cases). */
  serverName: string;
  pool: string;
}

export class SniRouter {
  private readonly exact = new Map<string, string>();
  /** ".example.com" -> pool, longest suffix first. */
  private readonly wildcards: { suffix: string; pool: string }[] = [];

  constructor(
    routes: readonly SniRoute[],
    readonly defaultPool: string | undefined,
  ) {
    for (const r of routes) {
      const name = r.serverName.toLowerCase();
      // The first route for a name wins, as the first matching L7 route does.
      if (name.startsWith('*.')) {
        if (!this.wildcards.some((w) => w.suffix === name.slice(1))) this.wildcards.push({ suffix: name.slice(1), pool: r.pool });
      } else if (!this.exact.has(name)) this.exact.set(name, r.pool);
    }
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /** The pool for `serverName` (already lower-cased by parseClientHello), or undefined when none applies. */
  route(serverName: string | undefined): string | undefined {
    if (serverName === undefined) return this.defaultPool;
    const exact = this.exact.get(serverName);
    if (exact !== undefined) return exact;
    for (const w of this.wildcards) {
      if (serverName.length > w.suffix.length && serverName.endsWith(w.suffix)) return w.pool;
    }
    return this.defaultPool;
  }
}
