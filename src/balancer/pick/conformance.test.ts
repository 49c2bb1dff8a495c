/**
 * One conformance suite, run against every picker through createPicker. Every picker must never
 * return an unavailable backend, return -1 when none is available, replay exactly from a seed and
 * cope with membership changes; each algorithm states below how its picks follow weights.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { freshSeed, SeededRandom } from '../../core/random.js';
import {
  ALGORITHM_NAMES,
  ConsistentHashPicker,
  createPicker,
  PeakEwmaPicker,
  RoundRobinPicker,
  simulateLoad,
  type AlgorithmName,
  type PickContext,
  type Picker,
  type SimBackend,
} from './index.js';

/** A seed for an invariant that must hold for every seed: fresh each run (or ARCHLAB_SEED), printed on failure. */
function runSeed(): number {
  const fixed = process.env.ARCHLAB_SEED;
  return fixed === undefined ? freshSeed() : Number(fixed);
}

interface WeightPromise {
  /**
   * - ignored: every backend gets the same share whatever its weight;
   * - a number: each backend's share is its weight's share within that relative tolerance;
   * - monotone: a heavier backend gets more, not in proportion;
   * - favours: the heaviest gets at least 1.2 x the lightest's share, nothing more is promised.
   */
  idle: number | 'ignored' | 'monotone';
  loaded: number | 'ignored' | 'favours';
  /** Draws from the Random, so a different seed gives a different sequence. */
  random: boolean;
}

/**
 * Weights 1, 2, 3, 4; "idle" = every request finishes before the next arrives (active is 0 at every
 * pick), "loaded" = about 40 requests in flight. Hash pickers see a distinct client per request.
 */
const PROMISES: Record<AlgorithmName, WeightPromise> = {
  // Weights are ignored by definition: strict rotation, so counts differ by at most one.
  'round-robin': { idle: 'ignored', loaded: 'ignored', random: false },
  // Smooth WRR keeps every count within one of its due share at all times.
  'weighted-round-robin': { idle: 0.001, loaded: 0.001, random: false },
  // Idle, every backend ties at 0 in flight and ties go by smooth WRR: exact. Loaded, in-flight
  // counts settle near proportion to weight, so throughput does too (equal service times).
  'least-connections': { idle: 0.001, loaded: 0.15, random: false },
  // Weighted rendezvous / Maglev over distinct keys: the hashing suite's 5% tolerance.
  'ip-hash': { idle: 0.05, loaded: 0.05, random: false },
  'consistent-hash': { idle: 0.05, loaded: 0.05, random: false },
  // 40k weighted draws: the lightest share (0.1) has a relative standard error of 1.5%.
  random: { idle: 0.06, loaded: 0.06, random: true },
  // Idle, both draws tie at 0 in flight and the first (weighted) draw wins: weighted random.
  // Loaded, it compares active / weight, which settles near proportion to weight.
  p2c: { idle: 0.06, loaded: 0.15, random: true },
  // Weight acts only through the two draws; the cost then prefers the backend whose estimate has
  // decayed longest (picked least, so the lighter) and, loaded, the one with fewer in flight, which
  // evens shares out. Real backends differ in latency, and that, not weight, is what it follows.
  'peak-ewma': { idle: 'monotone', loaded: 'favours', random: true },
};

const WEIGHTS = [1, 2, 3, 4];

function makeBackends(weights: readonly number[], prefix = 'b'): SimBackend[] {
  return weights.map((weight, i) => ({ id: `${prefix}${i}`, weight, active: 0, available: true }));
}

function make(algo: AlgorithmName, seed: number, clock = new ManualClock()): Picker {
  return createPicker(algo, { random: new SeededRandom(seed), clock });
}

/** Asserts a pick's result is right for `backends`: an available index, or -1 exactly when none is. */
function checkPick(got: number, backends: readonly SimBackend[], what: string): void {
  const any = backends.some((b) => b.available);
  if (!any) {
    assert.equal(got, -1, `${what}: none available, got ${got}`);
    return;
  }
  assert.ok(Number.isInteger(got) && got >= 0 && got < backends.length, `${what}: index ${got} out of range 0..${backends.length - 1}`);
  assert.ok(backends[got]!.available, `${what}: picked unavailable ${backends[got]!.id}`);
}

function shares(picks: Map<string, number>, backends: readonly SimBackend[]): number[] {
  const total = backends.reduce((s, b) => s + (picks.get(b.id) ?? 0), 0);
  return backends.map((b) => (picks.get(b.id) ?? 0) / total);
}

const base = () => ({ random: new SeededRandom(1), clock: new ManualClock() });

describe('createPicker', () => {
  test('refuses an unknown algorithm with a typed error naming the choices', () => {
    assert.throws(
      () => createPicker('fastest' as AlgorithmName, base()),
      (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT') && err.message.includes(ALGORITHM_NAMES.join(', ')),
    );
  });

  test('passes boundedLoad to consistent-hash and decayMs to peak-ewma, and checks them', () => {
    const ch = createPicker('consistent-hash', { ...base(), boundedLoad: 1.25 });
    assert.ok(ch instanceof ConsistentHashPicker && ch.boundedLoad === 1.25);
    const pe = createPicker('peak-ewma', { ...base(), decayMs: 2500 });
    assert.ok(pe instanceof PeakEwmaPicker && pe.decayMs === 2500);
    const invalid = (err: unknown): boolean => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT');
    assert.throws(() => createPicker('consistent-hash', { ...base(), boundedLoad: 0.8 }), invalid);
    assert.throws(() => createPicker('peak-ewma', { ...base(), decayMs: 0 }), invalid);
    // Options of other algorithms are ignored.
    assert.equal(createPicker('round-robin', { ...base(), boundedLoad: 0.8, decayMs: -1 }).algorithm, 'round-robin');
  });
});

describe('simulateLoad, the harness the weight checks run on', () => {
  test('counts picks, keeps active as the requests in flight, and observes each completion', () => {
    const backends = makeBackends([1, 1]);
    const observed: number[] = [];
    const inner = new RoundRobinPicker();
    const peak: number[] = [0, 0];
    const picker: Picker = {
      algorithm: 'round-robin',
      pick: (b, ctx) => {
        b.forEach((x, i) => (peak[i] = Math.max(peak[i]!, x.active)));
        return inner.pick(b, ctx);
      },
      observe: (_b, latencyMs) => observed.push(latencyMs),
    };
    // One request per ms lasting 4 ms: 4 in flight, 2 per backend.
    const result = simulateLoad(picker, backends, { requests: 100, random: new SeededRandom(1), latencyMs: () => 4 });
    assert.deepEqual(Object.fromEntries(result.picks), { b0: 50, b1: 50 });
    assert.deepEqual(peak, [2, 2]);
    assert.equal(observed.length, 96, 'the last 4 are still in flight');
    assert.ok(observed.every((l) => l === 4));
  });

  test('reports picks of unavailable backends and -1 answers', () => {
    const backends = makeBackends([1, 1]);
    backends[1]!.available = false;
    let n = 0;
    const bad: Picker = { algorithm: 'random', pick: () => [1, -1, 0, 7][n++ % 4]! };
    const result = simulateLoad(bad, backends, { requests: 8, random: new SeededRandom(1) });
    assert.equal(result.invalid, 4);
    assert.equal(result.unplaced, 2);
    assert.equal(result.picks.get('b0'), 2);
  });
});

for (const algo of ALGORITHM_NAMES) {
  const p = PROMISES[algo];
  describe(`Picker conformance: ${algo}`, () => {
    test('createPicker builds it', () => {
      assert.equal(make(algo, 1).algorithm, algo);
    });

    test('never picks an unavailable backend, and -1 exactly when none is available', () => {
      const seed = runSeed();
      const rnd = new SeededRandom(seed);
      const clock = new ManualClock();
      const picker = make(algo, seed + 1, clock);
      const backends = makeBackends([1, 2, 0.5, 3, 1, 1.25, 4, 2]);
      let placed = 0;
      for (let i = 0; i < 4000; i++) {
        const r = rnd.next();
        if (r < 0.05) {
          for (const b of backends) b.available = false;
        } else if (r < 0.35) {
          const pUp = rnd.next();
          for (const b of backends) b.available = rnd.next() < pUp;
        } else if (r < 0.355) {
          // A slow-start step (hash pickers rebuild on it).
          const b = backends[rnd.int(backends.length)]!;
          b.weight = 0.25 + rnd.int(16) / 4;
        }
        for (const b of backends) if (rnd.next() < 0.2) b.active = rnd.int(12);
        const ctx: PickContext = { clientIp: `10.0.${rnd.int(4)}.${rnd.int(256)}` };
        if (rnd.next() < 0.5) ctx.hashKey = `user-${rnd.int(500)}`;
        const got = picker.pick(backends, ctx);
        checkPick(got, backends, `seed ${seed}, pick ${i}`);
        if (got >= 0) {
          placed++;
          if (rnd.next() < 0.3) picker.observe?.(backends[got]!, 1 + rnd.int(200), rnd.next() < 0.9);
        }
        clock.advance(rnd.int(20));
      }
      assert.ok(placed > 2000, `seed ${seed}: only ${placed} picks placed`);
    });

    test('returns -1 for an empty pool and for a pool with nothing available, then recovers', () => {
      const picker = make(algo, 7);
      const ctx = { clientIp: '192.0.2.1', hashKey: 'k' };
      assert.equal(picker.pick([], ctx), -1);
      const backends = makeBackends([1, 2, 3]);
      for (const b of backends) b.available = false;
      for (let i = 0; i < 5; i++) assert.equal(picker.pick(backends, ctx), -1);
      backends[1]!.available = true;
      for (let i = 0; i < 5; i++) assert.equal(picker.pick(backends, ctx), 1);
      assert.equal(picker.pick([], ctx), -1);
      assert.equal(picker.pick([{ id: 'solo', weight: 0.3, active: 99, available: true }], ctx), 0);
    });

    for (const mode of ['idle', 'loaded'] as const) {
      const promise = p[mode];
      test(`weights 1:2:3:4 ${mode}: ${typeof promise === 'number' ? `shares within ${promise * 100}%` : promise}`, () => {
        const seed = 20240601;
        const clock = new ManualClock();
        const picker = make(algo, seed, clock);
        const backends = makeBackends(WEIGHTS);
        const requests = 40_000;
        const result = simulateLoad(picker, backends, {
          requests,
          random: new SeededRandom(seed + 1),
          advance: (ms) => clock.advance(ms),
          // idle: one request per ms, each done in 1 ms. loaded: 4 per ms, 10 ms each on average.
          perMs: mode === 'idle' ? 1 : 4,
          latencyMs: mode === 'idle' ? () => 1 : (_b, r) => 1 + r.int(19),
        });
        assert.equal(result.invalid, 0);
        assert.equal(result.unplaced, 0);
        const got = shares(result.picks, backends);
        const what = `seed ${seed}: shares ${got.map((s) => s.toFixed(3)).join(' ')}`;
        if (promise === 'ignored') {
          for (const s of got) assert.ok(Math.abs(s - 0.25) <= 0.001, what);
        } else if (promise === 'monotone') {
          for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, what);
        } else if (promise === 'favours') {
          assert.ok(got[3]! >= 1.2 * got[0]!, what);
        } else {
          for (let i = 0; i < WEIGHTS.length; i++) {
            const due = WEIGHTS[i]! / 10;
            assert.ok(Math.abs(got[i]! - due) / due <= promise, `${what}; backend ${i} due ${due}`);
          }
        }
      });
    }

    test('two pickers with the same seed and inputs pick alike', () => {
      const seed = runSeed();
      const clocks = [new ManualClock(), new ManualClock()];
      const pickers = clocks.map((c) => make(algo, seed, c));
      const pools = [makeBackends([1, 3, 2, 0.5, 1]), makeBackends([1, 3, 2, 0.5, 1])];
      const script = new SeededRandom(seed ^ 0x5eed);
      const runs: number[][] = [[], []];
      for (let i = 0; i < 2000; i++) {
        const avail = pools[0]!.map(() => script.next() < 0.8);
        const active = pools[0]!.map(() => script.int(6));
        const ctx = { clientIp: `198.51.100.${script.int(256)}` };
        const advance = script.int(50);
        const latency = 1 + script.int(300);
        const ok = script.next() < 0.95;
        for (let k = 0; k < 2; k++) {
          const pool = pools[k]!;
          pool.forEach((b, j) => {
            b.available = avail[j]!;
            b.active = active[j]!;
          });
          const got = pickers[k]!.pick(pool, ctx);
          runs[k]!.push(got);
          if (got >= 0) pickers[k]!.observe?.(pool[got]!, latency, ok);
          clocks[k]!.advance(advance);
        }
      }
      assert.deepEqual(runs[1], runs[0], `seed ${seed}`);
      assert.ok(new Set(runs[0]).size >= 4, `seed ${seed}: a real sequence, not one answer`);
      if (p.random) {
        // The seed matters: another one gives another sequence.
        const sequence = (s: number): number[] => {
          const picker = make(algo, s);
          const pool = makeBackends([1, 3, 2, 0.5, 1]);
          return Array.from({ length: 200 }, () => picker.pick(pool, { clientIp: '198.51.100.1' }));
        };
        assert.notDeepEqual(sequence(seed + 1), sequence(seed), `seed ${seed}`);
      }
    });

    test('copes with backends added and removed between picks', () => {
      const seed = runSeed();
      const rnd = new SeededRandom(seed);
      const picker = make(algo, seed);
      let backends = makeBackends([1, 2, 1, 3, 1, 2, 1, 1]);
      let nextId = 100;
      for (let i = 0; i < 3000; i++) {
        const r = rnd.next();
        if (r < 0.015 && backends.length > 0) {
          // Reload without one backend (often the one picked last).
          const gone = rnd.int(backends.length);
          backends = backends.filter((_, j) => j !== gone);
        } else if (r < 0.03) {
          const at = rnd.int(backends.length + 1);
          const added: SimBackend = { id: `n${nextId++}`, weight: 1 + rnd.int(3), active: 0, available: rnd.next() < 0.8 };
          backends = [...backends.slice(0, at), added, ...backends.slice(at)];
        } else if (r < 0.033) {
          backends = backends.slice(0, rnd.int(3)); // shrink far below every cached index
        } else if (r < 0.15) {
          for (const b of backends) b.available = rnd.next() < 0.7;
        }
        const got = picker.pick(backends, { clientIp: `203.0.113.${rnd.int(256)}`, hashKey: `k${rnd.int(100)}` });
        checkPick(got, backends, `seed ${seed}, pick ${i}, ${backends.length} backends`);
        if (got >= 0) picker.observe?.(backends[got]!, 1 + rnd.int(50), true);
      }
    });
  });
}
