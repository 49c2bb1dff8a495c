/**
 * IP addresses as numbers, CIDR blocks, and the special-purpose ranges the SSRF guard refuses.
 * Pure: no DNS, no sockets.
 *
 * The ranges are the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and updates)
 * minus what is globally reachable: loopback, private (RFC 1918), shared CGN space, link-local
 * (where cloud metadata services live: 169.254.169.254, fd00:ec2::254), unique-local, multicast,
 * documentation, benchmarking, reserved. IPv6 outside 2000::/3 (global unicast) is refused
 * whole, except NAT64's 64:ff9b::/96. Addresses that carry an IPv4 address inside an IPv6 one
 * (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address
 * they lead to, so `[::ffff:127.0.0.1]` is loopback.
 */
import { isIP } from 'node:net';

/** Why an address is special; bounded, used in logs and denial messages. */
export type SpecialRange =
  | 'this-network'
  | 'private'
  | 'shared'
  | 'loopback'
  | 'link-local'
  | 'ietf'
  | 'documentation'
  | 'benchmarking'
  | 'multicast'
  | 'reserved'
  | 'unspecified'
  | 'discard'
  | 'unique-local'
  | 'site-local'
  | 'nat64-local'
  | '6to4-relay';

/** IPv4 text to an unsigned 32-bit number; undefined when it is not dotted-quad IPv4. */
export function ipv4ToNumber(ip: string): number | undefined {
  if (isIP(ip) !== 4) return undefined;
  const p = ip.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** IPv6 text to its eight 16-bit groups; undefined when it is not IPv6. Zone ids are refused. */
export function ipv6ToGroups(ip: string): number[] | undefined {
  if (isIP(ip) !== 6 || ip.includes('%')) return undefined;
  let text = ip;
  const tail: number[] = [];
  if (text.includes('.')) {
    // A dotted IPv4 tail ("::ffff:1.2.3.4") is the last two groups.
    const i = text.lastIndexOf(':');
    const v4 = ipv4ToNumber(text.slice(i + 1));
    if (v4 === undefined) return undefined;
    tail.push(v4 >>> 16, v4 & 0xffff);
    text = text.slice(0, i + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const double = text.indexOf('::');
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const head = parse(double < 0 ? text : text.slice(0, double));
  const rest = double < 0 ? [] : parse(text.slice(double + 2));
  const fill = 8 - tail.length - head.length - rest.length;
  if (fill < 0 || (double < 0 && fill !== 0)) return undefined;
  return [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
}

/** An IPv4 or IPv6 block: an address and a prefix length. */
export class Cidr {
  readonly family: 4 | 6;
  readonly bits: number;
  private readonly v4: number = 0;
  private readonly v6: number[] = [];

  private constructor(family: 4 | 6, bits: number, v4: number, v6: number[]) {
    this.family = family;
    this.bits = bits;
    if (family === 4) this.v4 = bits === 0 ? 0 : (v4 & (~0 << (32 - bits))) >>> 0;
    else this.v6 = v6;
  }

  /** "10.0.0.0/8", "fd00::/8", or a bare address (a /32 or /128). Undefined when it is neither. */
  static parse(text: string): Cidr | undefined {
    const s = text.trim();
    const slash = s.indexOf('/');
    const addr = slash < 0 ? s : s.slice(0, slash);
    const family = isIP(addr);
    if (family === 0 || addr.includes('%')) return undefined;
    const max = family === 4 ? 32 : 128;
    let bits = max;
    if (slash >= 0) {
      const b = s.slice(slash + 1);
      if (!/^\d{1,3}$/.test(b) || Number(b) > max) return undefined;
      bits = Number(b);
    }
    if (family === 4) return new Cidr(4, bits, ipv4ToNumber(addr)!, []);
    return new Cidr(6, bits, 0, ipv6ToGroups(addr)!);
  }

  /** Whether `ip` (canonical text) is in the block. An address of the other family never is. */
  contains(ip: string): boolean {
    if (this.family === 4) {
      const n = ipv4ToNumber(ip);
      return n !== undefined && this.containsV4(n);
    }
    const g = ipv6ToGroups(ip);
    return g !== undefined && this.containsGroups(g);
  }

  /** IPv4 as a number (ipv4ToNumber). */
  containsV4(n: number): boolean {
    if (this.family !== 4) return false;
    return this.bits === 0 || (n & (~0 << (32 - this.bits))) >>> 0 === this.v4;
  }

  /** IPv6 as eight groups (ipv6ToGroups). */
  containsGroups(g: readonly number[]): boolean {
    if (this.family !== 6) return false;
    let bits = this.bits;
    for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
      const mask = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
      if (((g[i]! ^ this.v6[i]!) & mask) !== 0) return false;
    }
    return true;
  }
}

/** A list of CIDRs (or single addresses), any of which may match. */
export class AddressSet {
  private readonly blocks: Cidr[];

  /** Throws nothing: callers validate entries with Cidr.parse first (the config schema does). */
  constructor(entries: readonly string[]) {
    this.blocks = entries.map((e) => Cidr.parse(e)).filter((c): c is Cidr => c !== undefined);
  }

  get size(): number {
    return this.blocks.length;
  }

  has(ip: string): boolean {
    for (const b of this.blocks) if (b.contains(ip)) return true;
    return false;
  }
}

const V4: ReadonlyArray<readonly [Cidr, SpecialRange]> = (
  [
    ['0.0.0.0/8', 'this-network'],
    ['10.0.0.0/8', 'private'],
    ['100.64.0.0/10', 'shared'],
    ['127.0.0.0/8', 'loopback'],
    ['169.254.0.0/16', 'link-local'],
    ['172.16.0.0/12', 'private'],
    ['192.0.0.0/24', 'ietf'],
    ['192.0.2.0/24', 'documentation'],
    ['192.88.99.0/24', '6to4-relay'],
    ['192.168.0.0/16', 'private'],
    ['198.18.0.0/15', 'benchmarking'],
    ['198.51.100.0/24', 'documentation'],
    ['203.0.113.0/24', 'documentation'],
    ['224.0.0.0/4', 'multicast'],
    ['240.0.0.0/4', 'reserved'],
  ] as const
).map(([c, r]) => [Cidr.parse(c)!, r] as const);

const V6: ReadonlyArray<readonly [Cidr, SpecialRange]> = (
  [
    ['::/128', 'unspecified'],
    ['::1/128', 'loopback'],
    ['64:ff9b:1::/48', 'nat64-local'],
    ['100::/64', 'discard'],
    ['2001::/23', 'ietf'],
    ['2001:db8::/32', 'documentation'],
    ['3fff::/20', 'documentation'],
    ['5f00::/16', 'reserved'],
    ['fc00::/7', 'unique-local'],
    ['fe80::/10', 'link-local'],
    ['fec0::/10', 'site-local'],
    ['ff00::/8', 'multicast'],
  ] as const
).map(([c, r]) => [Cidr.parse(c)!, r] as const);

const GLOBAL_UNICAST = Cidr.parse('2000::/3')!;
const MAPPED = Cidr.parse('::ffff:0:0/96')!;
const NAT64 = Cidr.parse('64:ff9b::/96')!;
const SIX_TO_FOUR = Cidr.parse('2002::/16')!;

/**
 * The special-purpose range `ip` falls in, or undefined for an ordinary, globally reachable
 * address. Anything that is not an IP address at all is 'reserved' (refuse what cannot be judged).
 */
export function specialRange(ip: string): SpecialRange | undefined {
  const n = ipv4ToNumber(ip);
  if (n !== undefined) return specialV4(n);
  const g = ipv6ToGroups(ip);
  if (g === undefined) return 'reserved';
  if (MAPPED.containsGroups(g) || NAT64.containsGroups(g)) return specialV4(((g[6]! << 16) | g[7]!) >>> 0);
  if (SIX_TO_FOUR.containsGroups(g)) return specialV4(((g[1]! << 16) | g[2]!) >>> 0);
  for (const [c, r] of V6) if (c.containsGroups(g)) return r;
  return GLOBAL_UNICAST.containsGroups(g) ? undefined : 'reserved';
}

function specialV4(n: number): SpecialRange | undefined {
  for (const [c, r] of V4) if (c.containsV4(n)) return r;
  return undefined;
}
