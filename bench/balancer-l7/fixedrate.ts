/**
 * An open-loop load generator: GETs at a fixed rate for a fixed time, as wrk2 does (Debian's wrk
 * has no -R). Each request is issued when it is due, whether or not earlier ones were answered: it
 * goes out on an idle keep-alive connection, or waits for one (up to C connections), and that wait
 * counts, so a stalled server is charged for every request it holds up. Latency runs from the
 * moment the request is issued; how late the generator's own timer issued it against the schedule
 * (setTimeout fires up to ~1 ms late, more when the CPU is contended) is reported apart, as
 * p99LateMs, rather than billed to the server.
 *
 * HTTP/1.1 is spoken directly on node:net sockets (one request in flight per connection, no
 * pipelining): node:http's client costs several times more CPU per request, and on a two-core
 * machine the generator's CPU is taken from the system it measures. Idle connections are reused
 * last-in first-out; a server's `Keep-Alive: timeout=N` is honoured as undici honours it: a
 * connection idle for N s less a second is closed by the generator rather than reused, so a request
 * is never sent on a connection the server is closing for idleness at that moment (that race is the
 * client's to avoid, and it is not the server's failure).
 *
 *   node --import tsx bench/balancer-l7/fixedrate.ts --url URL --rate R --duration-s D \
 *     [--warmup-s W] [--connections C] [--expect-bytes N] [--count-bodies]
 *
 * With --count-bodies the result also counts the measured responses by body, which tells which
 * backend behind a balancer answered (the bench's backends put their name in the body).
 *
 * Prints one JSON line, a FixedRateResult, when done. Bounded: at most C sockets, R x (W + D)
 * requests in all, and 5 s after the last one is due.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { FixedRateResult } from './common.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt?: string): string => {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`fixedrate: ${name} is required\n`);
    process.exit(2);
  }
  return v;
};
const url = new URL(opt('--url'));
const rate = Number(opt('--rate'));
const durationS = Number(opt('--duration-s'));
const warmupS = Number(opt('--warmup-s', '1'));
const maxConnections = Number(opt('--connections', '64'));
const expectBytes = Number(opt('--expect-bytes', '-1'));
const countBodies = args.includes('--count-bodies');
const bodies = new Map<string, number>();
if (!(rate > 0 && rate <= 200_000 && durationS > 0 && durationS <= 600 && warmupS >= 0 && maxConnections >= 1 && maxConnections <= 10_000)) {
  process.stderr.write('fixedrate: need 0 < rate <= 200000, 0 < duration-s <= 600, warmup-s >= 0, 1 <= connections <= 10000\n');
  process.exit(2);
}

const host = url.hostname;
const port = Number(url.port || 80);
const REQUEST = Buffer.from(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: archlab-fixedrate\r\n\r\n`, 'latin1');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const KEEP_ALIVE_TIMEOUT = /\r\nkeep-alive:[^\r]*timeout=(\d+)/;
/** undici's keepAliveTimeoutThreshold: a connection is not reused in the last second of the server's keep-alive timeout. */
const KEEP_ALIVE_MARGIN_MS = 1000;

const warmupCount = Math.round(rate * warmupS);
const total = warmupCount + Math.round(rate * durationS);
const measured = total - warmupCount;
const latencies = new Float64Array(measured);
const lateness = new Float64Array(measured);
const intervalMs = 1000 / rate;
let recorded = 0;
let errors = 0;
let completedAll = 0;
let firstMeasuredAt = 0;
let lastMeasuredAt = 0;

/** Requests issued while every connection was busy: index and issue time, in FIFO order. */
const waitingIndex = new Int32Array(total);
const waitingAt = new Float64Array(total);
let waitHead = 0;
let waitTail = 0;

function complete(index: number, issuedAt: number, ok: boolean, body?: string): void {
  completedAll++;
  if (index < warmupCount) return;
  if (!ok) {
    errors++;
    return;
  }
  if (body !== undefined) bodies.set(body, (bodies.get(body) ?? 0) + 1);
  const now = performance.now();
  latencies[recorded++] = now - issuedAt;
  lastMeasuredAt = now;
}

/** One keep-alive connection carrying one request at a time. */
class Conn {
  private readonly socket: Socket;
  private buf: Buffer | undefined;
  private index = -1;
  private issuedAt = 0;
  private open = false;
  dead = false;
  /** When this connection may last be reused (the server's keep-alive timeout less KEEP_ALIVE_MARGIN_MS); Infinity when the server gave none. */
  reuseUntil = Infinity;

  constructor() {
    this.socket = connect({ host, port, noDelay: true });
    this.socket.on('connect', () => {
      this.open = true;
      if (this.index >= 0) this.socket.write(REQUEST);
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', () => this.fail());
    this.socket.on('close', () => this.fail());
  }

  get busy(): boolean {
    return this.index >= 0;
  }

  send(index: number, issuedAt: number): void {
    this.index = index;
    this.issuedAt = issuedAt;
    this.buf = undefined;
    if (this.open) this.socket.write(REQUEST);
  }

  /** Closes a connection with no request on it (the server is about to close it, or said it would): not a failure. */
  retire(): void {
    this.dead = true;
    this.socket.destroy();
    conns.delete(this);
  }

  private fail(): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    if (this.index >= 0) complete(this.index, this.issuedAt, false);
    this.index = -1;
    conns.delete(this);
    next(undefined);
  }

  private onData(chunk: Buffer): void {
    const buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    const headEnd = buf.indexOf(CRLFCRLF);
    if (headEnd < 0) {
      this.buf = buf;
      return;
    }
    const head = buf.toString('latin1', 0, headEnd).toLowerCase();
    const status = Number(head.slice(9, 12));
    const bodyStart = headEnd + 4;
    let bodyBytes: number;
    let end: number;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(head);
    if (cl) {
      bodyBytes = Number(cl[1]);
      end = bodyStart + bodyBytes;
      if (buf.length < end) {
        this.buf = buf;
        return;
      }
    } else if (head.includes('\r\ntransfer-encoding: chunked')) {
      const parsed = dechunk(buf, bodyStart);
      if (!parsed) {
        this.buf = buf;
        return;
      }
      ({ bodyBytes, end } = parsed);
    } else {
      // No length: the body runs to the close, which this generator never asks for.
      this.fail();
      return;
    }
    this.buf = end < buf.length ? buf.subarray(end) : undefined;
    const index = this.index;
    this.index = -1;
    const body = countBodies ? (cl ? buf.toString('latin1', bodyStart, end) : '(chunked)') : undefined;
    complete(index, this.issuedAt, status === 200 && (expectBytes < 0 || bodyBytes === expectBytes), body);
    const ka = KEEP_ALIVE_TIMEOUT.exec(head);
    this.reuseUntil = ka ? performance.now() + Number(ka[1]) * 1000 - KEEP_ALIVE_MARGIN_MS : Infinity;
    if (head.includes('\r\nconnection: close')) {
      this.retire();
      next(undefined);
    } else {
      next(this);
    }
  }
}

/** Body length and end offset of a complete chunked body starting at `at`, or undefined if incomplete. */
function dechunk(buf: Buffer, at: number): { bodyBytes: number; end: number } | undefined {
  let bodyBytes = 0;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return undefined;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (!Number.isFinite(size)) return undefined;
    at = lineEnd + 2;
    if (size === 0) {
      // Trailers (none expected) end with an empty line.
      const trailerEnd = buf.indexOf('\r\n', at, 'latin1');
      return trailerEnd < 0 ? undefined : { bodyBytes, end: trailerEnd + 2 };
    }
    if (buf.length < at + size + 2) return undefined;
    bodyBytes += size;
    at += size + 2;
  }
}

const conns = new Set<Conn>();
const idle: Conn[] = [];

/** A connection came free (or died): give it the oldest waiting request, or park it. */
function next(c: Conn | undefined): void {
  if (waitHead < waitTail) {
    const target = c ?? (conns.size < maxConnections ? newConn() : undefined);
    if (target) {
      target.send(waitingIndex[waitHead]!, waitingAt[waitHead]!);
      waitHead++;
    }
    return;
  }
  if (c) idle.push(c);
}

function newConn(): Conn {
  const c = new Conn();
  conns.add(c);
  return c;
}

function issue(index: number, issuedAt: number): void {
  let c = idle.pop();
  while (c && (c.dead || c.reuseUntil <= issuedAt)) {
    if (!c.dead) c.retire();
    c = idle.pop();
  }
  if (!c && conns.size < maxConnections) c = newConn();
  if (c) c.send(index, issuedAt);
  else {
    waitingIndex[waitTail] = index;
    waitingAt[waitTail] = issuedAt;
    waitTail++;
  }
}

const start = performance.now();
let sent = 0;
function tick(): void {
  const now = performance.now();
  const due = Math.min(total, Math.floor((now - start) / intervalMs) + 1);
  while (sent < due) {
    const dueAt = start + sent * intervalMs;
    if (sent === warmupCount) firstMeasuredAt = now;
    if (sent >= warmupCount) lateness[sent - warmupCount] = now - dueAt;
    issue(sent, now);
    sent++;
  }
  if (sent < total) setTimeout(tick, 1);
  else finish();
}

function finish(): void {
  const deadline = performance.now() + 5000;
  const wait = (): void => {
    if (completedAll < total && performance.now() < deadline) {
      setTimeout(wait, 5);
      return;
    }
    // Requests still unanswered at the deadline count as errors.
    errors = measured - recorded;
    const s = latencies.subarray(0, recorded).sort();
    const late = lateness.sort();
    const q = (p: number, xs: Float64Array): number => (xs.length ? xs[Math.min(xs.length - 1, Math.max(0, Math.ceil(p * xs.length) - 1))]! : Number.NaN);
    const result: FixedRateResult = {
      scheduled: measured,
      completed: recorded,
      errors,
      p50Ms: q(0.5, s),
      p90Ms: q(0.9, s),
      p99Ms: q(0.99, s),
      p999Ms: q(0.999, s),
      maxMs: recorded ? s[recorded - 1]! : Number.NaN,
      p99LateMs: q(0.99, late),
      achievedRate: recorded / Math.max(1e-3, (lastMeasuredAt - firstMeasuredAt) / 1000),
      ...(countBodies ? { bodies: Object.fromEntries(bodies) } : {}),
    };
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  };
  wait();
}

tick();
