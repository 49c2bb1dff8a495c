/**
 * The UDP bench's load generator, closed loop: `flows` sockets (each its own client port, so each
 * is its own flow to a balancer), each with one datagram in flight; an answer sends the next. A
 * datagram unanswered for LOSS_MS counts as lost and its flow sends the next one.
 *
 *   node --import tsx bench/balancer-udp/load.ts --port P [--flows 32] [--size 64] \
 *     [--duration-s 6] [--warmup-s 1]
 *
 * Prints one JSON line: { datagrams, seconds, rate, p50Ms, p99Ms, lost, wrong } over the measured
 * seconds (answers to datagrams sent in the warm-up are not counted), and `total`, every datagram
 * answered, warm-up included (what a proxy's CPU over the whole run paid for). `wrong` counts
 * answers whose bytes were not the datagram's own.
 */
import * as dgram from 'node:dgram';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const port = opt('--port', 0);
const flows = opt('--flows', 32);
const size = Math.max(16, opt('--size', 64));
const durationS = opt('--duration-s', 6);
const warmupS = opt('--warmup-s', 1);
if (!(port > 0 && flows >= 1 && flows <= 1024 && durationS > 0 && durationS <= 120 && warmupS >= 0 && warmupS <= 60)) {
  process.stderr.write('load.ts: need --port P, 1 <= flows <= 1024, 0 < duration-s <= 120, 0 <= warmup-s <= 60\n');
  process.exit(2);
}

/** A datagram unanswered this long is lost. */
const LOSS_MS = 200;
/** At most this many latencies are kept (a bound on memory: about 2M datagrams/s for 120 s would exceed it; the rest are counted, not kept). */
const MAX_SAMPLES = 4_000_000;

interface Flow {
  sock: dgram.Socket;
  seq: number;
  sentAt: number;
  buf: Buffer;
}

const samples = new Float64Array(MAX_SAMPLES);
let kept = 0;
let answered = 0;
let total = 0;
let lost = 0;
let wrong = 0;
const start = performance.now();
const measureFrom = start + warmupS * 1000;
const end = measureFrom + durationS * 1000;
let done = false;

function send(f: Flow): void {
  if (done) return;
  f.seq++;
  f.buf.writeUInt32LE(f.seq, 0);
  f.sentAt = performance.now();
  f.sock.send(f.buf, port, '127.0.0.1');
}

const all: Flow[] = [];
for (let i = 0; i < flows; i++) {
  const sock = dgram.createSocket('udp4');
  const f: Flow = { sock, seq: 0, sentAt: 0, buf: Buffer.alloc(size, i & 0xff) };
  sock.on('message', (msg) => {
    const now = performance.now();
    if (msg.length !== size || msg.readUInt32LE(0) !== f.seq || !msg.subarray(4).equals(f.buf.subarray(4))) {
      // A late answer to a datagram already counted lost, or bytes that are not ours.
      if (msg.length !== size || msg.readUInt32LE(0) > f.seq) wrong++;
      return;
    }
    total++;
    if (f.sentAt >= measureFrom && now <= end) {
      answered++;
      if (kept < MAX_SAMPLES) samples[kept++] = now - f.sentAt;
    }
    send(f);
  });
  all.push(f);
}
await Promise.all(all.map((f) => new Promise<void>((r) => f.sock.bind(0, '127.0.0.1', r))));
for (const f of all) send(f);

const watchdog = setInterval(() => {
  const now = performance.now();
  for (const f of all) {
    if (now - f.sentAt > LOSS_MS) {
      if (f.sentAt >= measureFrom && f.sentAt <= end) lost++;
      send(f);
    }
  }
}, 50);

await new Promise((r) => setTimeout(r, end - performance.now()));
done = true;
clearInterval(watchdog);
const xs = samples.subarray(0, kept).sort();
const pct = (p: number): number => (kept === 0 ? 0 : xs[Math.min(kept - 1, Math.floor(kept * p))]!);
process.stdout.write(
  JSON.stringify({ datagrams: answered, seconds: durationS, rate: answered / durationS, p50Ms: pct(0.5), p99Ms: pct(0.99), lost, wrong, total }) + '\n',
);
for (const f of all) f.sock.close();
