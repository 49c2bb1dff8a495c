/** HTTP facts every proxying block (balancer, proxy, CDN) shares. */

/**
 * Fields that describe one connection, not the message (RFC 9110 7.6.1), plus the Proxy-* fields,
 * which are meant for the next proxy only (RFC 9111 3.1): forwarding Proxy-Authorization would hand
 * a client's proxy credentials to every backend. Also drop every field a `Connection` header names.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authentication-info',
  'proxy-authorization',
]);
