/**
 * Everything a request or a tunnel must pass before the proxy connects anywhere, in the order that
 * spends the least on a client that will be refused:
 *
 * 1. the client address's rate limit (before auth, so a flood of guesses costs no scrypt);
 * 2. the target parses (400);
 * 3. Proxy-Authorization, when auth is on (407, always the same answer);
 * 4. the user's rate limit (429);
 * 5. the ACL on what the target alone decides: port policy, name rules, an IP literal (403);
 * 6. concurrency slots for the client address and the user (429);
 * 7. DNS, once, within the connect timeout (502 / 504), and the ACL on every address (403).
 *
 * What comes out is the target and the addresses that passed, plus `lookup`, a resolver that
 * answers only those addresses: the socket is opened with it, so Node connects to a checked
 * address (trying each in turn, happy-eyeballs style) and never asks DNS again.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { Acl, Denial, TargetKind } from './acl.js';
import type { Authenticator } from './auth.js';
import type { ProxyErrorCode } from './errors.js';
import type { KeyedLimiter } from './limits.js';
import type { ProxyMetrics } from './metrics.js';
import { resolveAll, type LookupFn } from './resolve.js';
import type { Parsed, Target } from './target.js';

/** Why a request was refused; a bounded set (it labels archlab_proxy_denied_total). */
export type RefusalReason =
  | 'bad-target'
  | 'userinfo'
  | 'no-port'
  | 'scheme'
  | 'not-absolute'
  | 'host-mismatch'
  | 'framing'
  | 'body-too-large'
  | 'auth'
  | 'auth-busy'
  | 'rate-client'
  | 'rate-user'
  | 'conn-client'
  | 'conn-user'
  | 'port'
  | 'acl-deny'
  | 'acl-not-allowed'
  | 'ssrf'
  | 'dns'
  | 'dns-timeout'
  | 'shutting-down'
  | 'upgrade';

export interface Refusal {
  status: number;
  code: ProxyErrorCode;
  reason: RefusalReason;
  /** Said to the client (except for 407, whose body never varies) and logged. */
  message: string;
  headers?: Record<string, string>;
}

/** A socket `lookup` option that answers only the checked addresses, whatever it is asked. */
export type PinnedLookup = (
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

export interface Admitted<T extends Target> {
  target: T;
  user: string | undefined;
  /** Every address the target resolved to, all checked; for an IP literal, itself. */
  addresses: string[];
  lookup: PinnedLookup;
  /** Frees the concurrency slots taken; call once when the request or tunnel is over. */
  release(): void;
}

/** A refusal says who asked (when authenticated) and for what (once the target parsed), for the access log. */
export type Admission<T extends Target> = { ok: true; admitted: Admitted<T> } | { ok: false; refusal: Refusal; user?: string; target?: T };

export interface GateDeps {
  acl: Acl;
  auth: Authenticator | undefined;
  realm: string;
  perClient: KeyedLimiter;
  perUser: KeyedLimiter;
  lookup: LookupFn;
  metrics: ProxyMetrics;
  connectMs: () => number;
}

/** The one 407 body: identical for a missing header, an unknown user and a wrong password. */
export const AUTH_REQUIRED_MESSAGE = 'proxy authentication required';

export function pinnedLookup(addresses: readonly string[]): PinnedLookup {
  const all: LookupAddress[] = addresses.map((address) => ({ address, family: isIP(address) }));
  return (_hostname, options, callback) => {
    const want = options.family === 4 || options.family === 6 ? all.filter((a) => a.family === options.family) : all;
    const list = want.length > 0 ? want : all;
    if (options.all === true) callback(null, list);
    else callback(null, list[0]!.address, list[0]!.family);
  };
}

function denial(d: Denial): Refusal {
  return { status: 403, code: 'ARCHLAB_PROXY_DENIED', reason: d.reason, message: d.message };
}

function retryAfter(ms: number): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))) };
}

export class Gate {
  constructor(private readonly deps: GateDeps) {}

  async admit<T extends Target>(kind: TargetKind, client: string, parse: () => Parsed<T>, authorization: string | undefined): Promise<Admission<T>> {
    const d = this.deps;
    const clientRate = d.perClient.take(client);
    if (!clientRate.ok) {
      return { ok: false, refusal: { status: 429, code: 'ARCHLAB_PROXY_LIMITED', reason: 'rate-client', message: `too many requests from ${client}`, headers: retryAfter(clientRate.retryAfterMs) } };
    }
    const parsed = parse();
    if (!parsed.ok) {
      const status = 400;
      const code: ProxyErrorCode = parsed.problem === 'host-mismatch' ? 'ARCHLAB_PROXY_HOST_MISMATCH' : 'ARCHLAB_PROXY_BAD_TARGET';
      return { ok: false, refusal: { status, code, reason: parsed.problem, message: parsed.message } };
    }
    const target = parsed.target;

    let user: string | undefined;
    if (d.auth !== undefined) {
      const r = await d.auth.verify(authorization);
      if (r.ok) {
        d.metrics.authChecks.inc({ result: r.cached ? 'hit' : 'miss' });
        user = r.user;
      } else {
        d.metrics.authFailures.inc({ reason: r.reason });
        if (r.reason === 'busy') {
          return { ok: false, target, refusal: { status: 503, code: 'ARCHLAB_PROXY_LIMITED', reason: 'auth-busy', message: 'too many credential checks in progress', headers: retryAfter(1000) } };
        }
        return {
          ok: false,
          target,
          refusal: { status: 407, code: 'ARCHLAB_PROXY_AUTH_REQUIRED', reason: 'auth', message: AUTH_REQUIRED_MESSAGE, headers: { 'proxy-authenticate': `Basic realm="${d.realm}", charset="UTF-8"` } },
        };
      }
      const userRate = d.perUser.take(user);
      if (!userRate.ok) {
        return { ok: false, user, target, refusal: { status: 429, code: 'ARCHLAB_PROXY_LIMITED', reason: 'rate-user', message: `too many requests for user ${user}`, headers: retryAfter(userRate.retryAfterMs) } };
      }
    }

    const early = d.acl.checkTarget(target, kind);
    if (early !== undefined) return { ok: false, user, target, refusal: denial(early) };

    if (!d.perClient.acquire(client)) {
      return { ok: false, user, target, refusal: { status: 429, code: 'ARCHLAB_PROXY_LIMITED', reason: 'conn-client', message: `too many connections from ${client}` } };
    }
    if (user !== undefined && !d.perUser.acquire(user)) {
      d.perClient.release(client);
      return { ok: false, user, target, refusal: { status: 429, code: 'ARCHLAB_PROXY_LIMITED', reason: 'conn-user', message: `too many connections for user ${user}` } };
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      d.perClient.release(client);
      if (user !== undefined) d.perUser.release(user);
    };

    let addresses: string[];
    if (target.family !== 0) {
      addresses = [target.host];
    } else {
      const resolved = await this.resolve(target.host);
      if (!Array.isArray(resolved)) {
        release();
        return { ok: false, user, target, refusal: resolved };
      }
      addresses = resolved;
      for (const a of addresses) {
        const denied = d.acl.checkAddress(target, a);
        if (denied !== undefined) {
          release();
          return { ok: false, user, target, refusal: { ...denial(denied), message: `${target.host}: ${denied.message}` } };
        }
      }
    }
    return { ok: true, admitted: { target, user, addresses, lookup: pinnedLookup(addresses), release } };
  }

  private async resolve(host: string): Promise<string[] | Refusal> {
    const ms = this.deps.connectMs();
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), ms);
      });
      const r = await Promise.race([resolveAll(this.deps.lookup, host), timeout]);
      if (r === 'timeout') return { status: 504, code: 'ARCHLAB_PROXY_TIMEOUT', reason: 'dns-timeout', message: `resolving ${host} took over ${ms} ms` };
      if (r.length === 0) return { status: 502, code: 'ARCHLAB_PROXY_DNS', reason: 'dns', message: `${host} has no usable address` };
      return r;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { status: 502, code: 'ARCHLAB_PROXY_DNS', reason: 'dns', message: `cannot resolve ${host} (${code})` };
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}
