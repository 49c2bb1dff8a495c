/**
 * Request routing, pure: which client region a request comes from (a header, else the source
 * address through the CIDR map, else the default), and which edge node serves a URL (the nearest
 * region with nodes, then consistent hashing over that region's nodes so each object is cached once
 * per region). Hashing comes from archlab/hashing (rendezvous by default, ketama on request).
 */
import { BlockList, isIP } from 'node:net';
import { CdnError } from '../errors.js';
import { createHasher, type Hasher } from '../../hashing/index.js';
import type { LatencyMatrix } from './geo.js';

export interface AddressRule {
  cidr: string;
  region: string;
}

/** How the client's region was found, for logs and the X-Client-Region-Source response header. */
export type RegionSource = 'header' | 'address' | 'default';

export interface ResolvedRegion {
  region: string;
  source: RegionSource;
}

interface CompiledRule {
  family: 'ipv4' | 'ipv6';
  list: BlockList;
  region: string;
}

/** `::ffff:10.0.0.1` -> `10.0.0.1`, so IPv4 rules match IPv4 clients on a dual-stack socket. */
function unmap(address: string): string {
  return address.length > 7 && address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

export interface RegionResolverOptions {
  /** Known client regions: a header naming another is refused. */
  clientRegions: readonly string[];
  /** Lower-case header name, e.g. "x-client-region". */
  header: string;
  /** First match wins. */
  addressMap: readonly AddressRule[];
  defaultRegion: string;
}

export class RegionResolver {
  readonly header: string;
  private readonly known: ReadonlySet<string>;
  private readonly rules: readonly CompiledRule[];
  private readonly defaultRegion: string;

  constructor(opts: RegionResolverOptions) {
    this.header = opts.header;
    this.known = new Set(opts.clientRegions);
    this.defaultRegion = opts.defaultRegion;
    if (!this.known.has(opts.defaultRegion)) {
      throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', `default region "${opts.defaultRegion}" is not a client region`);
    }
    // One BlockList per rule keeps "first match wins" (a BlockList only answers yes or no).
    this.rules = opts.addressMap.map((rule) => {
      const slash = rule.cidr.indexOf('/');
      const addr = unmap(rule.cidr.slice(0, slash));
      const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
      const list = new BlockList();
      list.addSubnet(addr, Number(rule.cidr.slice(slash + 1)), family);
      return { family, list, region: rule.region };
    });
  }

  /**
   * The client's region. A header value wins (case-insensitive match on a known region); an unknown
   * one is an error (ARCHLAB_CDN_BAD_REQUEST, 400) rather than a silent fallback, so a typo shows.
   */
  resolve(headerValue: string | string[] | undefined, remoteAddress: string | undefined): ResolvedRegion {
    if (headerValue !== undefined) {
      const v = (Array.isArray(headerValue) ? headerValue[0] ?? '' : headerValue).trim();
      if (v !== '') {
        if (this.known.has(v)) return { region: v, source: 'header' };
        const lower = v.toLowerCase();
        for (const k of this.known) if (k.toLowerCase() === lower) return { region: k, source: 'header' };
        throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', `unknown client region ${JSON.stringify(v.slice(0, 64))} in ${this.header} (known: ${[...this.known].join(', ')})`);
      }
    }
    if (remoteAddress !== undefined && this.rules.length > 0) {
      const addr = unmap(remoteAddress);
      const family = isIP(addr) === 4 ? 'ipv4' : isIP(addr) === 6 ? 'ipv6' : undefined;
      if (family !== undefined) {
        for (const rule of this.rules) {
          if (rule.family === family && rule.list.check(addr, family)) return { region: rule.region, source: 'address' };
        }
      }
    }
    return { region: this.defaultRegion, source: 'default' };
  }
}

export interface EdgeRef {
  name: string;
  region: string;
}

/** Picks the edge node for (client region, cache key): nearest region first, then consistent hashing. */
export class EdgeSelector {
  private readonly hashers = new Map<string, Hasher>();
  private readonly byName = new Map<string, EdgeRef>();

  constructor(
    private readonly matrix: LatencyMatrix,
    edges: readonly EdgeRef[],
    algorithm: 'rendezvous' | 'ketama' = 'rendezvous',
  ) {
    for (const e of edges) {
      let h = this.hashers.get(e.region);
      if (h === undefined) {
        h = createHasher(algorithm);
        this.hashers.set(e.region, h);
      }
      h.add(e.name);
      this.byName.set(e.name, e);
    }
  }

  /** The node of `region` that owns `key`, or undefined when the region has no nodes. */
  inRegion(region: string, key: string): EdgeRef | undefined {
    const h = this.hashers.get(region);
    return h === undefined || h.size === 0 ? undefined : this.byName.get(h.get(key));
  }

  /**
   * Up to `max` candidates for `key` from a client in `client`, best first: the owner in the nearest
   * region with nodes, then the other nodes of that region in hash preference order, then the owners
   * in the next-nearest regions. The router tries the next one only when the first cannot be reached.
   */
  candidates(client: string, key: string, max: number): EdgeRef[] {
    const out: EdgeRef[] = [];
    let first = true;
    for (const region of this.matrix.nearest(client)) {
      const h = this.hashers.get(region);
      if (h === undefined || h.size === 0) continue;
      if (first) {
        for (const name of h.getN(key, Math.min(max, h.size))) out.push(this.byName.get(name)!);
        first = false;
      } else {
        out.push(this.byName.get(h.get(key))!);
      }
      if (out.length >= max) break;
    }
    return out.slice(0, max);
  }
}
