import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import { P2cPicker } from './p2c.js';
import { DEFAULT_FAILURE_PENALTY_MS, PeakEwmaPicker } from './peak-ewma.js';
import { simulateLoad, type SimBackend } from './sim.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(n: number): SimBackend[] {
  return Array.from({ length: n }, (_, i) => ({ id: `b${i}`, weight: 1, active: 0, available: true }));
}

function close(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) < 1e-9 * Math.max(1, expected), `${what}: ${actual} != ${expected}`);
}

test('backends at 5, 50 and 500 ms: the fast one gets the large majority, the slow one almost nothing', () => {
  const seed = 515;
  const latency = [5, 50, 500];
  const run = (picker: PeakEwmaPicker | P2cPicker, clock: ManualClock): number[] => {
    const backends = pool(3);
    const result = simulateLoad(picker, backends, {
      requests: 20_000, // one per 5 ms: 100 s
      perMs: 0.2,
      random: new SeededRandom(seed + 1),
      latencyMs: (b, r) => latency[Number(b.id.slice(1))]! * (0.9 + 0.2 * r.next()),
      advance: (ms) => clock.advance(ms),
    });
    return backends.map((b) => (result.picks.get(b.id) ?? 0) / 20_000);
  };
  const clock = new ManualClock();
  const shares = run(new PeakEwmaPicker({ random: new SeededRandom(seed), clock }), clock);
  const what = `seed ${seed}: shares ${shares.map((s) => s.toFixed(3)).join(' ')}`;
  // P2C's ceiling: the fast backend is in two of the three pairs and wins both.
  assert.ok(shares[0]! > 0.62, what);
  assert.ok(shares[2]! < 0.005, what);
  // Load-only P2C, for contrast, sees latency only as requests piling up: the slow one gets far more.
  const baseline = run(new P2cPicker({ random: new SeededRandom(seed) }), new ManualClock());
  assert.ok(baseline[2]! > 5 * shares[2]!, `${what}; p2c ${baseline.map((s) => s.toFixed(3)).join(' ')}`);
});

test('the estimate jumps to a higher sample at once and blends in a lower one with w = exp(-elapsed / decay)', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(1), clock, decayMs: 10_000 });
  const [b] = pool(1);
  assert.equal(picker.estimate('b0'), undefined);
  picker.observe(b!, 10, true);
  picker.observe(b!, 100, true);
  close(picker.estimate('b0'), 100, 'peak');
  picker.observe(b!, 10, true); // no time passed: w = 1, the sample has no weight
  close(picker.estimate('b0'), 100, 'same instant');
  clock.advance(10_000);
  // The estimate decayed to 100/e; 10 is below it and is blended in with weight 1 - 1/e.
  picker.observe(b!, 10, true);
  const blended = 100 * Math.exp(-1) * Math.exp(-1) + 10 * (1 - Math.exp(-1));
  close(picker.estimate('b0'), blended, 'blend');
  assert.ok(blended < 100 * Math.exp(-1), 'a lower sample never raises the estimate');
  clock.advance(10_000);
  // Decayed to blended/e = 7.3; a sample of 20 is a new peak.
  picker.observe(b!, 20, true);
  close(picker.estimate('b0'), 20, 'peak above the decayed estimate');
});

test('constant samples hold the estimate at the sample', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(1), clock });
  const [b] = pool(1);
  for (let i = 0; i < 1000; i++) {
    picker.observe(b!, 40, true);
    clock.advance(50);
  }
  const e = picker.estimate('b0')!;
  assert.ok(e > 39.5 && e <= 40, String(e));
});

test('with no samples the estimate decays toward 0 with the time constant', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(1), clock, decayMs: 5_000 });
  picker.observe(pool(1)[0]!, 500, true);
  clock.advance(5_000);
  close(picker.estimate('b0'), 500 * Math.exp(-1), 'after one time constant');
  clock.advance(10_000);
  close(picker.estimate('b0'), 500 * Math.exp(-3), 'after three');
});

test('a slow backend is left alone until its estimate decays below the fast one, then retried', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(3), clock });
  const backends = pool(2);
  const latency = [5, 500];
  picker.observe(backends[0]!, 5, true);
  picker.observe(backends[1]!, 500, true);
  const retries: number[] = [];
  for (let t = 0; t < 60_000; t += 10) {
    const got = picker.pick(backends, ctx);
    if (got === 1) retries.push(clock.now());
    picker.observe(backends[got]!, latency[got]!, true);
    clock.advance(10);
  }
  // 500 exp(-t / 10 s) < 5 once t > 10 s x ln 100 = 46.05 s; the retry's 500 ms sample sends it back.
  assert.equal(retries.length, 1, `retried at ${retries.join(', ')}`);
  assert.ok(retries[0]! > 46_000 && retries[0]! <= 46_100, `retried at ${retries[0]}`);
});

test('cost counts requests in flight: estimate x (active + 1)', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(5), clock });
  const backends = pool(2);
  picker.observe(backends[0]!, 10, true);
  picker.observe(backends[1]!, 30, true);
  assert.equal(picker.pick(backends, ctx), 0);
  backends[0]!.active = 3; // 10 x 4 = 40 > 30 x 1
  for (let i = 0; i < 50; i++) assert.equal(picker.pick(backends, ctx), 1);
});

test('a backend never observed is tried at the mean of the others\u2019 estimates', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(6), clock });
  const backends = pool(3);
  picker.observe(backends[0]!, 10, true);
  picker.observe(backends[1]!, 30, true);
  // b2 counts as 20: it beats b1 and loses to b0, so it wins one pair of three.
  const counts = [0, 0, 0];
  const n = 30_000;
  for (let i = 0; i < n; i++) counts[picker.pick(backends, ctx)]!++;
  assert.equal(counts[1], 0, counts.join(' '));
  assert.ok(Math.abs(counts[2]! / n - 1 / 3) < 0.015, counts.join(' '));
});

test('a failure counts as at least the failure penalty', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(7), clock });
  const [a, b] = pool(2);
  picker.observe(a!, 2, false);
  close(picker.estimate('b0'), DEFAULT_FAILURE_PENALTY_MS, 'fast failure');
  picker.observe(b!, 3000, false);
  close(picker.estimate('b1'), 3000, 'a failure slower than the penalty counts as itself');
  const custom = new PeakEwmaPicker({ random: new SeededRandom(7), clock, failurePenaltyMs: 250 });
  custom.observe(a!, 2, false);
  close(custom.estimate('b0'), 250, 'custom penalty');
  custom.observe(b!, 20, true);
  for (let i = 0; i < 20; i++) assert.equal(custom.pick([a!, b!], ctx), 1);
});

test('ignores a non-finite latency of a success and counts a negative one as 0', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(8), clock });
  const [a] = pool(1);
  picker.observe(a!, Number.NaN, true);
  assert.equal(picker.estimate('b0'), undefined);
  picker.observe(a!, -5, true);
  assert.equal(picker.estimate('b0'), 0);
});

test('forgets the estimates of backends that left the pool', () => {
  const clock = new ManualClock();
  const picker = new PeakEwmaPicker({ random: new SeededRandom(9), clock });
  const many = pool(40);
  for (const b of many) picker.observe(b, 10, true);
  picker.pick(many.slice(0, 2), ctx);
  assert.equal(picker.estimate('b30'), undefined);
  close(picker.estimate('b1'), 10, 'a member keeps its estimate');
});

test('refuses a decay or penalty that is not a positive number', () => {
  const clock = new ManualClock();
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    const isInvalid = (err: unknown): boolean => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT');
    assert.throws(() => new PeakEwmaPicker({ random: new SeededRandom(1), clock, decayMs: bad }), isInvalid);
    assert.throws(() => new PeakEwmaPicker({ random: new SeededRandom(1), clock, failurePenaltyMs: bad }), isInvalid);
  }
});

test('before any sample, an idle pool is a weighted random pick: cost ties go to the first (weighted) draw', () => {
  const seed = 616;
  const picker = new PeakEwmaPicker({ random: new SeededRandom(seed), clock: new ManualClock() });
  const backends = pool(4);
  backends.forEach((b, i) => (b.weight = i + 1));
  const counts = [0, 0, 0, 0];
  const n = 40_000;
  for (let i = 0; i < n; i++) counts[picker.pick(backends, ctx)]!++;
  counts.forEach((c, i) => {
    const due = (n * (i + 1)) / 10;
    assert.ok(Math.abs(c - due) / due < 0.05, `seed ${seed}: ${counts.join(' ')}`);
  });
});
