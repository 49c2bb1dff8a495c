import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshSeed, SeededRandom } from '../../core/random.js';
import type { SimBackend } from './sim.js';
import type { BackendView } from './types.js';
import { WeightedRoundRobinPicker } from './weighted-round-robin.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(ids: string, weights: number[]): SimBackend[] {
  return [...ids].map((id, i) => ({ id, weight: weights[i]!, active: 0, available: true }));
}

function run(picker: WeightedRoundRobinPicker, backends: SimBackend[], n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += backends[picker.pick(backends, ctx)]!.id;
  return out;
}

/** nginx's algorithm written plainly: state in a Map by id, recomputed from scratch. */
class ReferenceSwrr {
  private readonly current = new Map<string, number>();

  pick(backends: readonly BackendView[]): number {
    let best = -1;
    let total = 0;
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!;
      if (!b.available) continue;
      this.current.set(b.id, (this.current.get(b.id) ?? 0) + b.weight);
      total += b.weight;
      if (best < 0 || this.current.get(b.id)! > this.current.get(backends[best]!.id)!) best = i;
    }
    if (best >= 0) this.current.set(backends[best]!.id, this.current.get(backends[best]!.id)! - total);
    // Forget ids that left, as the picker does.
    for (const id of [...this.current.keys()]) if (!backends.some((b) => b.id === id)) this.current.delete(id);
    return best;
  }
}

test('weights 5, 1, 1 interleave as nginx does: a a b a c a a', () => {
  assert.equal(run(new WeightedRoundRobinPicker(), pool('abc', [5, 1, 1]), 14), 'aabacaaaabacaa');
});

test('fractional weights: 2.5, 0.5, 0.5 pick as 5, 1, 1', () => {
  assert.equal(run(new WeightedRoundRobinPicker(), pool('abc', [2.5, 0.5, 0.5]), 14), 'aabacaaaabacaa');
});

test('every count stays within one of its due share after every pick (fixed seed 11)', () => {
  const rnd = new SeededRandom(11);
  for (let trial = 0; trial < 100; trial++) {
    const n = 2 + rnd.int(8);
    const backends = Array.from({ length: n }, (_, i) => ({ id: `b${i}`, weight: 1 + rnd.int(20), active: 0, available: true }));
    const total = backends.reduce((s, b) => s + b.weight, 0);
    const picker = new WeightedRoundRobinPicker();
    const counts = new Array<number>(n).fill(0);
    for (let k = 1; k <= 300; k++) {
      counts[picker.pick(backends, ctx)]!++;
      for (let i = 0; i < n; i++) {
        const off = Math.abs(counts[i]! - (k * backends[i]!.weight) / total);
        assert.ok(off <= 1 + 1e-9, `trial ${trial}, pick ${k}: backend ${i} is ${off} from its share`);
      }
    }
  }
});

test('agrees with a plain reference through availability, weight and membership changes', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const fast = new WeightedRoundRobinPicker();
  const ref = new ReferenceSwrr();
  let backends: SimBackend[] = Array.from({ length: 6 }, (_, i) => ({ id: `b${i}`, weight: 1 + rnd.int(5), active: 0, available: true }));
  let next = 6;
  for (let i = 0; i < 5000; i++) {
    const r = rnd.next();
    if (r < 0.03 && backends.length > 1) {
      const gone = rnd.int(backends.length);
      backends = backends.filter((_, j) => j !== gone);
    } else if (r < 0.06) {
      backends = [...backends, { id: `b${next++}`, weight: 0.5 + rnd.int(8) / 2, active: 0, available: true }];
    } else if (r < 0.15) {
      backends[rnd.int(backends.length)]!.available = rnd.next() < 0.7;
    } else if (r < 0.2) {
      backends[rnd.int(backends.length)]!.weight = 0.5 + rnd.int(8) / 2;
    }
    assert.equal(fast.pick(backends, ctx), ref.pick(backends), `seed ${seed}, pick ${i}`);
  }
});

test('an unavailable backend does not bank turns: back, it rejoins the rotation without a burst', () => {
  const picker = new WeightedRoundRobinPicker();
  const backends = pool('ab', [1, 1]);
  backends[1]!.available = false;
  assert.equal(run(picker, backends, 10), 'aaaaaaaaaa');
  backends[1]!.available = true;
  assert.equal(run(picker, backends, 6), 'ababab');
});

test('a backend added by a reload gets its share from the start, not a burst', () => {
  const picker = new WeightedRoundRobinPicker();
  const backends = pool('ab', [1, 1]);
  run(picker, backends, 101);
  const grown = [...backends, { id: 'c', weight: 1, active: 0, available: true }];
  const seq = run(picker, grown, 30);
  for (const id of 'abc') assert.equal([...seq].filter((x) => x === id).length, 10, seq);
  for (let i = 0; i + 3 <= seq.length; i += 3) assert.equal(new Set(seq.slice(i, i + 3)).size, 3, seq);
});
