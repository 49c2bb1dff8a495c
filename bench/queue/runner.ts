/**
 * The one shape every system in bench/queue is driven through, and the three measurements made on
 * each, identically:
 *
 * - **produce**: `count` messages published with at most `window` unacknowledged at a time
 *   (publisher confirms, JetStream acks, XADD replies, archlab acks); the rate is count / time to
 *   the last acknowledgement.
 * - **consume**: a consumer on its own connection subscribes to the backlog the produce step left
 *   and acknowledges each message; the rate is count / time from subscribing to the last message.
 *   Every message must arrive exactly once, or the run is void.
 * - **latency**: a consumer subscribed first, then messages published at a fixed rate, each stamped
 *   with its send time; publish-to-deliver latency is receive time - send time, both in this
 *   process (one clock). Every message must arrive exactly once, or the run is void.
 */
import { epochMs, orTimeout, percentile, Samples, sleep } from '../cache/measure.js';
import type { Payloads} from './payload.js';
import { BenchCheckError, sentAtOf, Tracker } from './payload.js';

/** What a run is for: a throughput run may batch (linger); a latency run sends at once. */
export type RunMode = 'throughput' | 'latency';

/** One destination (queue, stream, topic) opened for one run. */
export interface Session {
  /** Publishes one message; resolves when the system acknowledged it at its durability level. */
  send(body: Buffer): Promise<void>;
  /** Sends what an adapter holds back for batching (a producer's linger), if anything. */
  flush?(): void;
  /**
   * Subscribes on a connection of its own and calls `onMessage` with each message body; the
   * adapter acknowledges each message as its system expects (see each adapter). Resolves once
   * subscribed; `stop()` ends the subscription.
   */
  consume(onMessage: (body: Buffer) => void): Promise<{ stop(): Promise<void> }>;
  /** Deletes the destination and everything in it. */
  drop(): Promise<void>;
  /**
   * Optional batch path (targets with `prepared`): turns `bodies` into requests (batches, in order,
   * split by the target's own batching rule), before the clock starts, so the produce rate
   * measures the broker rather than the client's encoding.
   */
  prepare?(bodies: Buffer[]): PreparedBatch[];
  /** Sends one batch's `data`; resolves when the whole batch is acknowledged. */
  sendPrepared?(prepared: unknown): Promise<void>;
  /** Optional (log targets): the destination's high watermark, i.e. how many messages it holds from offset 0. */
  highWatermark?(): Promise<number>;
  /** Optional (log targets): the body of the message at `offset`, undefined when there is none. */
  readAt?(offset: number): Promise<Buffer | undefined>;
}

/** One request made by `Session.prepare`: `messages` messages in `data`. */
export interface PreparedBatch {
  messages: number;
  data: unknown;
}

/** A system under test: one row label, one durability level. */
export interface Target {
  /** Row label, e.g. 'RabbitMQ classic queue'. */
  system: string;
  /** What an acknowledged publish means on this system, for the table. */
  durability: string;
  /** One sentence on how it is driven (client, acks, consumer), for the notes. */
  method: string;
  /**
   * Messages in the untimed verification round of each size when more than the bench's own
   * `verifyCount`: archlab runs on V8, whose JIT needs a few thousand batches before it settles
   * (the peers run native code and are already warm). Default: the bench's verifyCount.
   */
  warmupMessages?: number;
  /** Produce through `Session.prepare`/`sendPrepared` (batches the session splits as it sends them). */
  prepared?: boolean;
  /** False: no latency run (a variant whose latency is the same as another row's). Default true. */
  latency?: boolean;
  /** A fresh, empty destination named `name` (unique per run). */
  open(name: string, mode: RunMode): Promise<Session>;
  close(): Promise<void>;
}

export interface ProduceResult {
  ms: number;
}

/** Publishes messages 0..count-1 with at most `window` unacknowledged; time until the last ack. */
export async function produce(session: Session, payloads: Payloads, count: number, window: number): Promise<ProduceResult> {
  let inflight = 0;
  let failed: unknown;
  let wake: (() => void) | undefined;
  const settle = (): void => {
    inflight--;
    if (wake && (inflight < window || inflight === 0)) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  const fail = (err: unknown): void => {
    failed ??= err;
    settle();
  };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (inflight >= window) {
      session.flush?.();
      await new Promise<void>((resolve) => (wake = resolve));
      if (failed) throw failed;
    }
    inflight++;
    session.send(payloads.make(i, epochMs())).then(settle, fail);
  }
  session.flush?.();
  while (inflight > 0) await new Promise<void>((resolve) => (wake = resolve));
  if (failed) throw failed;
  return { ms: performance.now() - t0 };
}

/**
 * Messages 0..count-1 made and prepared (split into batches by the session) before the clock
 * starts; then sent with at most `window` messages unacknowledged, as `produce` does: a batch goes
 * when its messages fit beside those in flight (a batch larger than the window goes alone).
 */
export async function producePrepared(session: Session, payloads: Payloads, count: number, window: number): Promise<ProduceResult> {
  if (!session.prepare || !session.sendPrepared) throw new TypeError('this target has no prepared batch path');
  return sendPreparedBatches(session, prepareMessages(session, payloads, count), window);
}

/** Messages 0..count-1, made and split into the session's batches (untimed). */
export function prepareMessages(session: Session, payloads: Payloads, count: number): PreparedBatch[] {
  if (!session.prepare) throw new TypeError('this target has no prepared batch path');
  const bodies: Buffer[] = [];
  for (let i = 0; i < count; i++) bodies.push(payloads.make(i, epochMs()));
  const batches = session.prepare(bodies);
  const prepared = batches.reduce((n, b) => n + b.messages, 0);
  if (prepared !== count) throw new TypeError(`prepare() put ${prepared} of ${count} messages in batches`);
  return batches;
}

/**
 * The timed half of producePrepared: sends `batches` (from prepareMessages, on this session or on
 * another whose sendPrepared takes the same data, as every log target's encoded record batches)
 * with at most `window` messages unacknowledged.
 */
export async function sendPreparedBatches(session: Session, batches: readonly PreparedBatch[], window: number): Promise<ProduceResult> {
  if (!session.sendPrepared) throw new TypeError('this target has no prepared batch path');
  let inflight = 0;
  let failed: unknown;
  let wake: (() => void) | undefined;
  const settled = (n: number): void => {
    inflight -= n;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const t0 = performance.now();
  for (const b of batches) {
    while (inflight > 0 && inflight + b.messages > window) await new Promise<void>((resolve) => (wake = resolve));
    if (failed) throw failed;
    inflight += b.messages;
    session.sendPrepared(b.data).then(
      () => settled(b.messages),
      (err: unknown) => {
        failed ??= err;
        settled(b.messages);
      },
    );
  }
  while (inflight > 0) await new Promise<void>((resolve) => (wake = resolve));
  if (failed) throw failed;
  return { ms: performance.now() - t0 };
}

export interface ConsumeResult {
  ms: number;
  tracker: Tracker;
}

/** Subscribes and waits for `count` messages; throws BenchCheckError unless each arrived exactly once. */
export async function consume(session: Session, payloads: Payloads, count: number, timeoutMs: number, what: string): Promise<ConsumeResult> {
  const tracker = new Tracker(payloads, count);
  const done = tracker.whenComplete();
  const t0 = performance.now();
  const sub = await session.consume((body) => tracker.see(body));
  try {
    const r = await orTimeout(done, timeoutMs);
    const ms = performance.now() - t0;
    if (r === 'timeout') throw new BenchCheckError(`${what}: not every message arrived within ${timeoutMs} ms (${tracker.problem()})`);
    // A short quiet period to catch a late duplicate before declaring the run right.
    await sleep(50);
    tracker.check(what);
    return { ms, tracker };
  } finally {
    await sub.stop();
  }
}

export interface LatencyOptions {
  /** Messages per second, open loop. */
  rate: number;
  /** How long to send. */
  durationMs: number;
  /** Unacknowledged publishes allowed before the sender skips a tick (counted as behind). */
  window: number;
  /** How long to wait for the last message after the last send. */
  drainTimeoutMs: number;
}

export interface LatencyResult {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Actual send rate achieved (below `rate` if the system pushed back). */
  sentPerS: number;
}

/** Fixed-rate publish with a consumer already subscribed; publish-to-deliver latency percentiles. */
export async function latency(session: Session, payloads: Payloads, o: LatencyOptions, what: string): Promise<LatencyResult> {
  const count = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
  const tracker = new Tracker(payloads, count);
  const samples = new Samples(count);
  const done = tracker.whenComplete();
  const sub = await session.consume((body) => {
    const now = epochMs();
    if (tracker.see(body) >= 0) samples.push(now - sentAtOf(body));
  });
  try {
    let sent = 0;
    let inflight = 0;
    let failed: unknown;
    const settle = (): void => {
      inflight--;
    };
    const t0 = performance.now();
    // Open loop: each tick sends whatever the schedule says is due by now (timers fire about
    // every millisecond), each message stamped when it is actually sent.
    while (sent < count) {
      if (failed) throw failed;
      const due = Math.min(count, Math.floor(((performance.now() - t0) * o.rate) / 1000) + 1);
      while (sent < due && inflight < o.window) {
        inflight++;
        session.send(payloads.make(sent++, epochMs())).then(settle, (err: unknown) => {
          failed ??= err;
          settle();
        });
      }
      session.flush?.();
      if (sent < count) await sleep(1);
    }
    const sendMs = performance.now() - t0;
    const r = await orTimeout(done, o.drainTimeoutMs);
    if (failed) throw failed;
    if (r === 'timeout') throw new BenchCheckError(`${what}: not every message arrived within ${o.drainTimeoutMs} ms of the last send (${tracker.problem()})`);
    await sleep(50);
    tracker.check(what);
    const v = samples.values();
    return { count, p50Ms: percentile(v, 50), p99Ms: percentile(v, 99), maxMs: percentile(v, 100), sentPerS: (count / sendMs) * 1000 };
  } finally {
    await sub.stop();
  }
}
