/**
 * `Proxy-Authorization: Basic` (RFC 7617, RFC 9110 §11.7.2) against scrypt-hashed passwords.
 *
 * Users file: one user per line, `#` comments and blank lines ignored:
 *
 *     alice:scrypt$16384$8$1$<salt, base64>$<hash, base64>
 *
 * that is `user:scrypt$N$r$p$salt$hash`, where N (CPU/memory cost, a power of two), r (block size)
 * and p (parallelism) are scrypt's parameters (RFC 7914), salt is 16 random bytes and hash the
 * 32-byte scrypt output of the UTF-8 password, both in standard base64 with padding.
 * `archlab proxy hash-password <user>` writes such a line. A user name is 1..128 characters without
 * ":" (Basic splits user from password at the first one), whitespace or control characters.
 *
 * What a client can learn: nothing but "407". A missing header, a malformed one, an unknown user and
 * a wrong password get the same status, headers and body, and an unknown user costs the same scrypt
 * run as a known one (against a dummy hash with the parameters most users have), so timing does not
 * tell names apart. Hashes are compared with crypto.timingSafeEqual.
 *
 * What the proxy spends: scrypt runs on libuv's thread pool (not the event loop), at most once per
 * distinct credential at a time (concurrent requests with the same header share one run), at most
 * `maxPending` at once (more get 'busy'), and a verified credential is cached for `cacheTtlMs` in a
 * bounded LRU keyed by an HMAC of the header under a per-process key, so the cache holds no password.
 */
import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../core/clock.js';
import { ConfigError, type ConfigIssue } from '../core/config.js';
import { ProxyError } from './errors.js';
import { LRUCache } from 'lru-cache';

export interface ScryptParams {
  /** CPU/memory cost, a power of two, 1024..1048576. */
  N: number;
  /** Block size, 1..32. */
  r: number;
  /** Parallelism, 1..16. */
  p: number;
}

/** scrypt's "interactive login" parameters: about 16 MiB and tens of ms per check. */
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ N: 16384, r: 8, p: 1 });
export const SALT_BYTES = 16;
export const HASH_BYTES = 32;
/** scrypt needs 128 * N * r bytes; refuse parameters asking for more than this. */
export const MAX_SCRYPT_MEMORY_BYTES = 256 * 1024 * 1024;

export interface PasswordHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

const USER_RE = /^[^:\s\p{Cc}]{1,128}$/u;
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function scrypt(password: Buffer | string, salt: Buffer, keylen: number, p: ScryptParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: p.N, r: p.r, p: p.p, maxmem: 128 * p.N * p.r * 2 + 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

function badFormat(message: string): ProxyError {
  return new ProxyError('ARCHLAB_PROXY_PASSWORD_FORMAT', message);
}

/** Checks scrypt parameters; throws ProxyError ARCHLAB_PROXY_PASSWORD_FORMAT saying which is wrong. */
export function checkScryptParams(p: ScryptParams): void {
  if (!Number.isInteger(p.N) || p.N < 1024 || p.N > 1_048_576 || (p.N & (p.N - 1)) !== 0) throw badFormat(`scrypt N must be a power of two from 1024 to 1048576, got ${p.N}`);
  if (!Number.isInteger(p.r) || p.r < 1 || p.r > 32) throw badFormat(`scrypt r must be an integer 1..32, got ${p.r}`);
  if (!Number.isInteger(p.p) || p.p < 1 || p.p > 16) throw badFormat(`scrypt p must be an integer 1..16, got ${p.p}`);
  if (128 * p.N * p.r > MAX_SCRYPT_MEMORY_BYTES) throw badFormat(`scrypt N=${p.N}, r=${p.r} needs ${(128 * p.N * p.r) / 2 ** 20} MiB, over the ${MAX_SCRYPT_MEMORY_BYTES / 2 ** 20} MiB limit`);
}

/** `scrypt$N$r$p$salt$hash` for `password`, with a fresh random salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  checkScryptParams(params);
  const salt = randomBytes(SALT_BYTES);
  const hash = await scrypt(Buffer.from(password, 'utf8'), salt, HASH_BYTES, params);
  return formatPasswordHash({ ...params, salt, hash });
}

export function formatPasswordHash(h: PasswordHash): string {
  return `scrypt$${h.N}$${h.r}$${h.p}$${h.salt.toString('base64')}$${h.hash.toString('base64')}`;
}

/** A users-file line for `user`. Throws ProxyError for a user name the format cannot hold. */
export async function userLine(user: string, password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  if (!USER_RE.test(user)) throw badFormat(`user name ${JSON.stringify(user)} must be 1..128 characters without ":", whitespace or control characters`);
  return `${user}:${await hashPassword(password, params)}`;
}

/** Parses `scrypt$N$r$p$salt$hash`; throws ProxyError ARCHLAB_PROXY_PASSWORD_FORMAT. */
export function parsePasswordHash(text: string): PasswordHash {
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') throw badFormat('expected scrypt$N$r$p$salt$hash');
  const [N, r, p] = parts.slice(1, 4).map((x) => (/^\d{1,8}$/.test(x) ? Number(x) : NaN)) as [number, number, number];
  checkScryptParams({ N, r, p });
  const [saltText, hashText] = [parts[4]!, parts[5]!];
  if (!B64_RE.test(saltText) || !B64_RE.test(hashText)) throw badFormat('salt and hash must be standard base64 with padding');
  const salt = Buffer.from(saltText, 'base64');
  const hash = Buffer.from(hashText, 'base64');
  if (salt.length < 8 || salt.length > 64) throw badFormat(`salt must be 8..64 bytes, got ${salt.length}`);
  if (hash.length < 16 || hash.length > 64) throw badFormat(`hash must be 16..64 bytes, got ${hash.length}`);
  return { N, r, p, salt, hash };
}

/**
 * Parses a users file's text. Throws ConfigError (ARCHLAB_CONFIG_INVALID) naming `sourceName` and
 * every bad line; a duplicate user is an error, not "last one wins".
 */
export function parseUsers(text: string, sourceName = '<users>'): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>();
  const issues: ConfigIssue[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = { path: `line ${i + 1}`, line: i + 1, column: 1 };
    const colon = line.indexOf(':');
    const user = colon < 0 ? '' : line.slice(0, colon);
    if (colon < 0 || !USER_RE.test(user)) {
      issues.push({ ...at, message: 'expected user:scrypt$N$r$p$salt$hash (user: 1..128 characters, no ":" or whitespace)' });
      return;
    }
    if (users.has(user)) {
      issues.push({ ...at, message: `duplicate user ${JSON.stringify(user)}` });
      return;
    }
    try {
      users.set(user, parsePasswordHash(line.slice(colon + 1)));
    } catch (err) {
      issues.push({ ...at, message: `user ${JSON.stringify(user)}: ${(err as Error).message}` });
    }
  });
  if (issues.length > 0) {
    const lines = issues.map((x) => `  - ${x.path}: ${x.message}`).join('\n');
    throw new ConfigError('ARCHLAB_CONFIG_INVALID', sourceName, `invalid users file ${sourceName} (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines}`, issues);
  }
  return users;
}

/** Reads and parses a users file; ConfigError (ARCHLAB_CONFIG_UNREADABLE / _INVALID) naming it. */
export function loadUsersFile(file: string): Map<string, PasswordHash> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('ARCHLAB_CONFIG_UNREADABLE', file, `cannot read users file ${file}: ${code ?? (err as Error).message}`, [], err);
  }
  return parseUsers(text, file);
}

export type AuthFailure = 'missing' | 'malformed' | 'invalid' | 'busy';
export type AuthResult = { ok: true; user: string; cached: boolean } | { ok: false; reason: AuthFailure };

export interface AuthenticatorOptions {
  clock: Clock;
  /** Verified credentials remembered. Default 1000. */
  cacheSize?: number;
  /** How long a verified credential is trusted without scrypt. Default 60000 ms. 0 disables the cache. */
  cacheTtlMs?: number;
  /** scrypt runs in flight at most; more answer 'busy'. Default 64. */
  maxPending?: number;
}

/** Longest Proxy-Authorization value looked at. */
export const MAX_CREDENTIALS_LENGTH = 1024;

export class Authenticator {
  private readonly cache: LRUCache<string, { user: string; expiresMs: number }>;
  private readonly pending = new Map<string, Promise<AuthResult>>();
  private readonly cacheKey = randomBytes(32);
  private readonly cacheTtlMs: number;
  private readonly maxPending: number;
  /** What an unknown user is checked against, so it costs what a known one does. */
  private readonly dummy: PasswordHash;
  /** scrypt runs started (for tests and metrics). */
  scryptRuns = 0;

  constructor(
    private readonly users: ReadonlyMap<string, PasswordHash>,
    private readonly opts: AuthenticatorOptions,
  ) {
    this.cache = new LRUCache({ max: opts.cacheSize ?? 1000 });
    this.cacheTtlMs = opts.cacheTtlMs ?? 60_000;
    this.maxPending = opts.maxPending ?? 64;
    this.dummy = { ...commonParams(users), salt: randomBytes(SALT_BYTES), hash: randomBytes(HASH_BYTES) };
  }

  get userCount(): number {
    return this.users.size;
  }

  /** Checks a Proxy-Authorization header value. Never throws. */
  async verify(header: string | undefined): Promise<AuthResult> {
    if (header === undefined || header === '') return { ok: false, reason: 'missing' };
    const creds = parseBasic(header);
    if (creds === undefined) return { ok: false, reason: 'malformed' };
    const key = createHmac('sha256', this.cacheKey).update(header.trim()).digest('base64');
    const hit = this.cacheTtlMs > 0 ? this.cache.get(key) : undefined;
    if (hit !== undefined) {
      if (hit.expiresMs > this.opts.clock.monotonic()) return { ok: true, user: hit.user, cached: true };
      this.cache.delete(key);
    }
    const running = this.pending.get(key);
    if (running !== undefined) return running;
    if (this.pending.size >= this.maxPending) return { ok: false, reason: 'busy' };
    const run = this.check(creds.user, creds.password).then(
      (ok): AuthResult => {
        if (!ok) return { ok: false, reason: 'invalid' };
        if (this.cacheTtlMs > 0) this.cache.set(key, { user: creds.user, expiresMs: this.opts.clock.monotonic() + this.cacheTtlMs });
        return { ok: true, user: creds.user, cached: false };
      },
      (): AuthResult => ({ ok: false, reason: 'invalid' }),
    );
    this.pending.set(key, run);
    void run.finally(() => this.pending.delete(key));
    return run;
  }

  private async check(user: string, password: Buffer): Promise<boolean> {
    const known = this.users.get(user);
    const h = known ?? this.dummy;
    this.scryptRuns++;
    const derived = await scrypt(password, h.salt, h.hash.length, h);
    // Both branches compare; only a known user with a matching hash passes.
    const same = timingSafeEqual(derived, h.hash);
    return known !== undefined && same;
  }
}

/** The scrypt parameters most users have (DEFAULT_SCRYPT for an empty list). */
function commonParams(users: ReadonlyMap<string, PasswordHash>): ScryptParams {
  const counts = new Map<string, number>();
  let best: ScryptParams = DEFAULT_SCRYPT;
  let bestCount = 0;
  for (const h of users.values()) {
    const k = `${h.N}/${h.r}/${h.p}`;
    const c = (counts.get(k) ?? 0) + 1;
    counts.set(k, c);
    if (c > bestCount) {
      bestCount = c;
      best = { N: h.N, r: h.r, p: h.p };
    }
  }
  return best;
}

/**
 * `Basic <base64(user:password)>` -> user and password bytes; undefined when malformed (another
 * scheme, bad base64, no ":", over MAX_CREDENTIALS_LENGTH). The password stays bytes: it is hashed
 * as received (UTF-8 per RFC 7617's charset), never re-encoded.
 */
export function parseBasic(header: string): { user: string; password: Buffer } | undefined {
  if (header.length > MAX_CREDENTIALS_LENGTH) return undefined;
  const m = /^\s*basic[ \t]+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header);
  if (m === null || !B64_RE.test(m[1]!)) return undefined;
  const raw = Buffer.from(m[1]!, 'base64');
  const colon = raw.indexOf(0x3a);
  if (colon <= 0) return undefined;
  const user = raw.subarray(0, colon).toString('utf8');
  if (!USER_RE.test(user)) return undefined;
  return { user, password: raw.subarray(colon + 1) };
}
