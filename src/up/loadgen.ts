/**
 * The built-in load generator of `archlab up` (the `clients` of the topology): open loop, so
 * requests leave on schedule at `rate` req/s whether or not earlier ones were answered (a slow
 * system does not slow its own load down, as real users do not wait for each other).
 *
 *   pure     ZipfSampler (product ids), MixPicker (request kinds), RateSchedule (rate, spike, pacing),
 *            LatencyWindow (per-second log histograms over the last N seconds)
 *   shell    LoadGenerator: a timer ticking every `tickMs`, a bounded number in flight, a transport
 *   network  undiciTransport: two keep-alive undici Pools, the CDN front door and the balancer
 *
 * Everything is bounded: at most `maxInFlight` requests outstanding (a request that falls due
 * while full is counted as `dropped`, never queued), a catch-up of at most `maxBurstMs` of the
 * schedule after a stall (the rest is dropped), a fixed number of histogram buckets per second.
 *
 * Every order carries a fresh `Idempotency-Key` (a random UUID), as a careful client sends one: the
 * app places at most one order per key, so the balancer may send an order again when the connection
 * to an app instance broke before any answer (an instance killed mid-request), and the client never
 * sees the failure nor pays twice.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';
import { ArchlabError, InvalidArgumentError, SystemClock, type Clock, type Random, type TimerHandle } from '../core/index.js';

// ------------------------------------------------------------------ limits

/** Highest rate the generator accepts, req/s (as the topology's clients.rate). */
export const MAX_RATE = 100_000;
export const SPIKE_FACTOR_RANGE = [1, 100] as const;
export const SPIKE_SECONDS_RANGE = [1, 600] as const;
/** Largest catalogue the Zipf table is built for (8 bytes a product). */
export const MAX_ZIPF_N = 1_000_000;

export const REQUEST_KINDS = ['reads', 'writes', 'searches', 'static'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];
export type Mix = Record<RequestKind, number>;

function check(ok: boolean, message: string): void {
  if (!ok) throw new InvalidArgumentError(message);
}

// ------------------------------------------------------------------ Zipf sampler

/**
 * Ranks 1..n with P(k) proportional to 1/k^s (s = 0: uniform). Inverse-CDF over a table built once
 * (binary search per draw), so a draw is O(log n) and allocation-free.
 */
export class ZipfSampler {
  /** cdf[k-1] = P(rank <= k); the last entry is exactly 1. Undefined for s = 0 (uniform, no table). */
  private readonly cdf: Float64Array | undefined;

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    check(Number.isSafeInteger(n) && n >= 1 && n <= MAX_ZIPF_N, `zipf n must be an integer 1..${MAX_ZIPF_N}, got ${n}`);
    check(Number.isFinite(s) && s >= 0 && s <= 4, `zipf exponent (skew) must be 0..4, got ${s}`);
    if (s === 0) return;
    const cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 1; k <= n; k++) {
      sum += 1 / Math.pow(k, s);
      cdf[k - 1] = sum;
    }
    for (let i = 0; i < n; i++) cdf[i] = cdf[i]! / sum;
    cdf[n - 1] = 1;
    this.cdf = cdf;
  }

  /** P(rank = k), for tests and the dashboard. */
  probability(k: number): number {
    if (!Number.isInteger(k) || k < 1 || k > this.n) return 0;
    if (this.cdf === undefined) return 1 / this.n;
    return this.cdf[k - 1]! - (k === 1 ? 0 : this.cdf[k - 2]!);
  }

  /** A rank in 1..n. */
  sample(random: Random): number {
    const cdf = this.cdf;
    if (cdf === undefined) return 1 + random.int(this.n);
    const u = random.next();
    // The first k with cdf[k-1] > u.
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo + 1;
  }
}

// ------------------------------------------------------------------ mix picker

/** Picks a request kind with probability proportional to its weight in the mix. */
export class MixPicker {
  private readonly kinds: RequestKind[] = [];
  private readonly bounds: number[] = [];
  private readonly total: number;

  constructor(mix: Mix) {
    let total = 0;
    for (const k of REQUEST_KINDS) {
      const w = mix[k];
      check(Number.isFinite(w) && w >= 0, `mix.${k} must be a finite number >= 0, got ${w}`);
      if (w === 0) continue;
      total += w;
      this.kinds.push(k);
      this.bounds.push(total);
    }
    check(total > 0, 'at least one of mix.reads, writes, searches, static must be > 0');
    this.total = total;
  }

  pick(random: Random): RequestKind {
    if (this.kinds.length === 1) return this.kinds[0]!;
    const u = random.next() * this.total;
    for (let i = 0; i < this.bounds.length - 1; i++) if (u < this.bounds[i]!) return this.kinds[i]!;
    return this.kinds[this.kinds.length - 1]!;
  }
}

// ------------------------------------------------------------------ rate schedule

export interface SpikeState {
  factor: number;
  /** Time left, in ms. */
  remainingMs: number;
}

/**
 * The rate over time (a base rate, times a spike factor while a spike lasts) and the pacing that
 * turns it into sends: `take(now)` returns how many requests fell due since the last call (the
 * integral of the rate, carried over in fractions) and how many of them are too late to send
 * (beyond `maxBurstMs` of the schedule: a stalled event loop does not fire a flood afterwards).
 * Times are monotonic ms; the caller passes them in (pure).
 */
export class RateSchedule {
  private base: number;
  private spikeState: { factor: number; startMs: number; endMs: number } | undefined;
  /** Requests due and not yet taken, in thousandths (rate x ms: whole numbers for whole rates, no drift). */
  private credit = 0;
  private lastMs: number;
  private lastTakeMs: number;

  constructor(
    rate: number,
    nowMs: number,
    private readonly maxBurstMs = 250,
  ) {
    RateSchedule.checkRate(rate);
    check(Number.isFinite(maxBurstMs) && maxBurstMs > 0, `maxBurstMs must be > 0, got ${maxBurstMs}`);
    this.base = rate;
    this.lastMs = nowMs;
    this.lastTakeMs = nowMs;
  }

  static checkRate(rate: number): void {
    check(Number.isFinite(rate) && rate >= 0 && rate <= MAX_RATE, `rate must be 0..${MAX_RATE} req/s (0 = idle), got ${rate}`);
  }

  get baseRate(): number {
    return this.base;
  }

  /** The rate in effect at `nowMs`, req/s. */
  rateAt(nowMs: number): number {
    const s = this.spikeState;
    return s !== undefined && nowMs >= s.startMs && nowMs < s.endMs ? this.base * s.factor : this.base;
  }

  spikeAt(nowMs: number): SpikeState | undefined {
    const s = this.spikeState;
    return s !== undefined && nowMs < s.endMs ? { factor: s.factor, remainingMs: s.endMs - nowMs } : undefined;
  }

  /** Changes the base rate from `nowMs` on (a spike in progress goes on, over the new base). */
  setRate(rate: number, nowMs: number): void {
    RateSchedule.checkRate(rate);
    this.accrue(nowMs);
    this.base = rate;
  }

  /** Rate x `factor` from `nowMs` for `seconds`, then back; replaces a spike in progress. */
  spike(factor: number, seconds: number, nowMs: number): void {
    const [fmin, fmax] = SPIKE_FACTOR_RANGE;
    const [smin, smax] = SPIKE_SECONDS_RANGE;
    check(Number.isFinite(factor) && factor >= fmin && factor <= fmax, `spike factor must be ${fmin}..${fmax}, got ${factor}`);
    check(Number.isFinite(seconds) && seconds >= smin && seconds <= smax, `spike duration must be ${smin}..${smax} s, got ${seconds}`);
    this.accrue(nowMs);
    this.spikeState = { factor, startMs: nowMs, endMs: nowMs + seconds * 1000 };
  }

  /** Whether nothing can fall due until the next setRate (base 0: a spike multiplies 0 too). */
  get idle(): boolean {
    return this.base === 0;
  }

  /**
   * Requests due since the last call: `send` now, `late` to count as dropped. After a gap longer
   * than maxBurstMs (a stalled event loop), only the last maxBurstMs worth of it is sent.
   */
  take(nowMs: number): { send: number; late: number } {
    this.accrue(nowMs);
    const gapMs = nowMs - this.lastTakeMs;
    this.lastTakeMs = nowMs;
    let late = 0;
    if (gapMs > this.maxBurstMs && this.credit >= 1000) {
      late = Math.floor((this.credit * (1 - this.maxBurstMs / gapMs)) / 1000);
      this.credit -= late * 1000;
    }
    const send = Math.floor(this.credit / 1000);
    this.credit -= send * 1000;
    return { send, late };
  }

  /** Adds the requests due over [lastMs, nowMs]: base x duration, plus base x (factor - 1) x its overlap with the spike. */
  private accrue(nowMs: number): void {
    const from = this.lastMs;
    if (nowMs <= from) return;
    this.lastMs = nowMs;
    let due = this.base * (nowMs - from);
    const s = this.spikeState;
    if (s !== undefined) {
      const overlap = Math.min(nowMs, s.endMs) - Math.max(from, s.startMs);
      if (overlap > 0) due += this.base * (s.factor - 1) * overlap;
      if (nowMs >= s.endMs) this.spikeState = undefined;
    }
    this.credit += due;
  }
}

// ------------------------------------------------------------------ latency window

/** Histogram buckets grow by 5% from 10 µs: 10 µs .. ~3 min in ~340 buckets, 5% precision. */
const BUCKET_MIN_MS = 0.01;
const BUCKET_GROWTH = 1.05;
const BUCKETS = Math.ceil(Math.log(200_000 / BUCKET_MIN_MS) / Math.log(BUCKET_GROWTH)) + 1;
const LOG_GROWTH = Math.log(BUCKET_GROWTH);

/** Upper bound of bucket i, in ms (what a percentile reports: never below the true value). */
function bucketUpperMs(i: number): number {
  return BUCKET_MIN_MS * Math.pow(BUCKET_GROWTH, i + 1);
}

function bucketOf(ms: number): number {
  if (!(ms > BUCKET_MIN_MS)) return 0;
  return Math.min(BUCKETS - 1, Math.floor(Math.log(ms / BUCKET_MIN_MS) / LOG_GROWTH));
}

/**
 * Latencies and sends of the last `seconds` seconds: one slot per second (a log histogram and a
 * send count), preallocated in a ring; a slot is cleared when its second comes round again.
 */
export class LatencyWindow {
  private readonly hist: Uint32Array;
  private readonly sent: Float64Array;
  /** The second (floor(ms / 1000)) each slot holds; -1 = empty. */
  private readonly second: Float64Array;

  constructor(
    readonly seconds: number,
    private readonly startMs: number,
  ) {
    check(Number.isInteger(seconds) && seconds >= 1 && seconds <= 300, `windowSeconds must be an integer 1..300, got ${seconds}`);
    this.hist = new Uint32Array(seconds * BUCKETS);
    this.sent = new Float64Array(seconds);
    this.second = new Float64Array(seconds).fill(-1);
  }

  private slot(nowMs: number): number {
    const sec = Math.floor(nowMs / 1000);
    const i = sec % this.seconds;
    if (this.second[i] !== sec) {
      this.second[i] = sec;
      this.sent[i] = 0;
      this.hist.fill(0, i * BUCKETS, (i + 1) * BUCKETS);
    }
    return i;
  }

  recordSend(nowMs: number): void {
    this.sent[this.slot(nowMs)]!++;
  }

  recordLatency(nowMs: number, latencyMs: number): void {
    this.hist[this.slot(nowMs) * BUCKETS + bucketOf(latencyMs)]!++;
  }

  private live(i: number, nowMs: number): boolean {
    const sec = Math.floor(nowMs / 1000);
    return this.second[i]! > sec - this.seconds && this.second[i]! <= sec;
  }

  /** Sends per second over the window (or since start, when that is shorter). */
  sendRate(nowMs: number): number {
    let n = 0;
    for (let i = 0; i < this.seconds; i++) if (this.live(i, nowMs)) n += this.sent[i]!;
    const windowStart = (Math.floor(nowMs / 1000) - this.seconds + 1) * 1000;
    const spanMs = nowMs - Math.max(windowStart, this.startMs);
    return spanMs <= 0 ? 0 : (n * 1000) / spanMs;
  }

  /** Count and nearest-rank percentiles (p in 0..100, bucket upper bounds in ms; undefined when empty). */
  percentiles(nowMs: number, ps: readonly number[]): { count: number; values: Array<number | undefined> } {
    const merged = new Float64Array(BUCKETS);
    let count = 0;
    for (let i = 0; i < this.seconds; i++) {
      if (!this.live(i, nowMs)) continue;
      for (let b = 0; b < BUCKETS; b++) {
        const c = this.hist[i * BUCKETS + b]!;
        merged[b]! += c;
        count += c;
      }
    }
    const values = ps.map((p) => {
      if (count === 0) return undefined;
      const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * count));
      let seen = 0;
      for (let b = 0; b < BUCKETS; b++) {
        seen += merged[b]!;
        if (seen >= rank) return bucketUpperMs(b);
      }
      return bucketUpperMs(BUCKETS - 1);
    });
    return { count, values };
  }
}

// ------------------------------------------------------------------ transport

/** One request of the generator. `target` says which front it goes to. */
export interface LoadRequest {
  kind: RequestKind;
  target: 'cdn' | 'balancer';
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
}

/** Sends a request and resolves with the response status once the body is read; rejects on a network error or abort. */
export interface LoadTransport {
  send(req: LoadRequest, signal: AbortSignal): Promise<number>;
  /** Drops every connection, failing what is in flight. */
  close(): Promise<void>;
}

/** Keep-alive undici Pools to the CDN front door and the balancer, at most `connections` sockets each. */
export function undiciTransport(opts: { cdnUrl: string; balancerUrl: string; connections: number }): LoadTransport {
  check(Number.isInteger(opts.connections) && opts.connections >= 1 && opts.connections <= 10_000, `connections must be an integer 1..10000, got ${opts.connections}`);
  const pool = (url: string): Pool => new Pool(new URL(url).origin, { connections: opts.connections, pipelining: 1, keepAliveTimeout: 10_000 });
  const pools = { cdn: pool(opts.cdnUrl), balancer: pool(opts.balancerUrl) };
  return {
    async send(req, signal) {
      const res = await pools[req.target].request({ method: req.method, path: req.path, headers: req.headers, body: req.body ?? null, signal });
      // Read the body through (the latency includes it) without keeping it; a huge body drops the socket.
      await res.body.dump({ limit: 4 * 1024 * 1024, signal });
      return res.statusCode;
    },
    async close() {
      await Promise.all([pools.cdn.destroy(), pools.balancer.destroy()]);
    },
  };
}

// ------------------------------------------------------------------ the generator

export interface LoadGeneratorOptions {
  /** Requests per second; 0 = idle until setRate. */
  rate: number;
  /** Zipf exponent over product ids (0 = uniform). */
  skew: number;
  /** Relative weights of the request kinds. */
  mix: Mix;
  /** Requests outstanding at most; a request due while full is dropped (counted). */
  maxInFlight: number;
  /** A request not answered within this is aborted and counted as a timeout, in ms. */
  timeoutMs: number;
  /** Product ids are 1..products. */
  products: number;
  /** User ids (of orders) are 1..users, uniform. */
  users: number;
  /** Categories searched, uniform. */
  categories: readonly string[];
  /** Client regions and their weights: each CDN request names one in `regionHeader`. Default: none (the CDN's default region). */
  regions?: ReadonlyArray<{ name: string; weight: number }>;
  /** Default "x-client-region" (the CDN's default routing header). */
  regionHeader?: string;
  random: Random;
  /** Default SystemClock. */
  clock?: Clock;
  /** The pacing tick, in ms. Default 10. */
  tickMs?: number;
  /**
   * Makes the Idempotency-Key of each order; every call must return a new key. Default
   * crypto.randomUUID (not the seeded `random`: keys of one seed would repeat across runs on a
   * database that outlives them, and the app would answer the second run with the first run's orders).
   */
  idempotencyKey?: () => string;
  /** Seconds the latency percentiles and the measured rate cover. Default 10. */
  windowSeconds?: number;
}

export interface LoadStats {
  /** The rate asked for now (base x spike factor), req/s. */
  rate: number;
  /** The base rate (setRate), req/s. */
  baseRate: number;
  spike: SpikeState | null;
  /** Requests sent per second, measured over the window. */
  sentRate: number;
  issued: number;
  byKind: Record<RequestKind, number>;
  /** Answered requests by status class. */
  completed: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Orders answered 201 Created (placed, or a repeat of a key answered with its order). */
  created: number;
  /** Requests that failed without a status (refused, reset, ...). */
  errors: number;
  timeouts: number;
  /** Requests that fell due while `maxInFlight` were outstanding (or too late after a stall): not sent. */
  dropped: number;
  inFlight: number;
  /** The most ever outstanding at once (never above maxInFlight). */
  peakInFlight: number;
  /** Over the last `windowSeconds`; p50/p99 in ms, null with no answer in the window. */
  latency: { windowSeconds: number; count: number; p50Ms: number | null; p99Ms: number | null };
}

export class LoadTimeoutError extends ArchlabError {
  constructor(timeoutMs: number) {
    super('ARCHLAB_LOADGEN_TIMEOUT', `no answer within ${timeoutMs} ms`);
  }
}

/**
 * The open-loop generator over a transport. Starts ticking at once (idle while the rate is 0);
 * stop() ends it, aborting what is in flight.
 */
export class LoadGenerator {
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly zipf: ZipfSampler;
  private readonly picker: MixPicker;
  private readonly schedule: RateSchedule;
  private readonly window: LatencyWindow;
  private readonly tickMs: number;
  private readonly getHeaders: Array<Record<string, string>>;
  private readonly regionBounds: number[];
  private readonly idempotencyKey: () => string;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  private readonly controllers = new Set<AbortController>();
  private readonly counts = {
    issued: 0,
    byKind: { reads: 0, writes: 0, searches: 0, static: 0 } as Record<RequestKind, number>,
    completed: { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
    created: 0,
    errors: 0,
    timeouts: 0,
    dropped: 0,
    inFlight: 0,
    peakInFlight: 0,
  };

  constructor(
    private readonly o: LoadGeneratorOptions,
    private readonly transport: LoadTransport,
  ) {
    check(Number.isInteger(o.maxInFlight) && o.maxInFlight >= 1 && o.maxInFlight <= 10_000, `maxInFlight must be an integer 1..10000, got ${o.maxInFlight}`);
    check(Number.isFinite(o.timeoutMs) && o.timeoutMs >= 1 && o.timeoutMs <= 120_000, `timeoutMs must be 1..120000, got ${o.timeoutMs}`);
    check(Number.isSafeInteger(o.users) && o.users >= 1, `users must be an integer >= 1, got ${o.users}`);
    check(o.categories.length >= 1, 'categories must not be empty');
    this.tickMs = o.tickMs ?? 10;
    check(Number.isInteger(this.tickMs) && this.tickMs >= 1 && this.tickMs <= 1000, `tickMs must be an integer 1..1000, got ${this.tickMs}`);
    this.clock = o.clock ?? new SystemClock();
    this.random = o.random;
    this.idempotencyKey = o.idempotencyKey ?? randomUUID;
    this.zipf = new ZipfSampler(o.products, o.skew);
    this.picker = new MixPicker(o.mix);
    const now = this.clock.monotonic();
    this.schedule = new RateSchedule(o.rate, now);
    this.window = new LatencyWindow(o.windowSeconds ?? 10, now);
    // Headers per region, built once (requests share them).
    const header = o.regionHeader ?? 'x-client-region';
    const regions = (o.regions ?? []).filter((r) => r.weight > 0);
    this.getHeaders = regions.length === 0 ? [{}] : regions.map((r) => ({ [header]: r.name }));
    let total = 0;
    this.regionBounds = regions.map((r) => (total += r.weight));
    this.arm();
  }

  setRate(rate: number): void {
    this.assertRunning();
    this.schedule.setRate(rate, this.clock.monotonic());
    this.arm();
  }

  spike(factor: number, seconds: number): void {
    this.assertRunning();
    this.schedule.spike(factor, seconds, this.clock.monotonic());
    this.arm();
  }

  stats(): LoadStats {
    const now = this.clock.monotonic();
    const c = this.counts;
    const { count, values } = this.window.percentiles(now, [50, 99]);
    return {
      rate: this.schedule.rateAt(now),
      baseRate: this.schedule.baseRate,
      spike: this.schedule.spikeAt(now) ?? null,
      sentRate: this.window.sendRate(now),
      issued: c.issued,
      byKind: { ...c.byKind },
      completed: { ...c.completed },
      created: c.created,
      errors: c.errors,
      timeouts: c.timeouts,
      dropped: c.dropped,
      inFlight: c.inFlight,
      peakInFlight: c.peakInFlight,
      latency: { windowSeconds: this.window.seconds, count, p50Ms: values[0] ?? null, p99Ms: values[1] ?? null },
    };
  }

  /** Stops sending, aborts what is in flight, closes the connections. Idempotent. */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.stopped = true;
      this.timer?.cancel();
      this.timer = undefined;
      for (const c of this.controllers) c.abort();
      await this.transport.close();
      // Aborted requests settle within a few ticks; the wait is bounded all the same (a real timer, unref'd).
      if (this.counts.inFlight > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 2000);
          t.unref();
          this.drained = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    })());
  }

  private assertRunning(): void {
    if (this.stopped) throw new InvalidArgumentError('the load generator is stopped');
  }

  /** Starts the tick unless it runs, or nothing can fall due (idle: no timer at all). */
  private arm(): void {
    if (this.stopped || this.timer !== undefined) return;
    if (this.schedule.idle) return;
    this.timer = this.clock.setTimer(this.tickMs, () => this.tick());
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const now = this.clock.monotonic();
    const { send, late } = this.schedule.take(now);
    this.counts.dropped += late;
    for (let i = 0; i < send; i++) {
      if (this.counts.inFlight >= this.o.maxInFlight) {
        this.counts.dropped += send - i;
        break;
      }
      this.issue(now);
    }
    this.arm();
  }

  private issue(now: number): void {
    const req = this.next();
    const c = this.counts;
    c.issued++;
    c.byKind[req.kind]++;
    c.inFlight++;
    if (c.inFlight > c.peakInFlight) c.peakInFlight = c.inFlight;
    this.window.recordSend(now);
    const controller = new AbortController();
    this.controllers.add(controller);
    let timedOut = false;
    const timer = this.clock.setTimer(this.o.timeoutMs, () => {
      timedOut = true;
      controller.abort(new LoadTimeoutError(this.o.timeoutMs));
    });
    const settle = (): void => {
      timer.cancel();
      this.controllers.delete(controller);
      c.inFlight--;
      if (c.inFlight === 0 && this.drained !== undefined) this.drained();
    };
    this.transport.send(req, controller.signal).then(
      (status) => {
        const end = this.clock.monotonic();
        settle();
        if (timedOut || this.stopped) return;
        const cls = status >= 500 ? '5xx' : status >= 400 ? '4xx' : status >= 300 ? '3xx' : '2xx';
        c.completed[cls]++;
        if (status === 201 && req.kind === 'writes') c.created++;
        this.window.recordLatency(end, end - now);
      },
      () => {
        settle();
        if (timedOut) c.timeouts++;
        else if (!this.stopped) c.errors++;
      },
    );
  }

  /** The next request: a kind from the mix, a Zipf product id, a region from the weights. */
  private next(): LoadRequest {
    const kind = this.picker.pick(this.random);
    const headers = this.getHeaders.length === 1 ? this.getHeaders[0]! : this.getHeaders[this.pickRegion()]!;
    switch (kind) {
      case 'reads':
        return { kind, target: 'cdn', method: 'GET', path: `/api/products/${this.zipf.sample(this.random)}`, headers, body: undefined };
      case 'searches': {
        const category = this.o.categories[this.random.int(this.o.categories.length)]!;
        return { kind, target: 'cdn', method: 'GET', path: `/api/products?category=${encodeURIComponent(category)}`, headers, body: undefined };
      }
      case 'static':
        return { kind, target: 'cdn', method: 'GET', path: `/static/products/${this.zipf.sample(this.random)}.svg`, headers, body: undefined };
      case 'writes': {
        const body = JSON.stringify({ userId: 1 + this.random.int(this.o.users), productId: this.zipf.sample(this.random), qty: 1 });
        // A fresh key per order: a resend of this request (by the balancer) is recognised as this order.
        const headers = { 'content-type': 'application/json', 'idempotency-key': this.idempotencyKey() };
        return { kind, target: 'balancer', method: 'POST', path: '/api/orders', headers, body };
      }
    }
  }

  private pickRegion(): number {
    const total = this.regionBounds[this.regionBounds.length - 1]!;
    const u = this.random.next() * total;
    for (let i = 0; i < this.regionBounds.length - 1; i++) if (u < this.regionBounds[i]!) return i;
    return this.regionBounds.length - 1;
  }
}

/** A generator over keep-alive connections to the CDN front door (reads, searches, static) and the balancer (writes). */
export function startLoadGenerator(opts: LoadGeneratorOptions & { cdnUrl: string; balancerUrl: string }): LoadGenerator {
  const { cdnUrl, balancerUrl, ...rest } = opts;
  // Enough sockets that the bound in flight, not the pool, limits the load; at most 256 per front.
  const transport = undiciTransport({ cdnUrl, balancerUrl, connections: Math.min(opts.maxInFlight, 256) });
  try {
    return new LoadGenerator(rest, transport);
  } catch (err) {
    void transport.close();
    throw err;
  }
}
