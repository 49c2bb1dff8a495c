import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setImmediate as flushIo, setTimeout as sleep } from 'node:timers/promises';
import { ManualClock } from '../../../core/clock.js';
import { SeededRandom, freshSeed } from '../../../core/random.js';
import { QueueError, isQueueError } from '../../errors.js';
import type { JoinGroupResult, TopicPartition } from '../../types.js';
import { GroupCoordinator, type GroupCoordinatorOptions } from './index.js';

interface Env {
  clock: ManualClock;
  dir: string;
  partitions: Record<string, number>;
  hw: Map<string, number>;
  coordinator: GroupCoordinator;
  reopen(extra?: Partial<GroupCoordinatorOptions>): Promise<GroupCoordinator>;
  /** Moves the clock; due timers fire; then lets promise callbacks and I/O run. */
  advance(ms: number): Promise<void>;
}

/** A coordinator over a fake log (topics with partition counts and high watermarks), closed when the test ends. */
async function setup(t: TestContext, extra: Partial<GroupCoordinatorOptions> = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-groups-'));
  const clock = new ManualClock(1_700_000_000_000);
  const partitions: Record<string, number> = { orders: 4, audit: 2 };
  const hw = new Map<string, number>();
  const open = (more: Partial<GroupCoordinatorOptions>): Promise<GroupCoordinator> =>
    GroupCoordinator.open({
      dataDir: join(dir, 'groups'),
      clock,
      random: new SeededRandom(7),
      fsync: false,
      partitionsOf: (topic) => {
        const n = partitions[topic];
        if (n === undefined) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `no topic ${topic}`, { details: { topic } });
        return n;
      },
      highWatermark: (topic, partition) => {
        if (partitions[topic] === undefined) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `no topic ${topic}`);
        return hw.get(`${topic}-${partition}`) ?? 0;
      },
      ...extra,
      ...more,
    });
  const env: Env = {
    clock,
    dir,
    partitions,
    hw,
    coordinator: await open({}),
    reopen: async (more = {}) => {
      await env.coordinator.close();
      env.coordinator = await open(more);
      return env.coordinator;
    },
    advance: async (ms) => {
      clock.advance(ms);
      await flushIo();
    },
  };
  t.after(async () => {
    await env.coordinator.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return env;
}

const names = (list: TopicPartition[]): string[] => list.map((p) => `${p.topic}-${p.partition}`).sort();

function rejectsWith(code: string) {
  return (err: unknown): boolean => {
    assert.ok(isQueueError(err), `expected a QueueError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** Waits for real I/O until `cond` holds, at most `timeoutMs` of real time (then the caller's assertion fails). */
async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond() && performance.now() < deadline) await sleep(2);
}

/** Whether a promise has settled, without waiting for it. */
async function settled<T>(p: Promise<T>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await flushIo();
  return done;
}

test('join of 1, 2 and 3 members: each rebalance hands every partition to exactly one member', async (t) => {
  const { coordinator: c } = await setup(t);
  const a = await c.joinGroup({ group: 'g', topics: ['orders'], clientId: 'a' });
  assert.equal(a.generation, 1);
  assert.deepEqual(names(a.assignment), ['orders-0', 'orders-1', 'orders-2', 'orders-3']);

  const bJoin = c.joinGroup({ group: 'g', topics: ['orders'], clientId: 'b' });
  assert.equal(await settled(bJoin), false, 'B waits for A to rejoin');
  assert.deepEqual(await c.heartbeat('g', a.memberId, 1), { rebalance: true });
  const [a2, b] = await Promise.all([c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] }), bJoin]);
  assert.equal(a2.memberId, a.memberId);
  assert.deepEqual([a2.generation, b.generation], [2, 2]);
  assert.deepEqual(names([...a2.assignment, ...b.assignment]), ['orders-0', 'orders-1', 'orders-2', 'orders-3']);
  assert.equal(a2.assignment.length, 2);

  const cJoin = c.joinGroup({ group: 'g', topics: ['orders'], clientId: 'c' });
  const rejoin = (m: JoinGroupResult) => c.joinGroup({ group: 'g', memberId: m.memberId, topics: ['orders'] });
  const [a3, b3, c3] = await Promise.all([rejoin(a2), rejoin(b), cJoin]);
  assert.deepEqual([a3.generation, b3.generation, c3.generation], [3, 3, 3]);
  assert.deepEqual(names([...a3.assignment, ...b3.assignment, ...c3.assignment]), ['orders-0', 'orders-1', 'orders-2', 'orders-3']);
  const desc = await c.describeGroup('g');
  assert.equal(desc.state, 'stable');
  assert.equal(desc.generation, 3);
  assert.deepEqual(desc.members.map((m) => m.clientId).sort(), ['a', 'b', 'c']);
  assert.equal(c.stats().rebalances, 3);
});

test('a member leaving: the group rebalances at once and the other takes everything', async (t) => {
  const { coordinator: c } = await setup(t);
  const a = await c.joinGroup({ group: 'g', topics: ['orders'] });
  const bJoin = c.joinGroup({ group: 'g', topics: ['orders'] });
  const a2 = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] });
  const b = await bJoin;
  await c.leaveGroup('g', b.memberId);
  assert.deepEqual(await c.heartbeat('g', a.memberId, a2.generation), { rebalance: true });
  const a3 = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] });
  assert.equal(a3.assignment.length, 4);
  await assert.rejects(c.leaveGroup('g', b.memberId), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  await assert.rejects(c.heartbeat('g', b.memberId, a3.generation), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
});

test('a member that misses heartbeats is removed by the coordinator\u2019s timer and its partitions reassigned', async (t) => {
  const env = await setup(t);
  const c = env.coordinator;
  const opts = { group: 'g', topics: ['orders', 'audit'], sessionTimeoutMs: 3000, assignor: 'sticky' as const };
  const a = await c.joinGroup(opts);
  const bJoin = c.joinGroup(opts);
  const a2 = await c.joinGroup({ ...opts, memberId: a.memberId });
  const b = await bJoin;
  assert.equal(b.assignment.length, 3);
  for (let i = 0; i < 2; i++) {
    await env.advance(1000);
    assert.deepEqual(await c.heartbeat('g', a.memberId, a2.generation), { rebalance: false });
  }
  await env.advance(999);
  assert.equal((await c.describeGroup('g')).members.length, 2, 'B is still a member at 2999 ms');
  await env.advance(1);
  const desc = await c.describeGroup('g');
  assert.equal(desc.state, 'preparing-rebalance');
  assert.deepEqual(
    desc.members.map((m) => m.memberId),
    [a.memberId],
  );
  assert.deepEqual(await c.heartbeat('g', a.memberId, a2.generation), { rebalance: true });
  const a3 = await c.joinGroup({ ...opts, memberId: a.memberId });
  assert.equal(a3.generation, 3);
  assert.equal(a3.assignment.length, 6);
  // Sticky: A kept what it had.
  for (const p of names(a2.assignment)) assert.ok(names(a3.assignment).includes(p));
  await assert.rejects(c.commitOffsets('g', b.memberId, b.generation, [{ topic: 'orders', partition: 0, offset: 1 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
});

test('a rejoin after a rebalance keeps the member id; an unknown member id is refused', async (t) => {
  const { coordinator: c } = await setup(t);
  const a = await c.joinGroup({ group: 'g', topics: ['orders'] });
  const again = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] });
  assert.deepEqual(again, a, 'nothing changed: same generation and assignment, no rebalance');
  const moved = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders', 'audit'] });
  assert.equal(moved.memberId, a.memberId);
  assert.equal(moved.generation, 2);
  await assert.rejects(c.joinGroup({ group: 'g', memberId: 'made-up', topics: ['orders'] }), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  await assert.rejects(c.joinGroup({ group: 'other', memberId: 'made-up', topics: ['orders'] }), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  assert.deepEqual(c.listGroups(), ['g'], 'a refused rejoin does not create a group');
});

test('commits are fenced: a stale generation is refused, the current one is stored and read back', async (t) => {
  const { coordinator: c } = await setup(t);
  const a = await c.joinGroup({ group: 'g', topics: ['orders'] });
  await c.commitOffsets('g', a.memberId, 1, [{ topic: 'orders', partition: 0, offset: 5 }]);
  const bJoin = c.joinGroup({ group: 'g', topics: ['orders'] });
  // While preparing, A (still generation 1, still owning its partitions) may commit what it processed.
  await c.commitOffsets('g', a.memberId, 1, [{ topic: 'orders', partition: 1, offset: 9, metadata: 'before rejoin' }]);
  const a2 = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] });
  const b = await bJoin;
  await assert.rejects(c.commitOffsets('g', a.memberId, 1, [{ topic: 'orders', partition: 0, offset: 6 }]), rejectsWith('ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  await assert.rejects(c.heartbeat('g', a.memberId, 1), rejectsWith('ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  await assert.rejects(c.commitOffsets('g', 'ghost', 2, [{ topic: 'orders', partition: 0, offset: 6 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  await assert.rejects(c.commitOffsets('nogroup', 'ghost', 2, []), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  await c.commitOffsets('g', b.memberId, b.generation, [{ topic: 'orders', partition: 3, offset: 30 }]);
  assert.deepEqual(
    await c.fetchOffsets('g', [
      { topic: 'orders', partition: 0 },
      { topic: 'orders', partition: 1 },
      { topic: 'orders', partition: 2 },
      { topic: 'orders', partition: 3 },
    ]),
    [
      { topic: 'orders', partition: 0, offset: 5, metadata: '' },
      { topic: 'orders', partition: 1, offset: 9, metadata: 'before rejoin' },
      { topic: 'orders', partition: 2, offset: -1, metadata: '' },
      { topic: 'orders', partition: 3, offset: 30, metadata: '' },
    ],
  );
  assert.equal(a2.generation, 2);
  assert.deepEqual(await c.fetchOffsets('unknown-group', [{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: -1, metadata: '' }]);
});

test('committed offsets survive close and open (fsync on); the group comes back empty with them', async (t) => {
  const env = await setup(t, { fsync: true });
  const a = await env.coordinator.joinGroup({ group: 'g', topics: ['orders', 'audit'] });
  await env.coordinator.commitOffsets('g', a.memberId, a.generation, [
    { topic: 'orders', partition: 2, offset: 42, metadata: 'm' },
    { topic: 'audit', partition: 1, offset: 7 },
  ]);
  const c = await env.reopen({ fsync: true });
  assert.deepEqual(c.listGroups(), ['g']);
  assert.deepEqual(
    await c.fetchOffsets('g', [
      { topic: 'orders', partition: 2 },
      { topic: 'audit', partition: 1 },
    ]),
    [
      { topic: 'orders', partition: 2, offset: 42, metadata: 'm' },
      { topic: 'audit', partition: 1, offset: 7, metadata: '' },
    ],
  );
  const desc = await c.describeGroup('g');
  assert.equal(desc.state, 'empty');
  assert.equal(desc.members.length, 0);
  // The member from before the restart is unknown now: its commits are refused; a new join works.
  await assert.rejects(c.commitOffsets('g', a.memberId, a.generation, [{ topic: 'orders', partition: 2, offset: 43 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  const b = await c.joinGroup({ group: 'g', topics: ['orders'] });
  assert.equal(b.generation, 1);
});

test('describeGroup: committed, high watermark and lag per partition, assigned partitions without commits included', async (t) => {
  const env = await setup(t);
  const c = env.coordinator;
  env.hw.set('orders-0', 100);
  env.hw.set('orders-1', 50);
  env.hw.set('orders-2', 10);
  const a = await c.joinGroup({ group: 'g', topics: ['orders'] });
  await c.commitOffsets('g', a.memberId, 1, [
    { topic: 'orders', partition: 0, offset: 60 },
    { topic: 'orders', partition: 1, offset: 50 },
    // Past the end (the topic was recreated, say): lag is 0, not negative.
    { topic: 'orders', partition: 2, offset: 15 },
  ]);
  const desc = await c.describeGroup('g');
  assert.deepEqual(desc.offsets, [
    { topic: 'orders', partition: 0, committed: 60, highWatermark: 100, lag: 40 },
    { topic: 'orders', partition: 1, committed: 50, highWatermark: 50, lag: 0 },
    { topic: 'orders', partition: 2, committed: 15, highWatermark: 10, lag: 0 },
    { topic: 'orders', partition: 3, committed: -1, highWatermark: 0, lag: 0 },
  ]);
  env.hw.set('orders-3', 8);
  assert.deepEqual((await c.describeGroup('g')).offsets[3], { topic: 'orders', partition: 3, committed: -1, highWatermark: 8, lag: 8 });
  assert.deepEqual(await c.describeGroup('nobody'), { group: 'nobody', state: 'dead', generation: 0, assignor: 'range', members: [], offsets: [] });
});

test('bounds: max groups, max members per group, pending joins; bad requests are typed errors', async (t) => {
  const { coordinator: c } = await setup(t, { maxGroups: 2, maxMembersPerGroup: 2, maxPendingJoins: 2, maxMetadataBytes: 8 });
  const g1 = await c.joinGroup({ group: 'g1', topics: ['orders'] });
  await c.joinGroup({ group: 'g2', topics: ['orders'] });
  await assert.rejects(c.joinGroup({ group: 'g3', topics: ['orders'] }), (err: unknown) => rejectsWith('ARCHLAB_QUEUE_LIMIT')(err) && (err as QueueError).details?.limit === 'maxGroups');
  await assert.rejects(c.commitOffsets('g3', '', -1, [{ topic: 'orders', partition: 0, offset: 1 }]), rejectsWith('ARCHLAB_QUEUE_LIMIT'));
  // Second member of g1 waits (one pending join), second of g2 waits (two): the next waiting join is refused.
  const w1 = c.joinGroup({ group: 'g1', topics: ['orders'] });
  const w2 = c.joinGroup({ group: 'g2', topics: ['orders'] });
  await assert.rejects(c.joinGroup({ group: 'g1', memberId: g1.memberId, topics: ['orders'] }), (err: unknown) => rejectsWith('ARCHLAB_QUEUE_LIMIT')(err) && (err as QueueError).details?.limit === 'maxPendingJoins');
  assert.equal(c.stats().pendingJoins, 2);
  await c.leaveGroup('g1', g1.memberId);
  const onlyB = await w1;
  assert.equal(onlyB.assignment.length, 4);
  // g2 has its first member and w2's: full.
  await assert.rejects(c.joinGroup({ group: 'g2', topics: ['orders'] }), (err: unknown) => rejectsWith('ARCHLAB_QUEUE_LIMIT')(err) && (err as QueueError).details?.limit === 'maxMembersPerGroup');
  assert.equal(await settled(w2), false);

  const m = onlyB.memberId;
  const commit = (offsets: Parameters<GroupCoordinator['commitOffsets']>[3]) => c.commitOffsets('g1', m, onlyB.generation, offsets);
  await assert.rejects(commit([{ topic: 'orders', partition: 4, offset: 1 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_PARTITION'));
  await assert.rejects(commit([{ topic: 'nope', partition: 0, offset: 1 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(commit([{ topic: 'orders', partition: 0, offset: -1 }]), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(commit([{ topic: 'orders', partition: 0, offset: 1.5 }]), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(commit([{ topic: 'orders', partition: 0, offset: 1, metadata: '123456789' }]), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(
    commit([
      { topic: 'orders', partition: 0, offset: 1 },
      { topic: 'orders', partition: 0, offset: 2 },
    ]),
    rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'),
  );
  assert.deepEqual(await c.fetchOffsets('g1', [{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: -1, metadata: '' }], 'refused commits stored nothing');
  await commit([{ topic: 'orders', partition: 0, offset: 1, metadata: '12345678' }]);

  await assert.rejects(c.joinGroup({ group: '__internal', topics: ['orders'] }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: [] }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: ['missing'] }), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: ['orders'], sessionTimeoutMs: 10 }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: ['orders'], rebalanceTimeoutMs: 3_600_000 }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: ['orders'], assignor: 'fastest' as never }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.joinGroup({ group: 'g1', topics: ['orders'], clientId: 'x\ny' }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(c.fetchOffsets('g1', [{ topic: 'orders', partition: -1 }]), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
  await assert.rejects(GroupCoordinator.open({ dataDir: join(tmpdir(), 'never-created'), clock: new ManualClock(), random: new SeededRandom(1), partitionsOf: () => 1, highWatermark: () => 0, maxGroups: 0 }), rejectsWith('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('a group without members takes commits with member id "" and generation -1; a group with members refuses them', async (t) => {
  const { coordinator: c } = await setup(t);
  await c.commitOffsets('manual', '', -1, [{ topic: 'audit', partition: 1, offset: 3 }]);
  assert.deepEqual(c.listGroups(), ['manual']);
  assert.equal((await c.describeGroup('manual')).state, 'empty');
  await c.joinGroup({ group: 'manual', topics: ['audit'] });
  await assert.rejects(c.commitOffsets('manual', '', -1, [{ topic: 'audit', partition: 1, offset: 4 }]), rejectsWith('ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
});

test('a deleted topic: subscribed groups rebalance without it and its offsets are dropped', async (t) => {
  const env = await setup(t);
  const c = env.coordinator;
  const a = await c.joinGroup({ group: 'g', topics: ['orders', 'audit'] });
  await c.commitOffsets('g', a.memberId, 1, [
    { topic: 'audit', partition: 0, offset: 4 },
    { topic: 'orders', partition: 0, offset: 2 },
  ]);
  await c.commitOffsets('only-audit', '', -1, [{ topic: 'audit', partition: 1, offset: 1 }]);
  delete env.partitions.audit;
  await c.topicChanged('audit');
  assert.deepEqual(await c.heartbeat('g', a.memberId, 1), { rebalance: true });
  const a2 = await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders', 'audit'].filter((x) => x in env.partitions) });
  assert.deepEqual(names(a2.assignment), ['orders-0', 'orders-1', 'orders-2', 'orders-3']);
  assert.deepEqual(await c.fetchOffsets('g', [{ topic: 'audit', partition: 0 }]), [{ topic: 'audit', partition: 0, offset: -1, metadata: '' }]);
  assert.deepEqual(c.listGroups(), ['g'], 'a group whose only offsets were on the deleted topic is gone');
  env.partitions.orders = 6;
  await c.topicChanged('orders');
  assert.equal((await c.joinGroup({ group: 'g', memberId: a.memberId, topics: ['orders'] })).assignment.length, 6);
});

test('offsets of a group left empty expire after offsetsRetentionMs; a group with members keeps them', async (t) => {
  const env = await setup(t, { offsetsRetentionMs: 60_000, offsetsRetentionCheckIntervalMs: 10_000 });
  const c = env.coordinator;
  await c.commitOffsets('idle', '', -1, [{ topic: 'orders', partition: 0, offset: 1 }]);
  const a = await c.joinGroup({ group: 'busy', topics: ['orders'], sessionTimeoutMs: 600_000 });
  await c.commitOffsets('busy', a.memberId, 1, [{ topic: 'orders', partition: 0, offset: 1 }]);
  await env.advance(50_000);
  assert.deepEqual(c.listGroups(), ['busy', 'idle']);
  await env.advance(10_000);
  // The sweep writes a delete record to disk: wait for that I/O (bounded; no speed is asserted).
  await waitFor(() => c.listGroups().length === 1);
  assert.deepEqual(c.listGroups(), ['busy']);
  assert.deepEqual(await c.fetchOffsets('idle', [{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: -1, metadata: '' }]);
  assert.deepEqual(await c.fetchOffsets('busy', [{ topic: 'orders', partition: 0 }]), [{ topic: 'orders', partition: 0, offset: 1, metadata: '' }]);
  // The expiry is durable.
  const again = await env.reopen({ offsetsRetentionMs: 60_000 });
  assert.deepEqual(again.listGroups(), ['busy']);
});

test('close fails waiting joins with CLOSED and every later call too', async (t) => {
  const env = await setup(t);
  const c = env.coordinator;
  const a = await c.joinGroup({ group: 'g', topics: ['orders'] });
  const waiting = assert.rejects(c.joinGroup({ group: 'g', topics: ['orders'] }), rejectsWith('ARCHLAB_QUEUE_CLOSED'));
  await c.close();
  await waiting;
  await assert.rejects(c.heartbeat('g', a.memberId, 1), rejectsWith('ARCHLAB_QUEUE_CLOSED'));
  await assert.rejects(c.commitOffsets('g', a.memberId, 1, []), rejectsWith('ARCHLAB_QUEUE_CLOSED'));
  await assert.rejects(c.describeGroup('g'), rejectsWith('ARCHLAB_QUEUE_CLOSED'));
  await c.close();
});

/**
 * Seeded: consumers join, heartbeat (or go quiet for a while), commit and leave at random over
 * simulated time, through the coordinator's promises and its own timers. After every completed
 * rebalance, the partitions of the group's subscriptions each have exactly one owner, and every
 * commit the coordinator accepted came from a member of the generation current at that moment.
 */
test('randomised: joins, leaves and heartbeat gaps over time leave exactly one owner per partition after every rebalance', async (t) => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const env = await setup(t, { random: new SeededRandom(seed), initialRebalanceDelayMs: 200 });
  const c = env.coordinator;
  const label = (what: string): string => `seed ${seed}: ${what}`;
  interface Consumer {
    memberId: string;
    generation: number;
    joining: boolean;
    quietUntil: number;
    gone: boolean;
  }
  const consumers: Consumer[] = [];
  let seen = 0;
  let checked = 0;
  const check = async (): Promise<void> => {
    const total = c.stats().rebalances;
    if (total === seen) return;
    seen = total;
    const desc = await c.describeGroup('g');
    if (desc.state !== 'stable') return;
    checked++;
    const owners = new Map<string, string>();
    for (const m of desc.members) {
      for (const p of m.assignment) {
        const key = `${p.topic}-${p.partition}`;
        assert.equal(owners.get(key), undefined, label(`${key} owned twice in generation ${desc.generation}`));
        owners.set(key, m.memberId);
      }
    }
    assert.equal(owners.size, 6, label(`generation ${desc.generation}: ${owners.size} of 6 partitions owned`));
  };
  const join = (k: Consumer): void => {
    k.joining = true;
    c.joinGroup({ group: 'g', memberId: k.memberId, topics: ['orders', 'audit'], sessionTimeoutMs: 2000, rebalanceTimeoutMs: 3000, assignor: 'sticky' }).then(
      (r) => {
        k.joining = false;
        k.memberId = r.memberId;
        k.generation = r.generation;
      },
      (err: unknown) => {
        k.joining = false;
        assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER') || isQueueError(err, 'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS') || isQueueError(err, 'ARCHLAB_QUEUE_CLOSED'), label(String(err)));
        k.memberId = '';
      },
    );
  };
  let accepted = 0;
  for (let step = 0; step < 250; step++) {
    const now = env.clock.monotonic();
    const roll = rnd.int(100);
    const live = consumers.filter((k) => !k.gone);
    if (roll < 8 && live.length < 6) {
      const k: Consumer = { memberId: '', generation: -1, joining: false, quietUntil: 0, gone: false };
      consumers.push(k);
      join(k);
    } else if (roll < 11 && live.length) {
      const k = live[rnd.int(live.length)]!;
      if (!k.joining && k.memberId) {
        await c.leaveGroup('g', k.memberId).catch((err: unknown) => assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'), label(String(err))));
        k.gone = true;
      }
    } else if (roll < 16 && live.length) {
      live[rnd.int(live.length)]!.quietUntil = now + rnd.int(5000);
    }
    for (const k of consumers) {
      if (k.gone || k.joining || now < k.quietUntil) continue;
      if (!k.memberId) {
        join(k);
        continue;
      }
      try {
        const hb = await c.heartbeat('g', k.memberId, k.generation);
        if (rnd.int(3) === 0) {
          const generationNow = (await c.describeGroup('g')).generation;
          await c.commitOffsets('g', k.memberId, k.generation, [{ topic: 'orders', partition: rnd.int(4), offset: step }]);
          assert.equal(k.generation, generationNow, label('an accepted commit carried the current generation'));
          accepted++;
        }
        if (hb.rebalance) join(k);
      } catch (err) {
        assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER') || isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'), label(String(err)));
        if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER')) k.memberId = '';
        join(k);
      }
    }
    await env.advance(200 + rnd.int(500));
    await check();
  }
  assert.ok(checked >= 5, label(`only ${checked} stable generations were checked`));
  assert.ok(accepted > 0, label('some commits were accepted'));
});
