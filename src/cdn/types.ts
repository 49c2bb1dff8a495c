/**
 * The contracts of the CDN block. A request from a client reaches an **edge** (chosen by region, then
 * by consistent hashing among the region's edge nodes); a miss goes to the **shield**, a miss there
 * to the **origin**. Every tier is the same `Edge` code with a different upstream.
 *
 *   policy/   RFC 9111 decisions, pure: storable? fresh? how old? what to revalidate with? (wraps
 *             http-cache-semantics, adds CDN-Cache-Control / Surrogate-Control, Vary, invalidation)
 *   key.ts    the cache key: normalised scheme, host, path, query, then the Vary'd request headers
 *   storage/  where objects live: memory (LRU by bytes) and an optional disk tier, streamed in and out
 *   edge/     the HTTP server of one node: lookup, request collapsing, revalidation, stale-*, purge
 *   network/  several edges by region, the shield, the router, injected latency, purge fan-out
 *
 * Units are in names (`Ms`, `Bytes`). Header names are lower case everywhere.
 */

/** Response headers as stored and replayed: lower-case names; repeated headers as arrays (set-cookie). */
export type Headers = Record<string, string | string[]>;

/** The parts of a request the policy and the key need (no body). */
export interface CacheRequest {
  method: string;
  /** Scheme of the client's request as the edge sees it ('http' | 'https'). */
  scheme: string;
  /** Host (lower case, no default port). */
  host: string;
  /** Path and query as received (not yet normalised). */
  url: string;
  headers: Headers;
}

/** The response head from upstream (no body). */
export interface CacheResponse {
  status: number;
  headers: Headers;
}

/** Why a tier answered as it did; shown to clients in X-Cache. */
export type CacheOutcome = 'HIT' | 'MISS' | 'STALE' | 'REVALIDATED' | 'PASS' | 'ERROR';

/**
 * What the policy keeps with a stored object: enough to decide freshness later with no other state.
 * Opaque to storage (it stores the JSON); produced and read only by policy/.
 */
export type PolicyState = Record<string, unknown>;

/** One stored response (the head; the body lives in storage beside it). */
export interface StoredObjectMeta {
  /** The full cache key (primary key + vary part). */
  key: string;
  /** The primary key (scheme, host, path, query) the object was stored under, for prefix purges. */
  primaryKey: string;
  status: number;
  /** Headers to replay to clients (CDN-only headers already stripped by policy). */
  headers: Headers;
  policy: PolicyState;
  /** Surrogate keys / cache tags from Surrogate-Key and Cache-Tag, for purge by tag. */
  tags: string[];
  /** Time the response was received from upstream (ms since epoch). */
  storedAt: number;
  /** Body length in bytes. */
  bodyBytes: number;
  /** Set by a soft purge: the object is stale from now on, still usable for stale-if-error. */
  softPurgedAt?: number;
}

/** A stored object as read back for serving. */
export interface StoredObject {
  meta: StoredObjectMeta;
  /** The whole body, when the store holds it in memory. */
  body?: Buffer;
  /** A stream of the body (disk tier), when `body` is absent. */
  open?(range?: { start: number; end: number }): NodeJS.ReadableStream;
}

/** A body being written while it is served: chunks go in as they arrive from upstream. */
export interface StorageWriter {
  write(chunk: Buffer): void;
  /** Commit the object: from now on lookups find it. */
  commit(): Promise<void>;
  /** Drop it (upstream failed, or the object grew past maxObjectBytes). */
  abort(): void;
}

export interface StorageStats {
  objects: number;
  bytes: number;
  memoryObjects: number;
  memoryBytes: number;
  diskObjects: number;
  diskBytes: number;
  evictions: number;
}

/** An edge node's object store: bounded by bytes in memory, and optionally on disk. */
export interface CdnStorage {
  /** All variants stored under a primary key (Vary: the policy picks the one that matches). */
  variants(primaryKey: string): StoredObjectMeta[];
  get(key: string): StoredObject | undefined;
  /** Starts storing an object; refuses (returns undefined) when it cannot fit. */
  begin(meta: Omit<StoredObjectMeta, 'bodyBytes'>, expectedBytes?: number): StorageWriter | undefined;
  /** Replace the stored head (after a 304 revalidation), keeping the body. */
  updateMeta(key: string, update: Partial<Pick<StoredObjectMeta, 'headers' | 'policy' | 'storedAt' | 'softPurgedAt' | 'tags'>>): void;
  delete(key: string): boolean;
  /** Keys whose primary key equals `primaryKey` or starts with `prefix`, or that carry `tag`. */
  find(select: PurgeSelector): string[];
  stats(): StorageStats;
  close(): Promise<void>;
}

/** What a purge removes: an exact URL, a URL prefix, or a tag. */
export type PurgeSelector =
  | { kind: 'url'; primaryKey: string }
  | { kind: 'prefix'; prefix: string }
  | { kind: 'tag'; tag: string };

export interface PurgeRequest {
  selector: PurgeSelector;
  /** soft: mark stale (kept for stale-if-error and revalidation); hard: delete. Default hard. */
  mode: 'soft' | 'hard';
}

export interface PurgeResult {
  /** Objects purged on this node. */
  purged: number;
}

/** Per edge node counters (the server turns them into Prometheus metrics, per edge and per region). */
export interface EdgeCounters {
  requests: number;
  hits: number;
  misses: number;
  stale: number;
  revalidated: number;
  passes: number;
  errors: number;
  /** Requests that waited on another request's upstream fetch instead of making their own. */
  collapsed: number;
  bytesFromCache: number;
  bytesFromUpstream: number;
  upstreamRequests: number;
  purges: number;
}

/** One node's counters with its identity and its storage. */
export interface EdgeStats extends EdgeCounters {
  name: string;
  region: string;
  tier: 'edge' | 'shield';
  storage: StorageStats;
}
