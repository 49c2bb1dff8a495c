import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom, freshSeed } from '../../../core/random.js';
import { isQueueError } from '../../errors.js';
import type { TopicPartition } from '../../types.js';
import { assignRange, assignRoundRobin, assignSticky, type Assignment, type AssignorFn, type AssignorMember } from './assignors.js';

const tp = (topic: string, partition: number): TopicPartition => ({ topic, partition });
const names = (list: TopicPartition[] | undefined): string[] => (list ?? []).map((p) => `${p.topic}-${p.partition}`);

function asObject(a: Assignment): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [id, list] of a) out[id] = names(list);
  return out;
}

/** Every partition of every subscribed topic owned exactly once, by a member subscribed to its topic; lists sorted. */
function checkValid(a: Assignment, members: readonly AssignorMember[], counts: Record<string, number>, label: string): void {
  assert.deepEqual([...a.keys()].sort(), members.map((m) => m.memberId).sort(), `${label}: one entry per member`);
  const subs = new Map(members.map((m) => [m.memberId, new Set(m.topics)]));
  const owners = new Map<string, string>();
  for (const [id, list] of a) {
    const sorted = [...list].sort((x, y) => (x.topic < y.topic ? -1 : x.topic > y.topic ? 1 : x.partition - y.partition));
    assert.deepEqual(list, sorted, `${label}: ${id}'s list is sorted`);
    for (const p of list) {
      const key = `${p.topic}-${p.partition}`;
      assert.ok(subs.get(id)!.has(p.topic), `${label}: ${id} got ${key} without subscribing to ${p.topic}`);
      assert.ok(p.partition >= 0 && p.partition < (counts[p.topic] ?? 0), `${label}: ${key} does not exist`);
      assert.equal(owners.get(key), undefined, `${label}: ${key} owned by ${owners.get(key)} and ${id}`);
      owners.set(key, id);
    }
  }
  const wanted = new Set(members.flatMap((m) => m.topics));
  for (const t of wanted) for (let p = 0; p < (counts[t] ?? 0); p++) assert.ok(owners.has(`${t}-${p}`), `${label}: ${t}-${p} has no owner`);
}

/** No partition could move to an eligible member holding 2 or more fewer. */
function checkLocallyBalanced(a: Assignment, members: readonly AssignorMember[], label: string): void {
  const size = (id: string): number => a.get(id)!.length;
  for (const [id, list] of a) {
    for (const p of list) {
      for (const other of members) {
        if (other.memberId !== id && other.topics.includes(p.topic)) {
          assert.ok(size(other.memberId) >= size(id) - 1, `${label}: ${p.topic}-${p.partition} could move from ${id} (${size(id)}) to ${other.memberId} (${size(other.memberId)})`);
        }
      }
    }
  }
}

/** Partitions whose owner changed (or that had none) between two assignments. */
function moves(before: Assignment, after: Assignment): number {
  const prev = new Map<string, string>();
  for (const [id, list] of before) for (const p of list) prev.set(`${p.topic}-${p.partition}`, id);
  let n = 0;
  for (const [id, list] of after) for (const p of list) if (prev.get(`${p.topic}-${p.partition}`) !== id) n++;
  return n;
}

/**
 * The fewest moves any balanced assignment needs, for members that all subscribe to the same topics:
 * partitions without a valid previous owner must move; member i, keeping k_i valid partitions and
 * ending with c_i, gives up max(0, k_i - c_i); the best targets give the larger share (q+1) to the
 * members keeping most.
 */
function minimalMoves(before: Assignment, members: readonly AssignorMember[], counts: Record<string, number>): number {
  const topics = new Set(members[0]!.topics);
  let total = 0;
  for (const t of topics) total += counts[t] ?? 0;
  const ids = new Set(members.map((m) => m.memberId));
  const kept: number[] = [];
  let keptTotal = 0;
  for (const m of members) {
    const k = (before.get(m.memberId) ?? []).filter((p) => ids.has(m.memberId) && topics.has(p.topic) && p.partition < (counts[p.topic] ?? 0)).length;
    kept.push(k);
    keptTotal += k;
  }
  kept.sort((x, y) => y - x);
  const q = Math.floor(total / members.length);
  const r = total % members.length;
  let lost = 0;
  kept.forEach((k, i) => {
    lost += Math.max(0, k - (i < r ? q + 1 : q));
  });
  return total - keptTotal + lost;
}

function withOwned(members: readonly AssignorMember[], prev: Assignment): AssignorMember[] {
  return members.map((m) => ({ ...m, owned: prev.get(m.memberId) ?? [] }));
}

test('range: contiguous runs per topic, the first members (by id) take the extra partition', () => {
  const members = [
    { memberId: 'c1', topics: ['t0', 't1'] },
    { memberId: 'c0', topics: ['t0', 't1'] },
  ];
  assert.deepEqual(asObject(assignRange(members, { t0: 3, t1: 3 })), {
    c0: ['t0-0', 't0-1', 't1-0', 't1-1'],
    c1: ['t0-2', 't1-2'],
  });
  // Members on one topic only share that topic alone.
  const mixed = assignRange(
    [
      { memberId: 'a', topics: ['x'] },
      { memberId: 'b', topics: ['x', 'y'] },
      { memberId: 'c', topics: ['y'] },
    ],
    new Map([
      ['x', 5],
      ['y', 2],
    ]),
  );
  assert.deepEqual(asObject(mixed), { a: ['x-0', 'x-1', 'x-2'], b: ['x-3', 'x-4', 'y-0'], c: ['y-1'] });
});

test('round robin: partitions dealt in order, skipping members not subscribed (Kafka docs example)', () => {
  assert.deepEqual(
    asObject(
      assignRoundRobin(
        [
          { memberId: 'c0', topics: ['t0', 't1'] },
          { memberId: 'c1', topics: ['t0', 't1'] },
        ],
        { t0: 3, t1: 3 },
      ),
    ),
    { c0: ['t0-0', 't0-2', 't1-1'], c1: ['t0-1', 't1-0', 't1-2'] },
  );
  assert.deepEqual(
    asObject(
      assignRoundRobin(
        [
          { memberId: 'c0', topics: ['t0'] },
          { memberId: 'c1', topics: ['t0', 't1'] },
          { memberId: 'c2', topics: ['t0', 't1', 't2'] },
        ],
        { t0: 1, t1: 2, t2: 3 },
      ),
    ),
    { c0: ['t0-0'], c1: ['t1-0'], c2: ['t1-1', 't2-0', 't2-1', 't2-2'] },
  );
});

test('sticky: a member leaving moves only its partitions; a member joining takes only its share', () => {
  const counts = { t0: 2, t1: 2, t2: 2, t3: 2 };
  const topics = ['t0', 't1', 't2', 't3'];
  const three = ['c0', 'c1', 'c2'].map((memberId) => ({ memberId, topics }));
  const first = assignSticky(three, counts);
  checkValid(first, three, counts, 'first');
  assert.deepEqual(
    [...first.values()].map((l) => l.length),
    [3, 3, 2],
  );

  const two = withOwned(three.filter((m) => m.memberId !== 'c1'), first);
  const afterLeave = assignSticky(two, counts);
  checkValid(afterLeave, two, counts, 'after leave');
  for (const id of ['c0', 'c2']) {
    for (const p of first.get(id)!) assert.ok(names(afterLeave.get(id)).includes(`${p.topic}-${p.partition}`), `${id} keeps ${p.topic}-${p.partition}`);
  }
  assert.deepEqual(
    [...afterLeave.values()].map((l) => l.length),
    [4, 4],
  );

  const joined = withOwned([...two, { memberId: 'c9', topics }], afterLeave);
  const afterJoin = assignSticky(joined, counts);
  checkValid(afterJoin, joined, counts, 'after join');
  // Only partitions now owned by the newcomer changed hands, and it got a fair share.
  assert.equal(moves(afterLeave, afterJoin), afterJoin.get('c9')!.length);
  assert.ok([2, 3].includes(afterJoin.get('c9')!.length));
});

test('sticky: owned partitions that no longer exist, are claimed twice, or are of unsubscribed topics are dropped', () => {
  const a = assignSticky(
    [
      { memberId: 'a', topics: ['x'], owned: [tp('x', 0), tp('x', 1), tp('gone', 0), tp('x', 9), tp('y', 0)] },
      { memberId: 'b', topics: ['x', 'y'], owned: [tp('x', 1), tp('y', 0)] },
    ],
    { x: 2, y: 1 },
  );
  // a keeps x-0 and x-1 (first claim by id order); b keeps y-0; nothing else moves.
  assert.deepEqual(asObject(a), { a: ['x-0', 'x-1'], b: ['y-0'] });
});

test('sticky with different subscriptions: the partition only one member can take goes to it', () => {
  const members = [
    { memberId: 'a', topics: ['x', 'y'] },
    { memberId: 'b', topics: ['x'] },
  ];
  const counts = { x: 3, y: 3 };
  const out = assignSticky(members, counts);
  checkValid(out, members, counts, 'subs');
  checkLocallyBalanced(out, members, 'subs');
  assert.deepEqual(asObject(out), { a: ['y-0', 'y-1', 'y-2'], b: ['x-0', 'x-1', 'x-2'] });
});

test('duplicate member ids and bad partition counts are refused with BAD_ARGUMENT', () => {
  for (const fn of [assignRange, assignRoundRobin, assignSticky]) {
    assert.throws(
      () =>
        fn(
          [
            { memberId: 'a', topics: ['x'] },
            { memberId: 'a', topics: ['x'] },
          ],
          { x: 1 },
        ),
      (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'),
    );
    assert.throws(() => fn([{ memberId: 'a', topics: ['x'] }], { x: -1 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
    assert.equal(fn([], { x: 3 }).size, 0);
  }
});

test('property: random members and topics, every assignor valid, deterministic, balanced where it promises', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const label = (i: number, what: string): string => `seed ${seed} case ${i} ${what}`;
  const assignors: [string, AssignorFn][] = [
    ['range', assignRange],
    ['round-robin', assignRoundRobin],
    ['sticky', assignSticky],
  ];
  for (let i = 0; i < 150; i++) {
    const topicCount = 1 + rnd.int(4);
    const topics = Array.from({ length: topicCount }, (_, t) => `t${t}`);
    const counts: Record<string, number> = {};
    for (const t of topics) counts[t] = rnd.int(13);
    const homogeneous = rnd.int(2) === 0;
    const members: AssignorMember[] = Array.from({ length: 1 + rnd.int(7) }, (_, m) => {
      const subs = homogeneous ? topics : topics.filter(() => rnd.int(2) === 0);
      return { memberId: `m${rnd.int(1000)}-${m}`, topics: subs.length ? subs : [topics[rnd.int(topicCount)]!] };
    });
    const shuffled = [...members].sort(() => rnd.next() - 0.5);
    for (const [name, fn] of assignors) {
      const out = fn(members, counts);
      checkValid(out, members, counts, label(i, name));
      assert.deepEqual(fn(shuffled, counts), out, label(i, `${name} ignores input order`));
      const sizes = [...out.values()].map((l) => l.length);
      if (homogeneous && name !== 'range') assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, label(i, `${name} balanced: ${sizes}`));
      if (homogeneous && name === 'range') {
        // Range balances each topic on its own.
        for (const t of topics) {
          const per = [...out.values()].map((l) => l.filter((p) => p.topic === t).length);
          assert.ok(Math.max(...per) - Math.min(...per) <= 1, label(i, `range balanced on ${t}: ${per}`));
        }
      }
      if (name === 'sticky') checkLocallyBalanced(out, members, label(i, name));
    }
  }
});

test('property: sticky over a random history of joins, leaves and topic growth moves no more than a balanced result needs', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  for (let run = 0; run < 20; run++) {
    const homogeneous = run % 2 === 0;
    const topics = ['a', 'b', 'c'];
    const counts: Record<string, number> = { a: 1 + rnd.int(10), b: 1 + rnd.int(10), c: rnd.int(10) };
    let next = 0;
    const newMember = (): AssignorMember => {
      const subs = homogeneous ? topics : topics.filter(() => rnd.int(2) === 0);
      return { memberId: `m${String(next++).padStart(3, '0')}`, topics: subs.length ? subs : ['a'] };
    };
    const members: AssignorMember[] = [newMember(), newMember()];
    let prev: Assignment = new Map();
    for (let step = 0; step < 25; step++) {
      const what = rnd.int(4);
      if (what === 0 || members.length === 1) members.push(newMember());
      else if (what === 1) members.splice(rnd.int(members.length), 1);
      else if (what === 2) counts[topics[rnd.int(3)]!]! += rnd.int(4);
      const input = withOwned(members, prev);
      const out = assignSticky(input, counts);
      const label = `seed ${seed} run ${run} step ${step}`;
      checkValid(out, members, counts, label);
      checkLocallyBalanced(out, members, label);
      if (homogeneous) {
        const sizes = [...out.values()].map((l) => l.length);
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${label}: balanced ${sizes}`);
        assert.equal(moves(prev, out), minimalMoves(prev, members, counts), `${label}: moves`);
      }
      prev = out;
    }
  }
});
