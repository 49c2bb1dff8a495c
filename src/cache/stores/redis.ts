/**
 * The Redis cache store (standalone or Redis Cluster, through ioredis 5).
 *
 * Layout under `prefix` (default `archlab:cache:`), with the user key inside a hash tag so that an
 * entry and its generation live in the same Cluster slot and one Lua script can touch both:
 *   {prefix}d:{key}   the entry: a small binary envelope (times, flags, tags) + the codec's bytes; PX = staleUntilMs - now
 *   {prefix}g:{key}   the key's generation (fill tokens); PX = raceWindowMs, refreshed when a token is taken
 *   {prefix}t:{tag}   a SET of the keys carrying `tag`; PX extended to the longest entry added
 * `}` and `%` in keys are percent-escaped inside the braces so a key cannot end the hash tag early.
 *
 * Fill tokens, atomically in Lua: fill compares the generation, SETs and bumps it (one fill per
 * generation); invalidate DELs and bumps it; set also bumps it (a load that began before a write
 * must not overwrite it).
 * Generations are max(previous + 1, Redis TIME in microseconds), so a generation key lost to Redis
 * eviction restarts above every value handed out before (see docs/cache.md for the one case this
 * cannot cover: a token taken while the key had no generation, then an invalidation whose
 * generation key is evicted within the race window).
 *
 * Tags: the tag SET of a tag lives in its own slot, so tags are added before the entry is written
 * (a crash in between leaves a harmless extra member, never an entry missing from its tag), and
 * invalidateTag pops members in batches and invalidates them key by key (on Cluster each key goes to
 * its own slot). A tag SET may hold keys since expired or rewritten without the tag; the per-key
 * script reads the entry's envelope and leaves an entry that no longer carries the tag alone, so a
 * tag removes exactly the entries that carry it (unreadable bytes are removed).
 *
 * Failures: every command is bounded by `commandTimeoutMs`. While the connection is down the store
 * does not queue: calls fail at once with ARCHLAB_CACHE_STORE_UNAVAILABLE (retryable), so a dead
 * Redis costs no latency and no memory; during the initial connect they wait for it, up to the
 * timeout.
 */
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import { SystemClock, type Clock } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import { decodeValue, encodeValue, jsonCodec } from '../codec.js';
import { CacheError, checkKey } from '../errors.js';
import type { CacheStore, Codec, Entry, FillToken } from '../types.js';

export type RedisClient = Redis | Cluster;

export interface RedisStoreOptions {
  /**
   * An ioredis client the caller owns (and closes). The store never queues commands on it while it
   * is disconnected (it checks the status first) and bounds what it has in flight (maxPendingCalls),
   * but to make ioredis itself fail unanswered commands when a connection drops, configure it as
   * owned clients are: `enableOfflineQueue: false`, `maxRetriesPerRequest: 0`,
   * `autoResendUnfulfilledCommands: false`.
   */
  redis?: RedisClient;
  /** A Redis URL (`redis://host:port/db`); the store creates the client, owns it and closes it. */
  url?: string;
  /** Redis Cluster startup nodes; the store creates a Cluster client, owns it and closes it. */
  nodes?: ClusterNode[];
  /** Extra ioredis options for a client created from `url` or `nodes`. */
  clientOptions?: RedisOptions;
  /** Key namespace; must not contain `{` or `}` (hash tags are the store's). Default `archlab:cache:`. */
  prefix?: string;
  /** Value codec. Default jsonCodec (Buffers and Dates kept). */
  codec?: Codec;
  /** Largest encoded value accepted, in bytes; larger -> ARCHLAB_CACHE_VALUE_TOO_LARGE. Default 1 MiB. */
  maxValueBytes?: number;
  /** Longest a call may take, in ms, including waiting for the first connection. Default 250. */
  commandTimeoutMs?: number;
  /** How long a generation is remembered and a fill token stays valid, in ms. Default 10,000. */
  raceWindowMs?: number;
  /** Keys popped and invalidated per round by invalidateTag, and keys per SCAN step of clear(). Default 256. */
  batchSize?: number;
  /**
   * Most calls waiting on Redis at once, counting ones that timed out but that ioredis still holds
   * (a connection that stays open but stops answering); beyond it calls fail at once. Default 10,000.
   */
  maxPendingCalls?: number;
  /**
   * Consecutive timed-out calls after which an owned client drops its connection and reconnects,
   * which releases every command it holds (a half-open connection never errors on its own). Default 3.
   */
  reconnectAfterTimeouts?: number;
  /** Clock for entry times (staleUntilMs -> PX) and fill-token ages. Command timeouts always use real time. */
  clock?: Clock;
}

/** A timed-out call's pending slot is released at the latest this many commandTimeoutMs later. */
const SLOT_GRACE_FACTOR = 20;

export const REDIS_STORE_DEFAULTS = {
  prefix: 'archlab:cache:',
  maxValueBytes: 1024 * 1024,
  commandTimeoutMs: 250,
  raceWindowMs: 10_000,
  batchSize: 256,
  maxPendingCalls: 10_000,
  reconnectAfterTimeouts: 3,
};

/** A pub/sub message a script publishes atomically with its write (used by the tiered store). */
export interface Notify {
  channel: string;
  message: string;
}

// --- Lua -----------------------------------------------------------------------------------------

const BUMP = `
local function bump(k, w)
  local t = redis.call('TIME')
  local g = (tonumber(redis.call('GET', k) or '0') or 0) + 1
  local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if floor > g then g = floor end
  redis.call('SET', k, string.format('%.0f', g), 'PX', w)
end
local function notify(ch, msg)
  if ch ~= '' then redis.call('PUBLISH', ch, msg) end
end
`;

const SCRIPTS = {
  /** KEYS data, gen; ARGV value, px ('0' = delete), windowMs, channel, message */
  archlabCacheSet: `${BUMP}
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
bump(KEYS[2], ARGV[3])
notify(ARGV[4], ARGV[5])
return 1`,
  /**
   * KEYS data, gen; ARGV tokenGeneration, value, px ('0' = delete), channel, message, windowMs ->
   * 1 stored / 0 refused. A successful fill bumps the generation: one fill per generation.
   */
  archlabCacheFill: `${BUMP}
local g = redis.call('GET', KEYS[2]) or '0'
if g ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
bump(KEYS[2], ARGV[6])
notify(ARGV[4], ARGV[5])
return 1`,
  /** KEYS data, gen; ARGV windowMs, channel, message -> number of entries deleted */
  archlabCacheInvalidate: `${BUMP}
local n = redis.call('DEL', KEYS[1])
bump(KEYS[2], ARGV[1])
notify(ARGV[2], ARGV[3])
return n`,
  /**
   * KEYS data, gen; ARGV windowMs, tag -> 1/0 deleted. Like invalidate, but an entry whose envelope
   * says it does not carry the tag (any more) is left alone. Offsets follow encodeEnvelope.
   */
  archlabCacheInvalidateTagged: `${BUMP}
local function carries(d, tag)
  if string.byte(d, 1) ~= 167 or string.byte(d, 2) ~= 1 then return true end
  local flags = string.byte(d, 3) or 0
  if flags % 4 < 2 then return false end
  if #d < 23 then return true end
  local b1, b2, b3, b4 = string.byte(d, 20, 23)
  local len = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local ok, tags = pcall(cjson.decode, string.sub(d, 24, 23 + len))
  if not ok or type(tags) ~= 'table' then return true end
  for _, t in ipairs(tags) do
    if t == tag then return true end
  end
  return false
end
local d = redis.call('GET', KEYS[1])
if d and not carries(d, ARGV[2]) then return 0 end
local n = redis.call('DEL', KEYS[1])
bump(KEYS[2], ARGV[1])
return n`,
  /** KEYS gen; ARGV windowMs -> the generation ('0' when none), kept for another window */
  archlabCacheToken: `
local g = redis.call('GET', KEYS[1])
if g then redis.call('PEXPIRE', KEYS[1], ARGV[1]) return g end
return '0'`,
  /** KEYS tagSet; ARGV px, member: adds the member and extends the set's life to at least px */
  archlabCacheTag: `
redis.call('SADD', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1`,
} as const;

type ScriptName = keyof typeof SCRIPTS;
const SCRIPT_KEYS: Record<ScriptName, number> = {
  archlabCacheSet: 2,
  archlabCacheFill: 2,
  archlabCacheInvalidate: 2,
  archlabCacheInvalidateTagged: 2,
  archlabCacheToken: 1,
  archlabCacheTag: 1,
};
type ScriptArg = string | Buffer | number;
type Scripted = Record<ScriptName, (...args: ScriptArg[]) => Promise<unknown>>;

function installScripts(client: RedisClient): void {
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    // defineCommand is idempotent per name; the names are namespaced so they cannot clash.
    client.defineCommand(name, { numberOfKeys: SCRIPT_KEYS[name], lua: SCRIPTS[name] });
  }
}

// --- envelope ------------------------------------------------------------------------------------

/** Envelope: magic 0xA7, version 1, flags (1 negative, 2 tags), freshUntilMs f64, staleUntilMs f64, [u32 tagsLen, tags JSON], value bytes. */
const MAGIC = 0xa7;
const VERSION = 1;
const HEADER = 19;

function encodeEnvelope(entry: Entry, value: Buffer | string | undefined): Buffer {
  const tags = entry.tags && entry.tags.length ? Buffer.from(JSON.stringify(entry.tags)) : undefined;
  const valueBytes = value === undefined ? undefined : typeof value === 'string' ? Buffer.from(value) : value;
  const head = Buffer.allocUnsafe(HEADER + (tags ? 4 : 0));
  head[0] = MAGIC;
  head[1] = VERSION;
  head[2] = (entry.negative ? 1 : 0) | (tags ? 2 : 0);
  head.writeDoubleBE(entry.freshUntilMs, 3);
  head.writeDoubleBE(entry.staleUntilMs, 11);
  if (tags) head.writeUInt32BE(tags.length, HEADER);
  const parts: Buffer[] = [head];
  if (tags) parts.push(tags);
  if (valueBytes) parts.push(valueBytes);
  return Buffer.concat(parts);
}

function garbled(key: string, why: string): CacheError {
  return new CacheError('ARCHLAB_CACHE_CODEC', `the stored entry of key ${JSON.stringify(key.slice(0, 64))} is not a valid archlab cache entry: ${why}`, {
    details: { key, direction: 'decode' },
  });
}

function decodeEnvelope<V>(key: string, data: Buffer, codec: Codec): Entry<V> {
  if (data.length < HEADER) throw garbled(key, `${data.length} bytes, shorter than the header`);
  if (data[0] !== MAGIC || data[1] !== VERSION) throw garbled(key, 'bad magic or version');
  const flags = data[2]!;
  if (flags > 3) throw garbled(key, 'unknown flags');
  const freshUntilMs = data.readDoubleBE(3);
  const staleUntilMs = data.readDoubleBE(11);
  if (!Number.isFinite(freshUntilMs) || !Number.isFinite(staleUntilMs)) throw garbled(key, 'times are not finite');
  let offset = HEADER;
  let tags: string[] | undefined;
  if (flags & 2) {
    if (data.length < offset + 4) throw garbled(key, 'truncated tags');
    const len = data.readUInt32BE(offset);
    offset += 4;
    if (data.length < offset + len) throw garbled(key, 'truncated tags');
    try {
      const parsed: unknown = JSON.parse(data.subarray(offset, offset + len).toString('utf8'));
      if (!Array.isArray(parsed) || !parsed.every((t) => typeof t === 'string')) throw garbled(key, 'tags are not a list of strings');
      tags = parsed as string[];
    } catch (err) {
      if (err instanceof CacheError) throw err;
      throw garbled(key, 'tags are not JSON');
    }
    offset += len;
  }
  const entry: Entry<V> = { value: undefined, freshUntilMs, staleUntilMs };
  if (flags & 1) {
    if (data.length !== offset) throw garbled(key, 'a negative entry with a value');
    entry.negative = true;
  } else {
    entry.value = decodeValue(codec, key, data.subarray(offset)) as V;
  }
  if (tags) entry.tags = tags;
  return entry;
}

// --- the store -----------------------------------------------------------------------------------

/** `}` ends a hash tag and `%` is the escape character: percent-encode both, nothing else. */
function escapeKey(key: string): string {
  return key.includes('}') || key.includes('%') ? key.replace(/%/g, '%25').replace(/\}/g, '%7D') : key;
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`redis store: ${name} must be a positive integer, got ${value}`, { [name]: value });
  return value;
}

/** Options for clients the store creates: no offline queue, no retries, quick reconnects. */
function ownedClientOptions(commandTimeoutMs: number, extra: RedisOptions | undefined): RedisOptions {
  return {
    enableOfflineQueue: false,
    // 0: ioredis fails every unanswered command when the connection closes. (With 1 and no resend,
    // commands unanswered at a close are dropped without ever settling when the reconnect succeeds
    // at once.)
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(1000, commandTimeoutMs * 4),
    // Reconnect quickly at first, then every second at most: the store fails fast meanwhile.
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
    // Commands unanswered when a connection drops are failed, not replayed on the next one.
    autoResendUnfulfilledCommands: false,
    ...extra,
  };
}

export class RedisStore<V = unknown> implements CacheStore<V> {
  readonly kind = 'redis' as const;
  readonly commandTimeoutMs: number;
  readonly prefix: string;
  readonly codec: Codec;
  readonly maxValueBytes: number;
  readonly raceWindowMs: number;
  /** The ioredis client (the tiered store publishes and duplicates through it). */
  readonly client: RedisClient;
  readonly isCluster: boolean;
  /** Whether close() closes the client. */
  readonly ownsClient: boolean;

  private readonly scripts: Scripted;
  private readonly clock: Clock;
  private readonly batchSize: number;
  private readonly maxPendingCalls: number;
  private readonly reconnectAfterTimeouts: number;
  private pending = 0;
  private consecutiveTimeouts = 0;
  private forcedReconnect = false;
  /** Owned-client reconnects forced after consecutive timeouts, since construction. */
  stallReconnects = 0;
  private readyWait: Promise<void> | undefined;
  private closed = false;

  constructor(opts: RedisStoreOptions) {
    const sources = [opts.redis, opts.url, opts.nodes].filter((x) => x !== undefined).length;
    if (sources !== 1) throw new InvalidArgumentError('redis store: pass exactly one of `redis` (a client), `url` or `nodes`');
    this.prefix = opts.prefix ?? REDIS_STORE_DEFAULTS.prefix;
    if (this.prefix.includes('{') || this.prefix.includes('}')) {
      throw new InvalidArgumentError(`redis store: prefix ${JSON.stringify(this.prefix)} must not contain { or } (the store puts each key in its own hash tag)`);
    }
    this.codec = opts.codec ?? jsonCodec;
    this.maxValueBytes = positive('maxValueBytes', opts.maxValueBytes, REDIS_STORE_DEFAULTS.maxValueBytes);
    this.commandTimeoutMs = positive('commandTimeoutMs', opts.commandTimeoutMs, REDIS_STORE_DEFAULTS.commandTimeoutMs);
    this.raceWindowMs = positive('raceWindowMs', opts.raceWindowMs, REDIS_STORE_DEFAULTS.raceWindowMs);
    this.batchSize = positive('batchSize', opts.batchSize, REDIS_STORE_DEFAULTS.batchSize);
    this.maxPendingCalls = positive('maxPendingCalls', opts.maxPendingCalls, REDIS_STORE_DEFAULTS.maxPendingCalls);
    this.reconnectAfterTimeouts = positive('reconnectAfterTimeouts', opts.reconnectAfterTimeouts, REDIS_STORE_DEFAULTS.reconnectAfterTimeouts);
    this.clock = opts.clock ?? new SystemClock();
    if (opts.redis) {
      this.client = opts.redis;
      this.ownsClient = false;
    } else if (opts.url !== undefined) {
      this.client = new Redis(opts.url, ownedClientOptions(this.commandTimeoutMs, opts.clientOptions));
      this.ownsClient = true;
    } else {
      const { retryStrategy: _ignored, enableOfflineQueue: _q, ...nodeOptions } = ownedClientOptions(this.commandTimeoutMs, opts.clientOptions);
      this.client = new Cluster(opts.nodes!, {
        enableOfflineQueue: false,
        redisOptions: nodeOptions,
        clusterRetryStrategy: (times: number) => Math.min(50 * times, 1000),
        slotsRefreshTimeout: Math.max(1000, this.commandTimeoutMs * 4),
      });
      this.ownsClient = true;
    }
    this.isCluster = this.client instanceof Cluster;
    if (this.ownsClient) {
      // Connection errors surface through calls (STORE_UNAVAILABLE); without a listener ioredis
      // would print each one.
      this.client.on('error', () => {});
    }
    installScripts(this.client);
    this.scripts = this.client as unknown as Scripted;
  }

  // --- names ---

  dataKey(key: string): string {
    return `${this.prefix}d:{${escapeKey(key)}}`;
  }

  genKey(key: string): string {
    return `${this.prefix}g:{${escapeKey(key)}}`;
  }

  tagKey(tag: string): string {
    return `${this.prefix}t:{${escapeKey(tag)}}`;
  }

  // --- CacheStore ---

  async get(key: string): Promise<Entry<V> | undefined> {
    checkKey(key);
    const data = await this.call('get', key, () => this.client.getBuffer(this.dataKey(key)));
    if (data === null) return undefined;
    const entry = decodeEnvelope<V>(key, data, this.codec);
    // Redis expires a little after staleUntilMs (PX is counted from when the command arrives).
    return entry.staleUntilMs > this.clock.now() ? entry : undefined;
  }

  set(key: string, entry: Entry<V>): Promise<void> {
    return this.setAndNotify(key, entry, undefined);
  }

  async fillToken(key: string): Promise<FillToken> {
    checkKey(key);
    // Taken before the round trip: the window is counted conservatively.
    const takenAtMs = this.clock.now();
    const g = await this.call('fillToken', key, () => this.scripts.archlabCacheToken(this.genKey(key), this.raceWindowMs));
    return { generation: Number(g), takenAtMs };
  }

  fill(key: string, entry: Entry<V>, token: FillToken): Promise<boolean> {
    return this.fillAndNotify(key, entry, token, undefined);
  }

  invalidate(key: string): Promise<void> {
    return this.invalidateAndNotify(key, undefined).then(() => undefined);
  }

  async invalidateTag(tag: string): Promise<number> {
    checkKey(tag);
    const tagKey = this.tagKey(tag);
    const total = Number(await this.call('invalidateTag', tag, () => this.client.scard(tagKey)));
    // Members are popped, so each is handled once even with concurrent callers; the round limit
    // keeps a writer that keeps adding members from holding this call forever.
    const rounds = Math.ceil(total / this.batchSize) + 1;
    let removed = 0;
    for (let r = 0; r < rounds; r++) {
      const members = (await this.call('invalidateTag', tag, () => this.client.spop(tagKey, this.batchSize))) as string[];
      if (members.length === 0) break;
      removed += await this.invalidateMany(members, tag);
      if (members.length < this.batchSize) break;
    }
    return removed;
  }

  async clear(): Promise<void> {
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    for (const node of nodes) {
      // Entries are invalidated (generation bumped), not just deleted, so fills in flight are refused.
      await this.scanNode(node, `${escapeGlob(this.prefix)}d:*`, async (names) => {
        await Promise.all(names.map((name) => this.call('clear', undefined, () => this.scripts.archlabCacheInvalidate(name, this.prefix + 'g:' + name.slice(this.prefix.length + 2), this.raceWindowMs, '', ''))));
      });
      await this.scanNode(node, `${escapeGlob(this.prefix)}t:*`, async (names) => {
        if (this.isCluster) await Promise.all(names.map((name) => this.call('clear', undefined, () => this.client.unlink(name))));
        else await this.call('clear', undefined, () => this.client.unlink(...names));
      });
    }
  }

  /** Calls waiting on Redis now (bounded by maxPendingCalls). */
  pendingCalls(): number {
    return this.pending;
  }

  /** Unknown without a full scan. */
  size(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.ownsClient) return;
    const client = this.client;
    if (client.status === 'ready') {
      await Promise.race([client.quit().catch(() => undefined), new Promise((r) => setTimeout(r, this.commandTimeoutMs).unref())]);
    }
    client.disconnect();
  }

  // --- with a pub/sub notification in the same script (tiered store) ---

  async setAndNotify(key: string, entry: Entry<V>, notify: Notify | undefined): Promise<void> {
    checkKey(key);
    const { value, px } = this.prepare(key, entry);
    await this.addTags(key, entry, px);
    await this.call('set', key, () => this.scripts.archlabCacheSet(this.dataKey(key), this.genKey(key), value, px, this.raceWindowMs, notify?.channel ?? '', notify?.message ?? ''));
  }

  async fillAndNotify(key: string, entry: Entry<V>, token: FillToken, notify: Notify | undefined): Promise<boolean> {
    checkKey(key);
    if (this.clock.now() - token.takenAtMs > this.raceWindowMs) return false;
    const { value, px } = this.prepare(key, entry);
    await this.addTags(key, entry, px);
    const ok = await this.call('fill', key, () =>
      this.scripts.archlabCacheFill(this.dataKey(key), this.genKey(key), String(token.generation), value, px, notify?.channel ?? '', notify?.message ?? '', this.raceWindowMs),
    );
    return ok === 1;
  }

  /** Returns whether an entry was deleted. */
  async invalidateAndNotify(key: string, notify: Notify | undefined): Promise<boolean> {
    checkKey(key);
    const n = await this.call('invalidate', key, () => this.scripts.archlabCacheInvalidate(this.dataKey(key), this.genKey(key), this.raceWindowMs, notify?.channel ?? '', notify?.message ?? ''));
    return n === 1;
  }

  /** Publishes on `channel` through the store's client, bounded like every call. */
  async publish(channel: string, message: string): Promise<void> {
    await this.call('publish', undefined, () => this.client.publish(channel, message));
  }

  // --- internals ---

  /** Encodes the entry and computes its PX ('0' when it is already past staleUntilMs). */
  private prepare(key: string, entry: Entry<V>): { value: Buffer; px: number } {
    const encoded = entry.negative ? undefined : encodeValue(this.codec, key, entry.value);
    const bytes = encoded === undefined ? 0 : typeof encoded === 'string' ? Buffer.byteLength(encoded) : encoded.length;
    if (bytes > this.maxValueBytes) {
      throw new CacheError('ARCHLAB_CACHE_VALUE_TOO_LARGE', `value for key ${JSON.stringify(key.slice(0, 64))} is ${bytes} bytes encoded, over maxValueBytes ${this.maxValueBytes}`, {
        details: { key, bytes, maxBytes: this.maxValueBytes },
      });
    }
    const px = Math.max(0, Math.ceil(entry.staleUntilMs - this.clock.now()));
    return { value: encodeEnvelope(entry, encoded), px };
  }

  private async addTags(key: string, entry: Entry<V>, px: number): Promise<void> {
    const tags = entry.tags;
    if (!tags || tags.length === 0 || px === 0) return;
    for (const t of tags) checkKey(t);
    await Promise.all(tags.map((t) => this.call('set', key, () => this.scripts.archlabCacheTag(this.tagKey(t), px, key))));
  }

  private async invalidateMany(keys: string[], tag: string): Promise<number> {
    if (!this.isCluster) {
      // One round trip on a single server.
      const pipeline = this.client.pipeline();
      const p = pipeline as unknown as Scripted;
      for (const k of keys) void p.archlabCacheInvalidateTagged(this.dataKey(k), this.genKey(k), this.raceWindowMs, tag);
      const results = await this.call('invalidateTag', undefined, () => pipeline.exec());
      let n = 0;
      for (const [err, res] of results ?? []) {
        if (err) throw this.unavailable('invalidateTag', undefined, err);
        if (res === 1) n++;
      }
      return n;
    }
    // On Cluster the keys of one tag span slots: one script per key, each routed to its slot.
    const results = await Promise.all(keys.map((k) => this.call('invalidateTag', k, () => this.scripts.archlabCacheInvalidateTagged(this.dataKey(k), this.genKey(k), this.raceWindowMs, tag))));
    return results.filter((r) => r === 1).length;
  }

  private async scanNode(node: Redis | Cluster, match: string, each: (names: string[]) => Promise<void>): Promise<void> {
    let cursor = '0';
    do {
      const [next, names] = await this.call('clear', undefined, () => (node as Redis).scan(cursor, 'MATCH', match, 'COUNT', this.batchSize));
      cursor = next;
      if (names.length) await each(names);
    } while (cursor !== '0');
  }

  private unavailable(op: string, key: string | undefined, cause: unknown): CacheError {
    const why = cause instanceof Error ? cause.message : String(cause);
    return new CacheError('ARCHLAB_CACHE_STORE_UNAVAILABLE', `redis store: ${op}${key === undefined ? '' : ` ${JSON.stringify(key.slice(0, 64))}`} failed: ${why}`, {
      cause,
      details: { op, ...(key === undefined ? {} : { key }), prefix: this.prefix },
    });
  }

  /** A call got no answer in time: after a few in a row, an owned client starts a new connection. */
  private timedOut(): void {
    if (++this.consecutiveTimeouts < this.reconnectAfterTimeouts || !this.ownsClient || this.closed) return;
    this.consecutiveTimeouts = 0;
    // Once per connection: timeouts of one burst all fire before ioredis leaves 'ready'.
    if (this.client.status !== 'ready' || this.forcedReconnect) return;
    this.forcedReconnect = true;
    this.client.once('ready', () => {
      this.forcedReconnect = false;
    });
    this.stallReconnects++;
    // Fails every command the connection holds (maxRetriesPerRequest 0), then reconnects.
    this.client.disconnect(true);
  }

  /** Resolves when the client is ready; rejects at once when it is down (no queueing while down). */
  private whenReady(op: string, key: string | undefined): Promise<void> {
    const client = this.client;
    switch (client.status) {
      case 'ready':
        return Promise.resolve();
      case 'wait':
        // lazyConnect client never connected: connect now (errors arrive through 'error'/'end').
        client.connect().catch(() => undefined);
        break;
      case 'connecting':
      case 'connect':
        break;
      default:
        // reconnecting, close, end, disconnecting: Redis is down; failing now costs no latency.
        return Promise.reject(this.unavailable(op, key, `not connected (status ${client.status})`));
    }
    // One shared waiter per connecting phase, so a burst of calls adds one listener, not thousands.
    this.readyWait ??= new Promise<void>((resolve, reject) => {
      const done = (err?: unknown): void => {
        client.off('ready', onReady);
        client.off('close', onClose);
        client.off('end', onClose);
        this.readyWait = undefined;
        if (err === undefined) resolve();
        else reject(err);
      };
      const onReady = (): void => done();
      // A plain reason: each waiting call wraps it with its own op and key.
      const onClose = (): void => done('connection closed while connecting');
      client.on('ready', onReady);
      client.on('close', onClose);
      client.on('end', onClose);
    });
    return this.readyWait;
  }

  /** Runs one Redis call with the store's timeout, mapping every failure to STORE_UNAVAILABLE. */
  private call<T>(op: string, key: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (this.closed && this.ownsClient) return Promise.reject(new CacheError('ARCHLAB_CACHE_CLOSED', 'redis store: closed'));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let slot: (() => void) | undefined;
      const timer = setTimeout(() => {
        settled = true;
        this.timedOut();
        reject(this.unavailable(op, key, `no answer within commandTimeoutMs ${this.commandTimeoutMs}`));
        // The command's slot stays taken while ioredis holds it, but not forever: a client that drops
        // a command without settling it (see ownedClientOptions) must not leak slots.
        if (slot) setTimeout(slot, SLOT_GRACE_FACTOR * this.commandTimeoutMs).unref();
      }, this.commandTimeoutMs);
      timer.unref();
      const finish = (err: unknown, value?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === undefined) {
          this.consecutiveTimeouts = 0;
          resolve(value as T);
        }
        else reject(err instanceof CacheError ? err : this.unavailable(op, key, err));
      };
      const run = (): void => {
        if (settled) return;
        if (this.pending >= this.maxPendingCalls) {
          finish(`${this.pending} calls already waiting on Redis (maxPendingCalls)`);
          return;
        }
        let p: Promise<T>;
        try {
          p = fn();
        } catch (err) {
          finish(err);
          return;
        }
        this.pending++;
        let held = true;
        const release = (): void => {
          if (held) {
            held = false;
            this.pending--;
          }
        };
        slot = release;
        p.then(
          (v) => {
            release();
            finish(undefined, v);
          },
          (err: unknown) => {
            release();
            finish(err ?? 'unknown error');
          },
        );
      };
      if (this.client.status === 'ready') run();
      else this.whenReady(op, key).then(run, (err: unknown) => finish(err));
    });
  }
}

/** A Redis store (see RedisStoreOptions for limits and defaults). */
export function createRedisStore<V = unknown>(opts: RedisStoreOptions): RedisStore<V> {
  return new RedisStore<V>(opts);
}
