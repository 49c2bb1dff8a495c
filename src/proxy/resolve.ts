/**
 * Name resolution for the proxy: once per request, every address, through the system resolver
 * (dns.lookup, so /etc/hosts and nsswitch apply as they do for curl). The ACL checks every address
 * returned and the proxy connects to one of those, never to the name again.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { unmapIPv6 } from './target.js';

/** Resolves a host name to addresses; tests inject one that returns what they need. */
export type LookupFn = (hostname: string) => Promise<ReadonlyArray<{ address: string; family?: number }>>;

export const systemLookup: LookupFn = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Addresses kept from one answer; a name with more is cut (all kept ones are still checked). */
export const MAX_ADDRESSES = 32;

/** `lookup(host)`'s addresses, IPv4-mapped ones as IPv4, duplicates and non-addresses dropped. */
export async function resolveAll(lookup: LookupFn, host: string): Promise<string[]> {
  const answer = await lookup(host);
  const out: string[] = [];
  for (const a of answer) {
    if (isIP(a.address) === 0 || a.address.includes('%')) continue;
    const ip = unmapIPv6(a.address.toLowerCase());
    if (!out.includes(ip)) out.push(ip);
    if (out.length >= MAX_ADDRESSES) break;
  }
  return out;
}
