import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../core/clock.js';
import { SeededRandom, freshSeed } from '../../../core/random.js';
import { QueueError, isQueueError } from '../../errors.js';
import type { Assignor, JoinGroupResult, TopicPartition } from '../../types.js';
import { Group, type JoinTicket, type MemberJoin, type Settlement } from './state.js';

const PARTITIONS: Record<string, number> = { orders: 6, audit: 3, empty: 0 };

/** A group core and a driver that plays the shell: ticks at each deadline as time moves. */
function setup(opts: { maxMembers?: number; initialRebalanceDelayMs?: number; partitions?: Record<string, number>; seed?: number } = {}) {
  const clock = new ManualClock(1_000_000);
  const partitions = opts.partitions ?? { ...PARTITIONS };
  const group = new Group({
    name: 'g',
    clock,
    random: new SeededRandom(opts.seed ?? 1),
    partitionsOf: (t) => {
      const n = partitions[t];
      if (n === undefined) throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_TOPIC', `no topic ${t}`);
      return n;
    },
    maxMembers: opts.maxMembers ?? 100,
    initialRebalanceDelayMs: opts.initialRebalanceDelayMs ?? 0,
  });
  const results = new Map<JoinTicket, JoinGroupResult | QueueError>();
  const record = (settled: Settlement[]): void => {
    for (const s of settled) results.set(s.ticket, s.error ?? s.result);
  };
  const join = (req: Partial<MemberJoin> = {}): JoinTicket => {
    const { ticket, settled } = group.join({
      memberId: '',
      clientId: 'c',
      topics: ['orders'],
      sessionTimeoutMs: 10_000,
      rebalanceTimeoutMs: 10_000,
      assignor: undefined,
      ...req,
    });
    record(settled);
    return ticket;
  };
  /** Moves time forward, running tick() at every deadline on the way, as the coordinator's timer does. */
  const advance = (ms: number): void => {
    const target = clock.monotonic() + ms;
    for (;;) {
      const due = group.nextDeadline();
      if (due === undefined || due > target) break;
      clock.advance(Math.max(0, due - clock.monotonic()));
      record(group.tick());
    }
    clock.advance(target - clock.monotonic());
  };
  const result = (ticket: JoinTicket): JoinGroupResult => {
    const r = results.get(ticket);
    assert.ok(r !== undefined, `join of ${ticket.memberId} is still waiting`);
    if (r instanceof QueueError) throw r;
    return r;
  };
  return { clock, group, partitions, join, advance, result, results, record };
}

const names = (list: TopicPartition[]): string[] => list.map((p) => `${p.topic}-${p.partition}`);

function owners(group: Group): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of group.describe().members) {
    for (const p of m.assignment) {
      const key = `${p.topic}-${p.partition}`;
      assert.equal(out.get(key), undefined, `${key} owned twice`);
      out.set(key, m.memberId);
    }
  }
  return out;
}

test('one member: the first join completes a rebalance at once with every partition', () => {
  const { group, join, result } = setup();
  assert.equal(group.state, 'empty');
  const t = join({ clientId: 'app' });
  const r = result(t);
  assert.match(r.memberId, /^app-[0-9a-f]{32}$/);
  assert.equal(r.generation, 1);
  assert.deepEqual(names(r.assignment), ['orders-0', 'orders-1', 'orders-2', 'orders-3', 'orders-4', 'orders-5']);
  assert.equal(group.state, 'stable');
  assert.deepEqual(group.heartbeat(r.memberId, 1), { rebalance: false });
});

test('two members: the second join waits until the first rejoins, then both get generation 2 and disjoint halves', () => {
  const { group, join, result, results } = setup();
  const a = result(join());
  const tb = join();
  assert.equal(results.has(tb), false, 'B waits for A');
  assert.equal(group.state, 'preparing-rebalance');
  assert.deepEqual(group.heartbeat(a.memberId, 1), { rebalance: true });
  const ta = join({ memberId: a.memberId });
  const [ra, rb] = [result(ta), result(tb)];
  assert.equal(ra.memberId, a.memberId, 'a rejoin keeps the member id');
  assert.equal(ra.generation, 2);
  assert.equal(rb.generation, 2);
  assert.deepEqual([...names(ra.assignment), ...names(rb.assignment)].sort(), ['orders-0', 'orders-1', 'orders-2', 'orders-3', 'orders-4', 'orders-5']);
  assert.equal(ra.assignment.length, 3);
  assert.equal(group.state, 'stable');
});

test('three members with range over two topics: each topic split in contiguous runs by member id', () => {
  const { group, join, result } = setup();
  const first = result(join({ topics: ['orders', 'audit'], assignor: 'range' }));
  const t2 = join({ topics: ['orders', 'audit'] });
  const t3 = join({ topics: ['orders', 'audit'] });
  const t1 = join({ memberId: first.memberId, topics: ['orders', 'audit'] });
  const rs = [result(t1), result(t2), result(t3)].sort((x, y) => (x.memberId < y.memberId ? -1 : 1));
  assert.deepEqual(
    rs.map((r) => names(r.assignment)),
    [
      ['audit-0', 'orders-0', 'orders-1'],
      ['audit-1', 'orders-2', 'orders-3'],
      ['audit-2', 'orders-4', 'orders-5'],
    ],
  );
  assert.equal(group.generation, 2);
  assert.equal(group.describe().assignor, 'range');
});

test('a member leaving triggers a rebalance at once; the others rejoin and take its partitions', () => {
  const { group, join, result } = setup();
  const a = result(join());
  const tb = join();
  const b = (join({ memberId: a.memberId }), result(tb));
  assert.equal(b.generation, 2);
  group.leave(b.memberId);
  assert.equal(group.state, 'preparing-rebalance');
  assert.deepEqual(group.heartbeat(a.memberId, 2), { rebalance: true });
  const ra = result(join({ memberId: a.memberId }));
  assert.equal(ra.generation, 3);
  assert.equal(ra.assignment.length, 6);
  assert.throws(() => group.leave(b.memberId), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  // The last member leaving empties the group; the generation still moves on.
  group.leave(a.memberId);
  assert.equal(group.state, 'empty');
  assert.equal(group.generation, 4);
  assert.equal(group.memberCount, 0);
});

test('a member that misses heartbeats is removed after its session timeout and its partitions reassigned', () => {
  const { group, join, result, advance } = setup();
  const a = result(join({ sessionTimeoutMs: 3000 }));
  const tb = join({ sessionTimeoutMs: 3000 });
  join({ memberId: a.memberId, sessionTimeoutMs: 3000 });
  const b = result(tb);
  // A heartbeats every second; B goes silent.
  for (let i = 0; i < 2; i++) {
    advance(1000);
    assert.deepEqual(group.heartbeat(a.memberId, 2), { rebalance: false });
  }
  advance(999);
  assert.ok(group.hasMember(b.memberId), 'B is still in at 2999 ms');
  advance(1);
  assert.equal(group.hasMember(b.memberId), false, 'B is removed at 3000 ms');
  assert.equal(group.state, 'preparing-rebalance');
  assert.throws(() => group.heartbeat(b.memberId, 2), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  assert.deepEqual(group.heartbeat(a.memberId, 2), { rebalance: true });
  const ra = result(join({ memberId: a.memberId, sessionTimeoutMs: 3000 }));
  assert.equal(ra.generation, 3);
  assert.equal(ra.assignment.length, 6);
});

test('a member that does not rejoin within the rebalance timeout is dropped; a waiting join does not expire', () => {
  const { group, join, result, results, advance } = setup();
  const a = result(join({ sessionTimeoutMs: 60_000, rebalanceTimeoutMs: 5000 }));
  // B's session (1 s) is much shorter than the rebalance: waiting joins are kept alive anyway.
  const tb = join({ sessionTimeoutMs: 1000, rebalanceTimeoutMs: 1000 });
  advance(4999);
  assert.equal(results.has(tb), false);
  assert.ok(group.hasMember(a.memberId) && group.hasMember(tb.memberId));
  advance(1);
  const b = result(tb);
  assert.equal(b.generation, 2);
  assert.equal(b.assignment.length, 6);
  assert.equal(group.hasMember(a.memberId), false);
  assert.throws(() => group.checkCommit(a.memberId, 1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
});

test('a stable member rejoining with the same topics gets its assignment without a rebalance; new topics rebalance', () => {
  const { group, join, result } = setup();
  const a = result(join());
  const again = result(join({ memberId: a.memberId }));
  assert.deepEqual(again, a);
  assert.equal(group.rebalances, 1);
  const changed = result(join({ memberId: a.memberId, topics: ['audit', 'orders'] }));
  assert.equal(changed.generation, 2);
  assert.equal(changed.assignment.length, 9);
  assert.throws(() => join({ memberId: 'nobody' }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
});

test('fencing: stale generations and unknown members are refused; the current generation may commit while rebalancing', () => {
  const { group, join, result } = setup();
  const a = result(join());
  group.checkCommit(a.memberId, 1);
  const tb = join();
  // Preparing: A still owns its partitions until the rebalance completes, so it may commit.
  group.checkCommit(a.memberId, 1);
  // B has not been assigned yet: whatever generation it names is refused.
  assert.throws(() => group.checkCommit(tb.memberId, 1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  assert.throws(() => group.heartbeat(tb.memberId, 1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  join({ memberId: a.memberId });
  result(tb);
  assert.equal(group.generation, 2);
  // Generation 1 was fenced when generation 2 completed.
  assert.throws(() => group.checkCommit(a.memberId, 1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  assert.throws(() => group.heartbeat(a.memberId, 1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  assert.throws(() => group.checkCommit(a.memberId, 3), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'));
  assert.throws(() => group.checkCommit('ghost', 2), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  group.checkCommit(a.memberId, 2);
  // A member-less commit (generation -1) is for empty groups only.
  assert.throws(() => group.checkCommit('', -1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'));
  const err = (() => {
    try {
      group.checkCommit(a.memberId, 1);
    } catch (e) {
      return e as QueueError;
    }
    return undefined;
  })();
  assert.equal(err?.retryable, true, 'a fenced member can recover by rejoining');
});

test('bounds and arguments: max members, an assignor other than the group\u2019s, a join that replaces an earlier one', () => {
  const { group, join, result, results } = setup({ maxMembers: 2 });
  const a = result(join({ assignor: 'sticky' }));
  const tb = join();
  assert.throws(() => join(), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_LIMIT') && (err as QueueError).details?.limit === 'maxMembersPerGroup');
  assert.throws(() => join({ memberId: a.memberId, assignor: 'range' }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.equal(group.memberCount, 2);
  // B joins again before its first join was answered: the first is told, the second stands.
  const tb2 = join({ memberId: tb.memberId });
  assert.ok(isQueueError(results.get(tb), 'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS'));
  assert.equal(group.waitingJoins, 1);
  join({ memberId: a.memberId, assignor: 'sticky' });
  assert.equal(result(tb2).generation, 2);
  assert.equal(group.waitingJoins, 0);
  assert.equal(group.assignor, 'sticky');
});

test('initial rebalance delay: members joining an empty group meanwhile land in the same first generation', () => {
  const { group, join, result, results, advance } = setup({ initialRebalanceDelayMs: 3000 });
  const ta = join({ rebalanceTimeoutMs: 20_000 });
  advance(1000);
  const tb = join({ rebalanceTimeoutMs: 20_000 });
  // The delay is now 3000 + 3000 from the start.
  advance(4999);
  assert.equal(results.size, 0);
  assert.equal(group.state, 'preparing-rebalance');
  advance(1);
  assert.equal(result(ta).generation, 1);
  assert.equal(result(tb).generation, 1);
  assert.equal(owners(group).size, 6);
});

test('a deleted topic counts as no partitions; requestRebalance picks up a topic that grew', () => {
  const { group, join, result, partitions } = setup();
  const a = result(join({ topics: ['audit', 'orders'] }));
  assert.equal(a.assignment.length, 9);
  partitions.orders = 8;
  group.requestRebalance();
  assert.deepEqual(group.heartbeat(a.memberId, 1), { rebalance: true });
  assert.equal(result(join({ memberId: a.memberId, topics: ['audit', 'orders'] })).assignment.length, 11);
  delete partitions.audit;
  group.requestRebalance();
  const r = result(join({ memberId: a.memberId, topics: ['audit', 'orders'] }));
  assert.deepEqual(names(r.assignment), Array.from({ length: 8 }, (_, i) => `orders-${i}`));
});

test('abort fails every waiting join', () => {
  const { group, join, result } = setup();
  const ta = join();
  const a = result(ta);
  // B and C wait for A to rejoin.
  const tb = join();
  const tc = join();
  assert.equal(group.waitingJoins, 2);
  const closed = new QueueError('ARCHLAB_QUEUE_CLOSED', 'closed');
  const settled = group.abort(closed);
  assert.ok(group.hasMember(a.memberId));
  assert.deepEqual(new Set(settled.map((s) => s.ticket)), new Set([tb, tc]));
  assert.ok(settled.every((s) => s.error === closed));
  assert.equal(group.waitingJoins, 0);
});

/**
 * A seeded simulation: clients join, heartbeat, go silent, change topics and leave at random over
 * simulated time. After every completed rebalance, every partition of every subscribed topic has
 * exactly one owner, owned only by a member subscribed to its topic, and the joins answered for that
 * generation agree with the group's view. At the end every live client is a member of a stable group.
 */
test('simulation: random joins, leaves and heartbeat gaps keep exactly one owner per partition', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const topics = ['orders', 'audit', 'empty'];
  const assignors: Assignor[] = ['range', 'round-robin', 'sticky'];
  for (let run = 0; run < 6; run++) {
    const label = (what: string): string => `seed ${seed} run ${run}: ${what}`;
    const env = setup({ seed: rnd.uint32(), initialRebalanceDelayMs: run % 2 ? 500 : 0 });
    const { group, clock } = env;
    const assignor = assignors[run % 3]!;
    interface Client {
      memberId: string;
      generation: number;
      topics: string[];
      ticket: JoinTicket | undefined;
      silentUntil: number;
      lastBeat: number;
      gone: boolean;
    }
    const clients: Client[] = [];
    let seenRebalances = 0;
    const pickTopics = (): string[] => {
      const t = topics.filter(() => rnd.int(2) === 0);
      return t.length ? t.sort() : ['orders'];
    };
    const joinFor = (c: Client): void => {
      try {
        c.ticket = env.join({ memberId: c.memberId, topics: c.topics, sessionTimeoutMs: 3000, rebalanceTimeoutMs: 4000, assignor });
      } catch (err) {
        assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER'), label(`join failed: ${String(err)}`));
        c.memberId = '';
        c.ticket = env.join({ memberId: '', topics: c.topics, sessionTimeoutMs: 3000, rebalanceTimeoutMs: 4000, assignor });
      }
      c.lastBeat = clock.monotonic();
    };
    const collect = (): void => {
      for (const c of clients) {
        if (c.ticket === undefined) continue;
        const r = env.results.get(c.ticket);
        if (r === undefined) continue;
        c.ticket = undefined;
        if (r instanceof QueueError) {
          assert.ok(isQueueError(r, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER') || isQueueError(r, 'ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS'), label(String(r)));
          c.memberId = '';
          c.generation = -1;
          continue;
        }
        c.memberId = r.memberId;
        c.generation = r.generation;
        assert.equal(r.generation, group.generation, label('a join answered with the current generation'));
      }
    };
    const check = (): void => {
      if (group.rebalances === seenRebalances) return;
      seenRebalances = group.rebalances;
      if (group.state !== 'stable') return;
      const desc = group.describe();
      const own = owners(group);
      const subscribed = new Map<string, Set<string>>();
      for (const c of clients) if (c.memberId && group.hasMember(c.memberId)) subscribed.set(c.memberId, new Set(c.topics));
      const wanted = new Set<string>();
      for (const s of subscribed.values()) for (const t of s) wanted.add(t);
      for (const t of wanted) {
        for (let p = 0; p < PARTITIONS[t]!; p++) assert.ok(own.has(`${t}-${p}`), label(`${t}-${p} has no owner in generation ${desc.generation}`));
      }
      for (const [key, owner] of own) {
        const topic = key.slice(0, key.lastIndexOf('-'));
        assert.ok(subscribed.get(owner)?.has(topic), label(`${key} owned by ${owner}, not subscribed`));
      }
    };
    for (let step = 0; step < 400; step++) {
      const now = clock.monotonic();
      const roll = rnd.int(100);
      if (roll < 6 && clients.filter((c) => !c.gone).length < 8) {
        const c: Client = { memberId: '', generation: -1, topics: pickTopics(), ticket: undefined, silentUntil: 0, lastBeat: now, gone: false };
        clients.push(c);
        joinFor(c);
      } else if (roll < 9) {
        const candidates = clients.filter((x) => !x.gone && x.memberId && x.ticket === undefined);
        const c = candidates.length ? candidates[rnd.int(candidates.length)] : undefined;
        if (c && group.hasMember(c.memberId)) {
          env.record(group.leave(c.memberId));
          c.gone = true;
        }
      } else if (roll < 13) {
        const live = clients.filter((x) => !x.gone);
        if (live.length) live[rnd.int(live.length)]!.silentUntil = now + rnd.int(8000);
      } else if (roll < 15) {
        const live = clients.filter((x) => !x.gone && x.ticket === undefined && x.memberId);
        if (live.length) {
          const c = live[rnd.int(live.length)]!;
          c.topics = pickTopics();
          joinFor(c);
        }
      }
      collect();
      check();
      for (const c of clients) {
        if (c.gone || c.ticket !== undefined || now < c.silentUntil) continue;
        if (c.memberId === '') {
          joinFor(c);
          continue;
        }
        if (now - c.lastBeat < 1000) continue;
        c.lastBeat = now;
        try {
          if (group.heartbeat(c.memberId, c.generation).rebalance) joinFor(c);
        } catch (err) {
          assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER') || isQueueError(err, 'ARCHLAB_QUEUE_ILLEGAL_GENERATION'), label(String(err)));
          if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_MEMBER')) c.memberId = '';
          joinFor(c);
        }
        collect();
        check();
      }
      env.advance(100 + rnd.int(400));
      collect();
      check();
    }
    // Calm: every live client behaves; the group must settle with all of them in it.
    for (let i = 0; i < 100 && !(group.state === 'stable' && clients.every((c) => c.gone || (c.memberId && group.hasMember(c.memberId) && c.generation === group.generation))); i++) {
      for (const c of clients) {
        if (c.gone || c.ticket !== undefined) continue;
        if (c.memberId === '' || !group.hasMember(c.memberId)) {
          c.memberId = '';
          joinFor(c);
          continue;
        }
        try {
          if (group.heartbeat(c.memberId, c.generation).rebalance) joinFor(c);
        } catch {
          joinFor(c);
        }
      }
      collect();
      check();
      env.advance(500);
      collect();
      check();
    }
    const live = clients.filter((c) => !c.gone);
    assert.equal(group.memberCount, live.length, label('every live client is a member at the end'));
    if (live.length) assert.equal(group.state, 'stable', label('stable at the end'));
    assert.ok(group.rebalances > 3, label(`only ${group.rebalances} rebalances: the run exercised too little`));
  }
});
