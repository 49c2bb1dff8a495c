/**
 * Active health checks: every `intervalMs`, GET `path` on each backend of the pool; `rise`
 * consecutive passes mark a down backend up (and start its slow start), `fall` consecutive
 * failures mark an up backend down (HAProxy's `check inter rise fall`, NGINX Plus `health_check`).
 * A check passes when the status is in `expectStatus`; a connect error, a reset, another status,
 * or no response headers within `timeoutMs` fail it.
 *
 * A thin shell: every timer goes through the Clock (so a test drives hours of checks with a
 * ManualClock), and the request is injectable (the default is `httpHealthRequest`, below).
 *
 * - Rounds: `start()` checks every backend at once, then again every `intervalMs`. Each round
 *   re-reads `backends()`: new backends join, removed ones are forgotten and their in-flight check
 *   is aborted (its result is never applied).
 * - At most one check per backend is in flight: a round skips a backend whose previous check has
 *   not finished (possible only when timeoutMs > intervalMs), and `checkNow()` joins it.
 * - The checker enforces `timeoutMs` itself around any `request`, so a stub that never settles
 *   still counts as a failure and frees the slot; the `AbortSignal` passed as the 4th argument is
 *   aborted then (and on stop() or removal) so a real request can close its socket.
 * - `stop()` cancels the round timer, aborts in-flight checks and drops their results: no check
 *   runs and no transition happens after it. `start()` may be called again later; counts restart.
 * - Only `b.healthy` is changed (and `b.startSlowStart()` called on the way up). The pass/fail
 *   streaks live in the checker, so a new checker (a config reload) starts counting afresh from
 *   the backend's current `healthy`. `onTransition` is called synchronously with the change and
 *   must not throw (a throw rejects `checkNow()`, or is an unhandled rejection in a round).
 * - Every backend is checked at the same instant of a round; there is no jitter (no Random is
 *   injected), which is fine for the pool sizes a single balancer fronts.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { SystemClock } from '../../core/clock.js';
import type { Clock, TimerHandle } from '../../core/clock.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { Backend } from '../backend.js';
import type { ActiveHealthConfig } from '../config.js';
import { BalancerError } from '../errors.js';

/**
 * Performs one check: resolves to the response status (once headers arrive), rejects on an error
 * or timeout. `signal`, when given, is aborted if the checker gives up on the request.
 */
export type HealthRequest = (b: Backend, path: string, timeoutMs: number, signal?: AbortSignal) => Promise<number>;

export interface ActiveHealthCheckerOptions {
  /** path, intervalMs, timeoutMs, expectStatus, rise, fall (zActiveHealth's output). */
  config: ActiveHealthConfig;
  clock: Clock;
  /** The pool's current backends; re-read every round. */
  backends: () => readonly Backend[];
  /** Called when a backend goes down (`up` false) or comes back up, with the deciding check's outcome. */
  onTransition?: (b: Backend, up: boolean, detail: string) => void;
  /** Replaces the HTTP request (tests, other protocols). Default: httpHealthRequest with `clock`. */
  request?: HealthRequest;
  /**
   * How transition details name a check, for a `request` that is not an HTTP GET (health/tcp.ts).
   * Default `GET <path>`, with details such as "GET /healthz -> 200"; with a label they read
   * "<label>: ok", "<label>: no answer within 1000 ms" and "<label> failed: <reason>".
   */
  label?: string;
}

interface CheckState {
  /** Consecutive passes / failures (one of them is always 0). */
  passes: number;
  fails: number;
  /** The check in flight, if any. */
  inFlight: Promise<void> | undefined;
  /** Gives up on the check in flight (aborts its request, drops its result). */
  abort: (() => void) | undefined;
}

interface Outcome {
  ok: boolean;
  detail: string;
}

export class ActiveHealthChecker {
  private readonly config: ActiveHealthConfig;
  private readonly clock: Clock;
  private readonly backends: () => readonly Backend[];
  private readonly onTransition: ((b: Backend, up: boolean, detail: string) => void) | undefined;
  private readonly request: HealthRequest;
  private readonly label: string;
  private readonly custom: boolean;
  private readonly states = new Map<Backend, CheckState>();
  private roundTimer: TimerHandle | undefined;
  private running = false;
  private stopped = false;

  constructor(opts: ActiveHealthCheckerOptions) {
    const { config } = opts;
    if (!(config.intervalMs > 0 && Number.isFinite(config.intervalMs))) throw new InvalidArgumentError(`active health: intervalMs must be a positive number of milliseconds, got ${config.intervalMs}`);
    if (!(config.timeoutMs > 0 && Number.isFinite(config.timeoutMs))) throw new InvalidArgumentError(`active health: timeoutMs must be a positive number of milliseconds, got ${config.timeoutMs}`);
    if (!Number.isInteger(config.rise) || config.rise < 1) throw new InvalidArgumentError(`active health: rise must be an integer >= 1, got ${config.rise}`);
    if (!Number.isInteger(config.fall) || config.fall < 1) throw new InvalidArgumentError(`active health: fall must be an integer >= 1, got ${config.fall}`);
    if (config.expectStatus.length === 0) throw new InvalidArgumentError('active health: expectStatus needs at least one status');
    if (!config.path.startsWith('/')) throw new InvalidArgumentError(`active health: path must start with "/", got ${JSON.stringify(config.path)}`);
    this.config = config;
    this.clock = opts.clock;
    this.backends = opts.backends;
    this.onTransition = opts.onTransition;
    const clock = opts.clock;
    this.request = opts.request ?? ((b, path, timeoutMs, signal) => httpHealthRequest(b, path, timeoutMs, { clock, signal }));
    this.custom = opts.label !== undefined;
    this.label = opts.label ?? `GET ${config.path}`;
  }

  /** Checks every backend now, then every intervalMs. Does nothing if already running. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = false;
    this.round();
  }

  /** Cancels the rounds and every check in flight; their results are dropped. */
  stop(): void {
    this.running = false;
    this.stopped = true;
    this.roundTimer?.cancel();
    this.roundTimer = undefined;
    const states = [...this.states.values()];
    this.states.clear();
    for (const st of states) st.abort?.();
  }

  /**
   * Checks `b` now (outside the rounds) and applies the result; joins the check already in flight
   * for `b` if there is one. Resolves once the result is applied; does nothing after stop().
   */
  checkNow(b: Backend): Promise<void> {
    if (this.stopped) return Promise.resolve();
    let st = this.states.get(b);
    if (st === undefined) {
      st = { passes: 0, fails: 0, inFlight: undefined, abort: undefined };
      this.states.set(b, st);
    }
    if (st.inFlight) return st.inFlight;
    const current = st;
    current.inFlight = this.probe(b, current).then((outcome) => {
      current.inFlight = undefined;
      current.abort = undefined;
      if (outcome !== undefined && this.states.get(b) === current) this.apply(b, current, outcome);
    });
    return current.inFlight;
  }

  /** Consecutive passes and failures counted for `b` (for the admin API and tests). */
  counts(b: Backend): { passes: number; fails: number } | undefined {
    const st = this.states.get(b);
    return st && { passes: st.passes, fails: st.fails };
  }

  private round(): void {
    this.roundTimer = undefined;
    if (!this.running) return;
    const current = this.backends();
    const keep = new Set(current);
    for (const [b, st] of this.states) {
      if (keep.has(b)) continue;
      this.states.delete(b);
      st.abort?.();
    }
    for (const b of current) void this.checkNow(b);
    this.roundTimer = this.clock.setTimer(this.config.intervalMs, () => this.round());
  }

  /** Runs one request under the checker's timeout; undefined when aborted (stop, removal). */
  private probe(b: Backend, st: CheckState): Promise<Outcome | undefined> {
    const { path, timeoutMs, expectStatus } = this.config;
    const { label, custom } = this;
    return new Promise<Outcome | undefined>((resolve) => {
      const controller = new AbortController();
      let settled = false;
      const settle = (outcome: Outcome | undefined, abortRequest = false): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        if (abortRequest) controller.abort();
        resolve(outcome);
      };
      const timer = this.clock.setTimer(timeoutMs, () => settle({ ok: false, detail: `${label}: no ${custom ? 'answer' : 'response headers'} within ${timeoutMs} ms` }, true));
      st.abort = () => settle(undefined, true);
      let pending: Promise<number>;
      try {
        pending = this.request(b, path, timeoutMs, controller.signal);
      } catch (err) {
        settle({ ok: false, detail: `${label} failed: ${describe(err)}` });
        return;
      }
      pending.then(
        (status) =>
          settle(
            expectStatus.includes(status)
              ? { ok: true, detail: custom ? `${label}: ok` : `${label} -> ${status}` }
              : { ok: false, detail: `${label} -> ${status}, expected ${expectStatus.join(' or ')}` },
          ),
        (err: unknown) => settle({ ok: false, detail: `${label} failed: ${describe(err)}` }),
      );
    });
  }

  private apply(b: Backend, st: CheckState, outcome: Outcome): void {
    if (outcome.ok) {
      st.passes++;
      st.fails = 0;
      if (!b.healthy && st.passes >= this.config.rise) {
        b.healthy = true;
        b.startSlowStart();
        this.onTransition?.(b, true, `${st.passes} consecutive passes; last: ${outcome.detail}`);
      }
    } else {
      st.fails++;
      st.passes = 0;
      if (b.healthy && st.fails >= this.config.fall) {
        b.healthy = false;
        this.onTransition?.(b, false, `${st.fails} consecutive failures; last: ${outcome.detail}`);
      }
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface HttpHealthRequestOptions {
  /** Clock for the timeouts. Default: the system clock. */
  clock?: Clock;
  /** Aborting it destroys the connection; the promise (if still pending) rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * GET `path` on `b` over a fresh connection (`agent: false`; HTTPS without certificate checks when
 * `b.tls`). Resolves to the status code once the response headers arrive; `timeoutMs` covers
 * connect + headers. The body is read and discarded, for at most another `timeoutMs`, after which
 * the connection is cut. Rejects with BalancerError ARCHLAB_UPSTREAM_TIMEOUT, _CONNECT or _RESET.
 */
export function httpHealthRequest(b: Pick<Backend, 'host' | 'port' | 'tls' | 'address'>, path: string, timeoutMs: number, opts: HttpHealthRequestOptions = {}): Promise<number> {
  const clock = opts.clock ?? new SystemClock();
  const { signal } = opts;
  return new Promise<number>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const options: https.RequestOptions = {
      host: b.host,
      port: b.port,
      path,
      method: 'GET',
      agent: false,
      headers: { 'user-agent': 'archlab-health-check', accept: '*/*', connection: 'close' },
    };
    const req = b.tls ? https.request({ ...options, rejectUnauthorized: false }) : http.request(options);
    let settled = false;
    let timer: TimerHandle | undefined;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      cleanup();
      req.destroy();
      reject(err);
    };
    const onAbort = (): void => {
      if (settled) req.destroy(); // still draining the body
      else fail(signal?.reason);
    };
    const cleanup = (): void => {
      timer?.cancel();
      timer = undefined;
      signal?.removeEventListener('abort', onAbort);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    timer = clock.setTimer(timeoutMs, () =>
      fail(new BalancerError('ARCHLAB_UPSTREAM_TIMEOUT', `health check of ${b.address}: no response headers within ${timeoutMs} ms`, { retryable: true })),
    );
    req.on('response', (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      timer?.cancel();
      // The status is all we need; drain the body so the server can finish, but not forever.
      timer = clock.setTimer(timeoutMs, () => req.destroy());
      // An error while draining (a reset, our own destroy) does not change the status we have.
      res.on('error', () => undefined);
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      const reset = RESET_CODES.has(code);
      fail(
        new BalancerError(reset ? 'ARCHLAB_UPSTREAM_RESET' : 'ARCHLAB_UPSTREAM_CONNECT', `health check of ${b.address}: ${err.message}`, {
          retryable: true,
          cause: err,
          details: { code },
        }),
      );
    });
    req.on('close', cleanup);
    req.end();
  });
}
