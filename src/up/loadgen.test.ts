import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, test } from 'node:test';
import { ManualClock, SeededRandom } from '../core/index.js';
import { LatencyWindow, LoadGenerator, MixPicker, RateSchedule, startLoadGenerator, ZipfSampler, type LoadGeneratorOptions, type LoadRequest, type LoadTransport } from './loadgen.js';

const SEED = 20261128;
const seeded = (t: { diagnostic(m: string): void }, seed = SEED): SeededRandom => {
  t.diagnostic(`seed ${seed}`);
  return new SeededRandom(seed);
};

describe('ZipfSampler', () => {
  it('P(k) is proportional to 1/k^s and sums to 1', () => {
    const z = new ZipfSampler(100, 1.1);
    let sum = 0;
    for (let k = 1; k <= 100; k++) sum += z.probability(k);
    assert.ok(Math.abs(sum - 1) < 1e-9, String(sum));
    assert.ok(Math.abs(z.probability(1) / z.probability(2) - Math.pow(2, 1.1)) < 1e-9);
    assert.ok(Math.abs(z.probability(3) / z.probability(9) - Math.pow(3, 1.1)) < 1e-9);
    assert.equal(z.probability(0), 0);
    assert.equal(z.probability(101), 0);
  });

  it('draws the same ranks as a linear-scan reference over the same uniforms', (t) => {
    for (const s of [0.5, 1, 1.1, 2]) {
      const n = 257;
      const z = new ZipfSampler(n, s);
      const a = seeded(t, SEED + Math.round(s * 10));
      const b = new SeededRandom(SEED + Math.round(s * 10));
      // Reference: walk the probabilities until their sum passes u.
      const weights = Array.from({ length: n }, (_, i) => 1 / Math.pow(i + 1, s));
      const total = weights.reduce((x, y) => x + y, 0);
      for (let i = 0; i < 3000; i++) {
        const u = b.next();
        let acc = 0;
        let want = n;
        for (let k = 1; k <= n; k++) {
          acc += weights[k - 1]! / total;
          if (acc > u) {
            want = k;
            break;
          }
        }
        const got = z.sample(a);
        // Floating sums in a different order may disagree only on a boundary: then by one rank.
        assert.ok(Math.abs(got - want) <= 1 && (got === want || Math.abs(acc - u) < 1e-9), `s=${s} draw ${i}: got ${got}, want ${want}`);
      }
    }
  });

  it('skewed draws concentrate on the hot ranks; skew 0 is uniform', (t) => {
    const r = seeded(t);
    const hot = new ZipfSampler(1000, 1.1);
    const counts = new Map<number, number>();
    const N = 50_000;
    for (let i = 0; i < N; i++) {
      const k = hot.sample(r);
      assert.ok(k >= 1 && k <= 1000);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const f1 = (counts.get(1) ?? 0) / N;
    assert.ok(Math.abs(f1 - hot.probability(1)) < 0.01, `rank 1: ${f1} vs ${hot.probability(1)}`);
    assert.ok((counts.get(1) ?? 0) > (counts.get(2) ?? 0) && (counts.get(2) ?? 0) > (counts.get(10) ?? 0));

    const flat = new ZipfSampler(10, 0);
    const c = new Array<number>(11).fill(0);
    for (let i = 0; i < N; i++) c[flat.sample(r)]!++;
    assert.equal(c[0], 0);
    for (let k = 1; k <= 10; k++) assert.ok(Math.abs(c[k]! / N - 0.1) < 0.01, `rank ${k}: ${c[k]}`);
  });

  it('refuses bad sizes and exponents', () => {
    assert.throws(() => new ZipfSampler(0, 1), /zipf n must be an integer/);
    assert.throws(() => new ZipfSampler(1.5, 1), /zipf n/);
    assert.throws(() => new ZipfSampler(10, -1), /skew/);
    assert.throws(() => new ZipfSampler(10, Number.NaN), /skew/);
    assert.equal(new ZipfSampler(1, 1.1).sample(new SeededRandom(1)), 1);
  });
});

describe('MixPicker', () => {
  it('picks kinds in proportion to their weights, never a zero weight', (t) => {
    const r = seeded(t);
    const p = new MixPicker({ reads: 70, writes: 5, searches: 0, static: 25 });
    const c = { reads: 0, writes: 0, searches: 0, static: 0 };
    const N = 40_000;
    for (let i = 0; i < N; i++) c[p.pick(r)]++;
    assert.equal(c.searches, 0);
    assert.ok(Math.abs(c.reads / N - 0.7) < 0.01, JSON.stringify(c));
    assert.ok(Math.abs(c.writes / N - 0.05) < 0.01, JSON.stringify(c));
    assert.ok(Math.abs(c.static / N - 0.25) < 0.01, JSON.stringify(c));
  });

  it('one kind only, and an empty mix refused', (t) => {
    const r = seeded(t);
    const p = new MixPicker({ reads: 0, writes: 3, searches: 0, static: 0 });
    for (let i = 0; i < 100; i++) assert.equal(p.pick(r), 'writes');
    assert.throws(() => new MixPicker({ reads: 0, writes: 0, searches: 0, static: 0 }), /at least one/);
    assert.throws(() => new MixPicker({ reads: -1, writes: 1, searches: 0, static: 0 }), /mix.reads/);
  });
});

/** Takes from `s` every `stepMs` from `fromMs` up to `toMs`; the sums of send and late. */
function drive(s: RateSchedule, fromMs: number, toMs: number, stepMs = 10): { send: number; late: number } {
  let send = 0;
  let late = 0;
  for (let t = fromMs + stepMs; t <= toMs; t += stepMs) {
    const d = s.take(t);
    send += d.send;
    late += d.late;
  }
  return { send, late };
}

describe('RateSchedule', () => {
  it('sends rate x time, carrying fractions over', () => {
    const s = new RateSchedule(30, 0);
    const { send, late } = drive(s, 0, 1000);
    assert.equal(send, 30);
    assert.equal(late, 0);
    assert.equal(drive(s, 1000, 11_000).send, 300, 'over 10 s more');
    const slow = new RateSchedule(0.5, 0);
    assert.equal(drive(slow, 0, 10_000, 7).send, 4, 'a fraction carried over: 0.5/s for 9.996 s');
    const fast = new RateSchedule(1000, 0);
    assert.equal(fast.take(1).send, 1);
    assert.equal(fast.take(2).send, 1);
  });

  it('rate 0 is idle; setRate accrues the old rate up to the change', () => {
    const s = new RateSchedule(0, 0, 1000);
    assert.equal(s.idle, true);
    assert.deepEqual(drive(s, 0, 5000), { send: 0, late: 0 });
    s.setRate(100, 5000);
    assert.equal(s.idle, false);
    assert.equal(drive(s, 5000, 6000).send, 100);
    s.setRate(10, 6500); // 50 due over 6000..6500 at 100/s, then 10/s
    assert.equal(s.take(6500).send, 50);
    assert.equal(drive(s, 6500, 7500).send, 10);
    assert.throws(() => s.setRate(-1, 8000), /rate must be 0\.\.100000/);
    assert.throws(() => s.setRate(Number.POSITIVE_INFINITY, 8000), /rate must be/);
  });

  it('a spike multiplies the rate for its duration, then the base comes back', () => {
    const s = new RateSchedule(10, 0);
    assert.equal(drive(s, 0, 1000).send, 10);
    s.spike(5, 1, 1000);
    assert.equal(s.rateAt(1500), 50);
    assert.deepEqual(s.spikeAt(1250), { factor: 5, remainingMs: 750 });
    assert.equal(drive(s, 1000, 2000).send, 50);
    assert.equal(s.rateAt(2000), 10);
    assert.equal(s.spikeAt(2000), undefined);
    assert.equal(drive(s, 2000, 3000).send, 10);
    // Takes every 30 ms, one straddling the end at 4000: 1 s at 50/s + 0.05 s at 10/s = 50.5.
    s.spike(5, 1, 3000);
    assert.equal(drive(s, 3000, 4050, 30).send, 50);
  });

  it('a second spike replaces the first; bounds are checked', () => {
    const s = new RateSchedule(20, 0);
    s.spike(10, 60, 0);
    s.spike(2, 1, 500);
    assert.equal(s.rateAt(600), 40);
    assert.equal(s.rateAt(1600), 20, 'the first spike (60 s) is gone');
    assert.throws(() => s.spike(0.5, 1, 0), /spike factor must be 1\.\.100/);
    assert.throws(() => s.spike(101, 1, 0), /spike factor/);
    assert.throws(() => s.spike(2, 0.5, 0), /spike duration must be 1\.\.600 s/);
    assert.throws(() => s.spike(2, 601, 0), /spike duration/);
  });

  it('after a stall, at most maxBurstMs of the schedule is sent; the rest is late', () => {
    const s = new RateSchedule(100, 0, 250);
    const d = s.take(5000);
    assert.equal(d.send, 25);
    assert.equal(d.late, 475);
  });
});

describe('LatencyWindow', () => {
  it('percentiles within 5% over the last N seconds; old seconds fall out; the send rate', () => {
    const w = new LatencyWindow(3, 0);
    for (let i = 1; i <= 100; i++) {
      w.recordLatency(500, i);
      w.recordSend(500);
    }
    const { count, values } = w.percentiles(900, [50, 99, 100]);
    assert.equal(count, 100);
    const [p50, p99, p100] = values as number[];
    assert.ok(p50! >= 50 && p50! <= 50 * 1.05 * 1.05, String(p50));
    assert.ok(p99! >= 99 && p99! <= 99 * 1.05 * 1.05, String(p99));
    assert.ok(p100! >= 100);
    assert.ok(Math.abs(w.sendRate(900) - 100 / 0.9) < 1e-6);
    assert.equal(w.percentiles(2999, [50]).count, 100, 'still in the window at 2.999 s');
    w.recordLatency(3100, 1000); // second 3 reuses slot 0: second 0's samples are cleared
    const later = w.percentiles(3100, [50]);
    assert.equal(later.count, 1);
    assert.ok(later.values[0]! >= 1000 && later.values[0]! < 1100);
    assert.equal(w.percentiles(10_000, [50]).count, 0);
    assert.equal(w.percentiles(10_000, [50]).values[0], undefined);
    assert.throws(() => new LatencyWindow(0, 0), /windowSeconds/);
  });
});

// ------------------------------------------------------------------ the generator on a manual clock

/** A transport whose answers the test releases: `answer` resolves the oldest, `hang` keeps everything open. */
class FakeTransport implements LoadTransport {
  readonly sent: LoadRequest[] = [];
  readonly open: Array<{ resolve: (s: number) => void }> = [];
  closed = false;
  constructor(private readonly autoStatus: number | undefined) {}
  send(req: LoadRequest, signal: AbortSignal): Promise<number> {
    this.sent.push(req);
    if (this.autoStatus !== undefined) return Promise.resolve(this.autoStatus);
    return new Promise((resolve, reject) => {
      const entry = { resolve };
      this.open.push(entry);
      signal.addEventListener('abort', () => {
        this.open.splice(this.open.indexOf(entry), 1);
        reject(signal.reason);
      });
    });
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function genOptions(random: SeededRandom, clock: ManualClock | undefined, over: Partial<LoadGeneratorOptions> = {}): LoadGeneratorOptions {
  return {
    rate: 100,
    skew: 1.1,
    mix: { reads: 70, writes: 5, searches: 10, static: 15 },
    maxInFlight: 64,
    timeoutMs: 5000,
    products: 50,
    users: 7,
    categories: ['books', 'music'],
    regions: [
      { name: 'eu', weight: 1 },
      { name: 'us', weight: 3 },
    ],
    random,
    ...(clock === undefined ? {} : { clock }),
    ...over,
  };
}

async function advance(clock: ManualClock, ms: number, stepMs = 10): Promise<void> {
  for (let t = 0; t < ms; t += stepMs) {
    clock.advance(stepMs);
    await flush();
  }
}

describe('LoadGenerator on a manual clock', () => {
  it('issues rate x time, requests drawn from the mix, writes to the balancer, regions by weight', async (t) => {
    const clock = new ManualClock(1_000_000);
    const tr = new FakeTransport(200);
    const gen = new LoadGenerator(genOptions(seeded(t), clock, { rate: 400 }), tr);
    await advance(clock, 1000);
    const s = gen.stats();
    assert.ok(s.issued >= 399 && s.issued <= 400, String(s.issued));
    assert.equal(s.completed['2xx'], s.issued);
    assert.equal(s.dropped, 0);
    assert.equal(s.rate, 400);
    assert.ok(Math.abs(s.sentRate - 400) < 5, String(s.sentRate));
    assert.equal(tr.sent.length, s.issued);
    for (const r of tr.sent) {
      if (r.kind === 'writes') {
        assert.equal(r.target, 'balancer');
        assert.equal(r.method, 'POST');
        assert.equal(r.path, '/api/orders');
        const body = JSON.parse(r.body!) as { userId: number; productId: number; qty: number };
        assert.ok(body.userId >= 1 && body.userId <= 7 && body.productId >= 1 && body.productId <= 50 && body.qty === 1, r.body);
        assert.equal(r.headers['content-type'], 'application/json');
        assert.match(r.headers['idempotency-key'] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random UUID');
      } else {
        assert.equal(r.target, 'cdn');
        assert.equal(r.method, 'GET');
        assert.match(r.path, r.kind === 'reads' ? /^\/api\/products\/([1-9]|[1-4]\d|50)$/ : r.kind === 'static' ? /^\/static\/products\/\d+\.svg$/ : /^\/api\/products\?category=(books|music)$/);
        assert.match(r.headers['x-client-region'] ?? '', /^(eu|us)$/);
      }
    }
    assert.ok(s.byKind.reads > s.byKind.static && s.byKind.static > s.byKind.writes, JSON.stringify(s.byKind));
    const us = tr.sent.filter((r) => r.headers['x-client-region'] === 'us').length;
    const eu = tr.sent.filter((r) => r.headers['x-client-region'] === 'eu').length;
    assert.ok(us > 2 * eu, `us ${us} eu ${eu}`);
    const keys = tr.sent.filter((r) => r.kind === 'writes').map((r) => r.headers['idempotency-key']);
    assert.ok(keys.length > 0);
    assert.equal(new Set(keys).size, keys.length, 'a fresh key for every order');
    assert.equal(s.created, 0, 'no write was answered 201 (the fake answers 200)');
    await gen.stop();
    assert.equal(tr.closed, true);
    assert.equal(clock.pending(), 0, 'no timer left');
  });

  it('maxInFlight: with nothing answered, due requests are dropped and in-flight stays at the bound; timeouts free the slots', async (t) => {
    const clock = new ManualClock();
    const tr = new FakeTransport(undefined);
    const gen = new LoadGenerator(genOptions(seeded(t), clock, { rate: 100, maxInFlight: 5, timeoutMs: 2000 }), tr);
    await advance(clock, 1000);
    let s = gen.stats();
    assert.equal(s.inFlight, 5);
    assert.equal(s.peakInFlight, 5);
    assert.equal(s.issued, 5);
    assert.ok(s.dropped >= 90, String(s.dropped));
    assert.equal(tr.open.length, 5);
    await advance(clock, 1100); // the first 5 time out at ~2 s, 5 more go out
    s = gen.stats();
    assert.equal(s.timeouts, 5);
    assert.equal(s.inFlight, 5);
    assert.equal(s.peakInFlight, 5);
    assert.equal(s.issued, 10);
    assert.equal(s.errors, 0);
    tr.open[0]!.resolve(503);
    await flush();
    assert.equal(gen.stats().completed['5xx'], 1);
    await gen.stop();
    assert.equal(gen.stats().inFlight, 0, 'stop aborted the rest');
    assert.equal(gen.stats().errors, 0, 'aborts by stop are not errors');
    assert.throws(() => gen.setRate(1), /stopped/);
  });

  it('setRate(0) idles with no timer; spike(5, 1) multiplies for a second; latency percentiles', async (t) => {
    const clock = new ManualClock();
    const tr = new FakeTransport(undefined);
    const gen = new LoadGenerator(genOptions(seeded(t), clock, { rate: 0, maxInFlight: 1000, mix: { reads: 1, writes: 0, searches: 0, static: 0 } }), tr);
    assert.equal(clock.pending(), 0, 'idle: no tick');
    await advance(clock, 500);
    assert.equal(gen.stats().issued, 0);
    gen.setRate(20);
    await advance(clock, 1000);
    const base = gen.stats().issued;
    assert.ok(base >= 19 && base <= 20, String(base));
    gen.spike(5, 1);
    assert.deepEqual(gen.stats().spike, { factor: 5, remainingMs: 1000 });
    assert.equal(gen.stats().rate, 100);
    await advance(clock, 1000);
    const spiked = gen.stats().issued - base;
    assert.ok(spiked >= 99 && spiked <= 101, String(spiked));
    assert.equal(gen.stats().spike, null);
    await advance(clock, 1000);
    const after = gen.stats().issued - base - spiked;
    assert.ok(after >= 19 && after <= 21, String(after));
    // Answer each open request 7 ms after now: p50 and p99 land in the 7 ms bucket.
    clock.advance(7);
    for (const o of tr.open.splice(0)) o.resolve(200);
    await flush();
    const lat = gen.stats().latency;
    assert.ok(lat.count > 0);
    assert.ok(lat.p50Ms! >= 7 && lat.p99Ms! >= lat.p50Ms!, JSON.stringify(lat));
    gen.setRate(0);
    await advance(clock, 20);
    assert.equal(clock.pending(), 0, 'idle again: no tick (nothing in flight)');
    assert.throws(() => gen.spike(200, 1), /spike factor/);
    await gen.stop();
  });

  it('refuses bad options at construction', (t) => {
    const clock = new ManualClock();
    const tr = new FakeTransport(200);
    assert.throws(() => new LoadGenerator(genOptions(seeded(t), clock, { maxInFlight: 0 }), tr), /maxInFlight must be/);
    assert.throws(() => new LoadGenerator(genOptions(seeded(t), clock, { rate: -5 }), tr), /rate must be/);
    assert.throws(() => new LoadGenerator(genOptions(seeded(t), clock, { timeoutMs: 0 }), tr), /timeoutMs/);
    assert.equal(clock.pending(), 0);
  });
});

// ------------------------------------------------------------------ over the network

interface CountingServer {
  url: string;
  byPath: Map<string, number>;
  bodies: string[];
  /** The Idempotency-Key of each request that had one. */
  keys: string[];
  open: number;
  peakOpen: number;
  connections: number;
  close(): Promise<void>;
}

/** A tiny server counting requests by path (query stripped); `hang` never answers. */
async function countingServer(hang: boolean): Promise<CountingServer> {
  const s: CountingServer = { url: '', byPath: new Map(), bodies: [], keys: [], open: 0, peakOpen: 0, connections: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').replace(/\?.*$/, '').replace(/\d+/g, 'N');
    s.byPath.set(path, (s.byPath.get(path) ?? 0) + 1);
    s.open++;
    s.peakOpen = Math.max(s.peakOpen, s.open);
    let body = '';
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string') s.keys.push(key);
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (body !== '') s.bodies.push(body);
      if (hang) return;
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'text/plain' });
      res.end('ok');
      s.open--;
    });
    req.on('close', () => {
      if (hang) s.open--;
    });
  });
  server.on('connection', () => s.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  s.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return s;
}

test('over http: about the asked rate for ~1 s, kinds to the right fronts, keep-alive', async (t) => {
  const cdn = await countingServer(false);
  const lb = await countingServer(false);
  t.after(() => Promise.all([cdn.close(), lb.close()]));
  const gen = startLoadGenerator({ ...genOptions(seeded(t), undefined, { rate: 100 }), cdnUrl: cdn.url, balancerUrl: lb.url });
  t.after(() => gen.stop());
  await new Promise((r) => setTimeout(r, 1000));
  await gen.stop();
  const s = gen.stats();
  assert.ok(s.issued >= 50 && s.issued <= 150, `issued ${s.issued} in ~1 s at 100/s`);
  assert.equal(s.errors, 0);
  assert.equal(s.inFlight, 0);
  const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  assert.ok(total(cdn.byPath) + total(lb.byPath) >= s.issued - 5, 'the servers saw what was issued (bar the few stop aborted)');
  assert.ok((cdn.byPath.get('/api/products/N') ?? 0) > 0, JSON.stringify([...cdn.byPath]));
  assert.deepEqual([...lb.byPath.keys()].filter((p) => p !== '/api/orders'), [], 'the balancer gets the writes only');
  assert.equal(cdn.byPath.get('/api/orders'), undefined);
  for (const b of lb.bodies) assert.match(b, /^\{"userId":\d+,"productId":\d+,"qty":1\}$/);
  assert.equal(lb.keys.length, lb.bodies.length, 'every order carries an Idempotency-Key');
  assert.equal(new Set(lb.keys).size, lb.keys.length, 'all different');
  assert.ok(s.created > 0 && s.created <= s.completed['2xx'], `created ${s.created}: the writes answered 201`);
  assert.ok(s.completed['2xx'] > 0);
  assert.ok(s.latency.count > 0 && s.latency.p99Ms !== null);
  assert.ok(s.peakInFlight <= 64);
  assert.ok(cdn.connections + lb.connections < s.issued / 2, `keep-alive: ${cdn.connections + lb.connections} connections for ${s.issued} requests`);
});

test('over http: a server that never answers -> dropped > 0, in flight never above maxInFlight', async (t) => {
  const srv = await countingServer(true);
  t.after(() => srv.close());
  const gen = startLoadGenerator({
    ...genOptions(seeded(t), undefined, { rate: 200, maxInFlight: 4, timeoutMs: 10_000, mix: { reads: 1, writes: 0, searches: 0, static: 0 } }),
    cdnUrl: srv.url,
    balancerUrl: srv.url,
  });
  t.after(() => gen.stop());
  await new Promise((r) => setTimeout(r, 500));
  const s = gen.stats();
  assert.equal(s.issued, 4);
  assert.equal(s.inFlight, 4);
  assert.equal(s.peakInFlight, 4);
  assert.ok(s.dropped > 0, String(s.dropped));
  assert.ok(srv.peakOpen <= 4, `server saw ${srv.peakOpen} open at once`);
  await gen.stop();
  assert.equal(gen.stats().inFlight, 0);
  assert.equal(gen.stats().errors, 0);
});
