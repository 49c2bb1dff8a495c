import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshSeed, SeededRandom } from '../../core/random.js';
import type { Delivery, QueueConfig } from '../types.js';
import { DEFAULT_QUEUE_CONFIG } from './options.js';
import {
  ADMIT_DROP_HEAD,
  ADMIT_OK,
  ADMIT_REFUSE,
  Consumer,
  QueueCore,
  type Entry,
  type QueueEvents,
  type RemoveReason,
  type StoredMessage,
} from './queue-core.js';

/** A queue core with recording events; tags are assigned like the broker does. */
function harness(config: Partial<QueueConfig> = {}, sweep = { ttlSweepIntervalMs: 1000, ttlSweepMaxMessages: 1000 }) {
  let tag = 0;
  const removed: [string, RemoveReason][] = [];
  const released: string[] = [];
  const byTag = new Map<number, Entry>();
  const events: QueueEvents = {
    delivering: (e, c) => {
      e.tag = ++tag;
      byTag.set(e.tag, e);
      c?.onDelivery({ deliveryTag: e.tag, queue: 'q', messageId: e.msg.messageId, body: e.msg.body, headers: {}, priority: e.msg.priority, deliveryCount: e.deliveryCount, redelivered: e.redelivered, publishedAt: e.msg.publishedAt });
    },
    released: (e) => {
      released.push(e.msg.messageId);
      byTag.delete(e.tag);
    },
    removed: (e, reason) => {
      removed.push([e.msg.messageId, reason]);
    },
  };
  const q = new QueueCore('q', { ...DEFAULT_QUEUE_CONFIG, ...config }, events, sweep);
  let seq = 0;
  const msg = (id: string, o: Partial<StoredMessage> = {}, now = 0): StoredMessage => ({
    seq: ++seq,
    messageId: id,
    body: Buffer.from(id),
    headers: {},
    priority: 0,
    publishedAt: now,
    enqueuedAt: now,
    ttlMs: -1,
    delayMs: 0,
    ...o,
  });
  const publish = (id: string, o: Partial<StoredMessage> = {}, now = 0): Entry => {
    const m = msg(id, o, now);
    assert.notEqual(q.admit(m.body.length), ADMIT_REFUSE, `admit ${id}`);
    q.makeRoom(m.body.length);
    return q.enqueue(m, now);
  };
  const consumer = (name: string, prefetch: number) => {
    const got: Delivery[] = [];
    const c = new Consumer(name, prefetch, (d) => got.push(d));
    q.addConsumer(c);
    return { c, got, ids: () => got.map((d) => d.messageId) };
  };
  const entry = (t: number): Entry => {
    const e = byTag.get(t);
    assert.ok(e, `tag ${t} known`);
    byTag.delete(t);
    return e;
  };
  const drainGet = (now = 0): string[] => {
    const out: string[] = [];
    for (let e = q.get(now); e !== null; e = q.get(now)) out.push(e.msg.messageId);
    return out;
  };
  return { q, publish, consumer, removed, released, entry, drainGet, byTag };
}

test('FIFO within a priority level, higher levels first; priorities above maxPriority use the top level', () => {
  const h = harness({ maxPriority: 3 });
  h.publish('a0', { priority: 0 });
  h.publish('b3', { priority: 3 });
  h.publish('c1', { priority: 1 });
  h.publish('d9', { priority: 9 });
  h.publish('e3', { priority: 3 });
  h.publish('f0', { priority: 0 });
  assert.deepEqual(h.drainGet(), ['b3', 'd9', 'e3', 'c1', 'a0', 'f0']);
  const flat = harness({ maxPriority: 0 });
  flat.publish('x', { priority: 5 });
  flat.publish('y', { priority: 0 });
  assert.deepEqual(flat.drainGet(), ['x', 'y'], 'no priorities: plain FIFO');
});

test('competing consumers: round robin among those with credit; an ack gives credit back', () => {
  const h = harness();
  const a = h.consumer('a', 2);
  const b = h.consumer('b', 1);
  for (let i = 0; i < 6; i++) h.publish(`m${i}`);
  assert.equal(h.q.dispatch(0, 100), 3);
  assert.deepEqual(a.ids(), ['m0', 'm2']);
  assert.deepEqual(b.ids(), ['m1']);
  assert.equal(h.q.unacked, 3);
  assert.equal(h.q.ready, 3);
  assert.equal(h.q.dispatch(0, 100), 0, 'nobody has credit');
  h.q.ack(h.entry(b.got[0]!.deliveryTag));
  assert.equal(h.q.dispatch(0, 100), 1);
  assert.deepEqual(b.ids(), ['m1', 'm3']);
  h.q.ack(h.entry(a.got[0]!.deliveryTag));
  h.q.ack(h.entry(a.got[1]!.deliveryTag));
  assert.equal(h.q.dispatch(0, 1), 1, 'limit respected');
  assert.equal(h.q.dispatch(0, 100), 1);
  assert.deepEqual(a.ids(), ['m0', 'm2', 'm4', 'm5']);
  assert.equal(h.q.counters.acked, 3);
  assert.equal(h.q.counters.delivered, 6);
});

test('visibility timeout: an unsettled delivery returns to the front, redelivered, count + 1, old tag dead', () => {
  const h = harness({ visibilityTimeoutMs: 100 });
  const a = h.consumer('a', 10);
  h.publish('m1');
  h.publish('m2');
  h.q.dispatch(0, 100);
  h.q.ack(h.entry(a.got[1]!.deliveryTag));
  assert.equal(h.q.nextWakeAt(), 100);
  h.q.tick(99);
  assert.equal(h.q.unacked, 1, 'not yet');
  h.q.tick(100);
  assert.deepEqual(h.released, ['m1']);
  assert.equal(h.byTag.has(a.got[0]!.deliveryTag), false);
  assert.equal(h.q.ready, 1);
  h.q.dispatch(100, 100);
  const again = a.got[2]!;
  assert.equal(again.messageId, 'm1');
  assert.equal(again.redelivered, true);
  assert.equal(again.deliveryCount, 2);
  assert.equal(h.q.counters.redelivered, 1);
});

test('maxDeliveries: the (max+1)th delivery becomes a delivery-limit removal instead', () => {
  const h = harness({ maxDeliveries: 2, visibilityTimeoutMs: 10 });
  h.publish('poison');
  h.publish('next');
  const first = h.q.get(0)!;
  assert.equal(first.msg.messageId, 'poison');
  h.q.nack(h.entry(first.tag), true);
  const second = h.q.get(1)!;
  assert.equal(second.deliveryCount, 2);
  h.q.tick(11); // times out: back to ready with 2 deliveries
  assert.equal(h.q.get(12)!.msg.messageId, 'next');
  assert.deepEqual(h.removed, [['poison', 'delivery-limit']]);
  assert.equal(h.q.length, 1);
});

test('nack requeue:false is a rejected removal; requeue:true goes to the front', () => {
  const h = harness();
  h.publish('a');
  h.publish('b');
  const a = h.q.get(0)!;
  h.q.nack(h.entry(a.tag), true);
  const again = h.q.get(0)!;
  assert.equal(again.msg.messageId, 'a');
  h.q.nack(h.entry(again.tag), false);
  assert.deepEqual(h.removed, [['a', 'rejected']]);
  assert.deepEqual(h.drainGet(), ['b']);
});

test('queue TTL: expired heads leave at the tick due for them, counted from when the message became ready', () => {
  const h = harness({ messageTtlMs: 50 });
  h.publish('old', {}, 0);
  h.publish('young', {}, 40);
  h.publish('delayed', { delayMs: 100 }, 0);
  assert.equal(h.q.nextWakeAt(), 51);
  h.q.tick(50);
  assert.deepEqual(h.removed, [], 'ready for exactly the TTL is not expired yet');
  h.q.tick(51);
  assert.deepEqual(h.removed, [['old', 'expired']]);
  h.q.tick(100); // the delayed one is ready from 100, expires after 150
  assert.deepEqual(h.removed, [['old', 'expired'], ['young', 'expired']]);
  assert.equal(h.q.ready, 1);
  h.q.tick(150);
  assert.equal(h.q.ready, 1);
  h.q.tick(151);
  assert.equal(h.q.ready, 0);
  assert.deepEqual(h.removed.map((r) => r[0]), ['old', 'young', 'delayed']);
});

test('per-message TTL: the smaller of message and queue TTL; a short one behind a long one is found by the sweep', () => {
  const h = harness({ messageTtlMs: 10_000 }, { ttlSweepIntervalMs: 100, ttlSweepMaxMessages: 2 });
  h.publish('long', { ttlMs: 60_000 }, 0);
  h.publish('filler', {}, 0);
  h.publish('short', { ttlMs: 5 }, 0);
  h.publish('short2', { ttlMs: 5 }, 0);
  h.q.tick(0); // first sweep: looks at 2 messages, none expired yet
  h.q.tick(50); // before the next sweep: head is not expired, nothing happens
  assert.deepEqual(h.removed, []);
  h.q.tick(100); // sweep continues where it stopped: short and short2
  assert.deepEqual(h.removed, [['short', 'expired'], ['short2', 'expired']]);
  assert.equal(h.q.ready, 2);
  assert.deepEqual(h.drainGet(100), ['long', 'filler'], 'tombstones are skipped');
  h.publish('late', {}, 100);
  h.q.tick(10_101);
  assert.deepEqual(h.removed.at(-1), ['late', 'expired'], 'queue TTL applies without a message TTL');
});

test('delayed delivery: held until due, then ready at the back', () => {
  const h = harness();
  h.publish('later', { delayMs: 500 }, 0);
  h.publish('now', {}, 0);
  assert.equal(h.q.delayedCount, 1);
  assert.equal(h.q.length, 2, 'delayed messages count toward the length');
  assert.deepEqual(h.drainGet(0), ['now']);
  assert.equal(h.q.nextWakeAt(), 500);
  h.q.tick(499);
  assert.equal(h.q.delayedCount, 1);
  h.q.tick(500);
  assert.equal(h.q.delayedCount, 0);
  assert.deepEqual(h.drainGet(500), ['later']);
});

test('overflow: reject-publish refuses; drop-head drops the oldest ready, never unacked or delayed', () => {
  const r = harness({ maxLength: 2 });
  r.publish('a');
  r.publish('b');
  assert.equal(r.q.admit(1), ADMIT_REFUSE);
  const bytes = harness({ maxLengthBytes: 3 });
  bytes.publish('ab');
  assert.equal(bytes.q.admit(1), ADMIT_OK);
  assert.equal(bytes.q.admit(2), ADMIT_REFUSE);

  const d = harness({ maxLength: 3, overflow: 'drop-head', maxPriority: 2 });
  d.publish('p0', { priority: 0 });
  d.publish('p2', { priority: 2 });
  d.publish('p1', { priority: 1 });
  assert.equal(d.q.admit(1), ADMIT_DROP_HEAD);
  d.publish('new');
  assert.deepEqual(d.removed, [['p0', 'maxlen']], 'the oldest ready message, whatever its priority');
  const held = d.q.get(0)!; // p2, unacked
  d.publish('later', { delayMs: 100 }, 0);
  assert.deepEqual(d.removed.map((x) => x[0]), ['p0', 'p1']);
  assert.equal(held.msg.messageId, 'p2');
  d.publish('x');
  assert.deepEqual(d.removed.map((x) => x[0]), ['p0', 'p1', 'new']);
  assert.equal(d.q.admit(1), ADMIT_DROP_HEAD);
  d.q.get(0); // x unacked now: unacked p2, x + delayed later = 3, nothing ready
  assert.equal(d.q.admit(1), ADMIT_REFUSE, 'drop-head cannot drop unacked or delayed messages');
});

test('cancel requeues the consumer\'s unacked deliveries at the front, in order; requeue false leaves them held', () => {
  const h = harness();
  const a = h.consumer('a', 3);
  for (const id of ['m1', 'm2', 'm3', 'm4']) h.publish(id);
  h.q.dispatch(0, 100);
  assert.deepEqual(a.ids(), ['m1', 'm2', 'm3']);
  h.q.ack(h.entry(a.got[1]!.deliveryTag));
  h.q.cancelConsumer(a.c, true);
  assert.equal(h.q.unacked, 0);
  assert.deepEqual(h.released, ['m1', 'm3']);
  assert.equal(h.q.consumerCount, 0);
  const b = h.consumer('b', 10);
  h.q.dispatch(0, 100);
  assert.deepEqual(b.ids(), ['m1', 'm3', 'm4']);
  assert.deepEqual(b.got.map((d) => d.redelivered), [true, true, false]);
  h.q.cancelConsumer(b.c, false);
  assert.equal(h.q.unacked, 3, 'held until settled');
  h.q.ack(h.entry(b.got[0]!.deliveryTag));
  assert.equal(h.q.unacked, 2);
});

test('purge removes ready and delayed messages, not unacked ones', () => {
  const h = harness();
  h.publish('a');
  h.publish('b');
  h.publish('c', { delayMs: 10 });
  const held = h.q.get(0)!;
  assert.equal(h.q.purge(), 2);
  assert.equal(h.q.length, 1);
  assert.equal(held.state, 1);
  assert.deepEqual(h.removed.map((r) => r[1]), ['purge', 'purge']);
  assert.equal(h.q.bytes, 1);
});

test('random operations agree with a simple model (order, counts, bytes)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  const h = harness({ maxPriority: 2, visibilityTimeoutMs: 50 });
  // Model: ready lists per level, unacked in delivery order with deadlines.
  const ready: string[][] = [[], [], []];
  let unacked: { id: string; tag: number; deadline: number; level: number }[] = [];
  const size = new Map<string, number>();
  let now = 0;
  let n = 0;
  for (let step = 0; step < 5000; step++) {
    const r = rnd.int(100);
    if (r < 40) {
      const id = `m${n++}`;
      const p = rnd.int(3);
      const body = Buffer.alloc(rnd.int(5));
      size.set(id, body.length);
      h.publish(id, { priority: p, body }, now);
      ready[p]!.push(id);
    } else if (r < 65) {
      const e = h.q.get(now);
      const lvl = [2, 1, 0].find((l) => ready[l]!.length > 0);
      if (lvl === undefined) assert.equal(e, null, `seed ${seed} step ${step}`);
      else {
        assert.equal(e?.msg.messageId, ready[lvl]!.shift(), `seed ${seed} step ${step}: get`);
        unacked.push({ id: e!.msg.messageId, tag: e!.tag, deadline: now + 50, level: lvl });
      }
    } else if (r < 85 && unacked.length > 0) {
      const i = rnd.int(unacked.length);
      const u = unacked[i]!;
      unacked.splice(i, 1);
      const e = h.entry(u.tag);
      if (rnd.int(2) === 0) {
        h.q.ack(e);
        size.delete(u.id);
      } else {
        h.q.nack(e, true);
        ready[u.level]!.unshift(u.id);
      }
    } else {
      now += rnd.int(30);
      h.q.tick(now);
      const due = unacked.filter((u) => u.deadline <= now);
      unacked = unacked.filter((u) => u.deadline > now);
      for (const lvl of [0, 1, 2]) {
        const back = due.filter((u) => u.level === lvl).map((u) => u.id);
        ready[lvl]!.unshift(...back);
      }
      for (const u of due) h.byTag.delete(u.tag);
    }
    const readyCount = ready.reduce((s, l) => s + l.length, 0);
    assert.equal(h.q.ready, readyCount, `seed ${seed} step ${step}: ready`);
    assert.equal(h.q.unacked, unacked.length, `seed ${seed} step ${step}: unacked`);
    assert.equal(h.q.bytes, [...size.values()].reduce((s, b) => s + b, 0), `seed ${seed} step ${step}: bytes`);
  }
});
