/**
 * Access control for a forward proxy. Pure: it judges a parsed Target and, after DNS, each address
 * the target resolved to; it never resolves or connects itself.
 *
 * A decision, in order (the first that refuses wins):
 * 1. Port policy: CONNECT only to `connectPorts` (default 443), plain HTTP only to `httpPorts`
 *    (default 80 and 1024-65535). A tunnel to port 25 or 22 is how open proxies get abused.
 * 2. Deny rules: any rule matching refuses ('acl-deny').
 * 3. Allow rules: when there are any, one must match ('acl-not-allowed').
 * 4. SSRF guard (on by default): an address in a special-purpose range (loopback, private,
 *    link-local ... see addresses.ts) is refused ('ssrf') unless listed in `ssrfGuard.exceptions`.
 *
 * A rule matches when every condition it has holds: `host` (a glob on the canonical host, `*` any
 * run of characters, `?` one), `domain` (the name or any name under it; never an IP literal), `cidr`
 * (an address or block containing the address connected to) and `ports`. Steps 2-4 run once before
 * DNS, with what the name alone decides (so a denied name is never looked up), and again for every
 * address the name resolved to: if any address is refused, the whole request is, so a DNS answer
 * mixing a public and a private address cannot slip through. The proxy then connects to an address
 * that was checked, never to the name again (DNS rebinding).
 */
import { AddressSet, Cidr, specialRange, type SpecialRange } from './addresses.js';
import type { Target } from './target.js';

export type DenyReason = 'port' | 'acl-deny' | 'acl-not-allowed' | 'ssrf';

export interface Denial {
  reason: DenyReason;
  message: string;
  /** For 'ssrf': which special range. */
  range?: SpecialRange;
}

/** A port or an inclusive range. */
export type PortRange = readonly [number, number];

export interface AclRule {
  host?: string;
  domain?: string;
  cidr?: string;
  ports?: readonly PortRange[];
}

export interface AclOptions {
  connectPorts: readonly PortRange[];
  httpPorts: readonly PortRange[];
  allow: readonly AclRule[];
  deny: readonly AclRule[];
  ssrfGuard: { enabled: boolean; exceptions: readonly string[] };
}

export type TargetKind = 'http' | 'connect';

type Tri = 'yes' | 'no' | 'unknown';

/** `*.example.com` -> a RegExp over canonical hosts; `*` is any run (dots too), `?` one character. */
export function globToRegExp(glob: string): RegExp {
  const body = canonicalPattern(glob)
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`);
}

/** Lowercase, no trailing dot, no brackets around IPv6: the form Target.host has. */
export function canonicalPattern(p: string): string {
  let s = p.trim().toLowerCase();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.endsWith('.') && s.length > 1) s = s.slice(0, -1);
  return s;
}

class Rule {
  private readonly host: RegExp | undefined;
  private readonly domain: string | undefined;
  private readonly cidr: Cidr | undefined;
  private readonly ports: readonly PortRange[] | undefined;
  readonly text: string;

  constructor(r: AclRule) {
    this.host = r.host === undefined ? undefined : globToRegExp(r.host);
    this.domain = r.domain === undefined ? undefined : canonicalPattern(r.domain).replace(/^\*?\./, '');
    this.cidr = r.cidr === undefined ? undefined : Cidr.parse(r.cidr);
    this.ports = r.ports;
    this.text = JSON.stringify(r);
  }

  /** Whether the rule matches `t` connecting to `address`; 'unknown' when that depends on an address not yet known. */
  match(t: Target, address: string | undefined): Tri {
    if (this.ports !== undefined && !inRanges(this.ports, t.port)) return 'no';
    if (this.host !== undefined && !this.host.test(t.host)) return 'no';
    if (this.domain !== undefined && (t.family !== 0 || !(t.host === this.domain || t.host.endsWith(`.${this.domain}`)))) return 'no';
    if (this.cidr !== undefined) {
      const addr = address ?? (t.family !== 0 ? t.host : undefined);
      if (addr === undefined) return 'unknown';
      if (!this.cidr.contains(addr)) return 'no';
    }
    return 'yes';
  }
}

export function inRanges(ranges: readonly PortRange[], port: number): boolean {
  for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true;
  return false;
}

export class Acl {
  private readonly allow: Rule[];
  private readonly deny: Rule[];
  private readonly exceptions: AddressSet;

  constructor(private readonly opts: AclOptions) {
    this.allow = opts.allow.map((r) => new Rule(r));
    this.deny = opts.deny.map((r) => new Rule(r));
    this.exceptions = new AddressSet(opts.ssrfGuard.exceptions);
  }

  /**
   * What can be decided before DNS. For an IP literal this is the whole decision; for a name,
   * `checkAddress` must still pass for every address it resolves to.
   */
  checkTarget(t: Target, kind: TargetKind): Denial | undefined {
    const ports = kind === 'connect' ? this.opts.connectPorts : this.opts.httpPorts;
    if (!inRanges(ports, t.port)) {
      return { reason: 'port', message: `${kind === 'connect' ? 'CONNECT' : 'HTTP'} to port ${t.port} is not allowed (${kind === 'connect' ? 'acl.connectPorts' : 'acl.httpPorts'})` };
    }
    return this.judge(t, t.family === 0 ? undefined : t.host);
  }

  /** The decision for `t` reached at `address` (one of the addresses its name resolved to). */
  checkAddress(t: Target, address: string): Denial | undefined {
    return this.judge(t, address);
  }

  private judge(t: Target, address: string | undefined): Denial | undefined {
    for (const r of this.deny) {
      if (r.match(t, address) === 'yes') return { reason: 'acl-deny', message: `denied by rule ${r.text}` };
    }
    if (this.allow.length > 0) {
      let possible = false;
      for (const r of this.allow) {
        const m = r.match(t, address);
        if (m === 'yes') {
          possible = true;
          break;
        }
        if (m === 'unknown') possible = true;
      }
      // With an address every rule decides; without one, a cidr rule may still match later.
      if (!possible) return { reason: 'acl-not-allowed', message: `no acl.allow rule matches ${address === undefined || address === t.host ? t.host : `${t.host} (${address})`}` };
    }
    if (address !== undefined && this.opts.ssrfGuard.enabled) {
      const range = specialRange(address);
      if (range !== undefined && !this.exceptions.has(address)) {
        return { reason: 'ssrf', range, message: `${address} is a ${range} address (acl.ssrfGuard; list it in acl.ssrfGuard.exceptions to allow it)` };
      }
    }
    return undefined;
  }
}
