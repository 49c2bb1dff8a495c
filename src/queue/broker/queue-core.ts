/**
 * One queue's decisions, as a pure state machine: no I/O, no timers, time passed in as `now`.
 * The broker (the shell) feeds it messages, consumers, acks and ticks, and hears what happens through
 * `QueueEvents` (a delivery starts, a delivery is taken back, a message leaves for good and why).
 *
 * Structures, each O(1) per message:
 * - ready: one FIFO ring per priority level (0..maxPriority, higher served first); requeued messages
 *   go back to the front of their level, in their original order (RabbitMQ does the same).
 * - in flight: one ring of deliveries in delivery order. Every delivery of a queue has the same
 *   visibility timeout, so deadlines are in ring order and the due ones are always at the front. A
 *   settled delivery leaves a stale slot (recognised by position) that is skipped; the ring is
 *   compacted when stale slots outnumber live ones.
 * - delayed: a min-heap by due time.
 * - consumers with credit (unacked < prefetch): a ring served round robin; a consumer that runs out of
 *   credit leaves it and comes back when an ack frees credit.
 *
 * TTL: a message expires when it has been ready longer than min(per-message TTL, queue TTL), counted
 * from when it became ready (after any delay); time spent unacked does not stop the clock (a requeued
 * message keeps its expiry, as in RabbitMQ). Expired messages are removed at the head of their level
 * (when dispatching, and at a tick scheduled for the head's expiry), and a bounded sweep finds
 * per-message-TTL messages stuck behind longer-lived ones; the sweep leaves tombstones in the rings,
 * skipped at the head and compacted away when they outnumber live messages.
 */
import type { Delivery, QueueConfig } from '../types.js';
import { Deque, MinHeap } from './deque.js';

export const READY = 0;
export const UNACKED = 1;
export const DELAYED = 2;
export const GONE = 3;
export type EntryState = typeof READY | typeof UNACKED | typeof DELAYED | typeof GONE;

/** Why a message went to the dead-letter queue (the x-death-reason header). */
export type DeathReason = 'delivery-limit' | 'rejected' | 'expired' | 'maxlen';

/** Why a message left a queue: acked, purged, or one of the dead-letter reasons. */
export type RemoveReason = 'ack' | 'purge' | DeathReason;

/** A message as the broker stores it; one object shared by every queue it was routed to. Never mutated. */
export interface StoredMessage {
  /** Broker-wide sequence number; the journal's id for the message. */
  readonly seq: number;
  readonly messageId: string;
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  /** As published, 0..10; a queue with a lower maxPriority files it under its top level. */
  readonly priority: number;
  /** When the message was first published (kept through dead-lettering). */
  readonly publishedAt: number;
  /** When it entered this queue (publish or dead-letter); delays and TTLs count from here. */
  readonly enqueuedAt: number;
  /** Per-message TTL, -1 = none. */
  readonly ttlMs: number;
  /** Held this long after enqueuedAt before it is ready. */
  readonly delayMs: number;
}

export type DeliveryCallback = (delivery: Delivery) => void;

export class Consumer {
  /** Deliveries this consumer holds unacked. */
  unacked = 0;
  /** In the queue's ring of consumers with credit. */
  active = false;
  cancelled = false;

  constructor(
    readonly tag: string,
    readonly prefetch: number,
    readonly onDelivery: DeliveryCallback,
  ) {}
}

/** One message in one queue. */
export class Entry {
  state: EntryState;
  deliveryCount: number;
  redelivered: boolean;
  /** Delivery tag while UNACKED (the broker assigns it in QueueEvents.delivering). */
  tag = 0;
  /** Visibility deadline while UNACKED. */
  deadline = 0;
  /** Holder while UNACKED; null for get(). */
  consumer: Consumer | null = null;
  /** Absolute index of this delivery's slot in the in-flight ring (older slots of this entry are stale). */
  ringPos = -1;

  constructor(
    readonly queue: QueueCore,
    readonly msg: StoredMessage,
    readonly level: number,
    readonly availableAt: number,
    readonly expiresAt: number,
    deliveryCount: number,
    redelivered: boolean,
    state: EntryState,
  ) {
    this.deliveryCount = deliveryCount;
    this.redelivered = redelivered;
    this.state = state;
  }
}

export interface QueueEvents {
  /** A delivery starts: `entry` is UNACKED, deliveryCount already counts it. consumer null = get(). */
  delivering(entry: Entry, consumer: Consumer | null): void;
  /** A delivery ended without its holder settling it (visibility timeout, cancel, queue delete): forget its tag. */
  released(entry: Entry): void;
  /** The message left the queue for good. For DeathReasons the broker dead-letters it or drops it. */
  removed(entry: Entry, reason: RemoveReason): void;
}

export interface QueueCounters {
  /** Messages that entered the queue (publishes and dead-letters into it). */
  published: number;
  /** Deliveries, to consumers and get(), first or not. */
  delivered: number;
  acked: number;
  /** Deliveries with redelivered true. */
  redelivered: number;
  /** Messages moved to the dead-letter queue. */
  deadLettered: number;
  /** Messages discarded (expired, rejected, over length without a dead-letter queue, or its target missing). */
  dropped: number;
}

/** admit() answers. */
export const ADMIT_OK = 0;
export const ADMIT_DROP_HEAD = 1;
export const ADMIT_REFUSE = 2;
export type Admit = typeof ADMIT_OK | typeof ADMIT_DROP_HEAD | typeof ADMIT_REFUSE;

/** Tombstones tolerated before the ready rings are compacted, at least. */
const MIN_TOMBSTONES_BEFORE_COMPACT = 1024;

function delayedBefore(a: Entry, b: Entry): boolean {
  return a.availableAt < b.availableAt || (a.availableAt === b.availableAt && a.msg.seq < b.msg.seq);
}

export interface QueueCoreOptions {
  /** Sweep period in ms for per-message TTLs not at the head. */
  ttlSweepIntervalMs: number;
  /** Ready messages looked at per sweep. */
  ttlSweepMaxMessages: number;
}

export class QueueCore {
  readonly name: string;
  readonly config: Readonly<QueueConfig>;
  readonly counters: QueueCounters = { published: 0, delivered: 0, acked: 0, redelivered: 0, deadLettered: 0, dropped: 0 };
  /** Set by drain(): nothing is stored or delivered any more. */
  deleted = false;

  private readonly levels: Deque<Entry>[] = [];
  private readonly sweepPos: number[] = [];
  private readonly inflight = new Deque<Entry>(64);
  private readonly delayed = new MinHeap<Entry>(delayedBefore);
  private readonly consumers: Consumer[] = [];
  private readonly active = new Deque<Consumer>();
  private readyCount = 0;
  private readyBytes = 0;
  private unackedCount = 0;
  private heldBytes = 0;
  private tombstones = 0;
  /** Ready messages that carry their own TTL (only they need the sweep). */
  private msgTtlReady = 0;
  private nextSweepAt = 0;

  constructor(
    name: string,
    config: QueueConfig,
    private readonly events: QueueEvents,
    private readonly options: QueueCoreOptions,
  ) {
    this.name = name;
    this.config = Object.freeze({ ...config });
    for (let i = 0; i <= config.maxPriority; i++) {
      this.levels.push(new Deque<Entry>(i === 0 ? 64 : 8));
      this.sweepPos.push(0);
    }
  }

  get ready(): number {
    return this.readyCount;
  }

  get unacked(): number {
    return this.unackedCount;
  }

  get delayedCount(): number {
    return this.delayed.length;
  }

  /** Body bytes of every message held (ready, unacked, delayed). */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Messages held: ready + unacked + delayed (what maxLength bounds). */
  get length(): number {
    return this.readyCount + this.unackedCount + this.delayed.length;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  /** Whether a message of `bytes` fits, fits after dropping ready heads (drop-head), or must be refused. */
  admit(bytes: number): Admit {
    const c = this.config;
    if (this.length + 1 <= c.maxLength && this.heldBytes + bytes <= c.maxLengthBytes) return ADMIT_OK;
    if (c.overflow === 'reject-publish') return ADMIT_REFUSE;
    // Dropping every ready message is all drop-head can do; unacked and delayed ones stay.
    if (this.length - this.readyCount + 1 > c.maxLength || this.heldBytes - this.readyBytes + bytes > c.maxLengthBytes) return ADMIT_REFUSE;
    return ADMIT_DROP_HEAD;
  }

  /** drop-head: removes the oldest ready messages ('maxlen') until `bytes` more fit. False if they cannot. */
  makeRoom(bytes: number): boolean {
    const c = this.config;
    while (this.length + 1 > c.maxLength || this.heldBytes + bytes > c.maxLengthBytes) {
      const e = this.takeOldestReady();
      if (e === null) return false;
      this.leaveReady(e);
      this.remove(e, 'maxlen');
    }
    return true;
  }

  /** Stores a new message (after admit/makeRoom). */
  enqueue(msg: StoredMessage, now: number): Entry {
    this.counters.published++;
    return this.store(msg, now, 0, false);
  }

  /** Stores a message recovered from the journal: not counted as published; delivered before = redelivered. */
  restore(msg: StoredMessage, now: number, deliveryCount: number): Entry {
    return this.store(msg, now, deliveryCount, deliveryCount > 0);
  }

  private store(msg: StoredMessage, now: number, deliveryCount: number, redelivered: boolean): Entry {
    const level = msg.priority < this.levels.length ? msg.priority : this.levels.length - 1;
    const availableAt = msg.enqueuedAt + msg.delayMs;
    const qTtl = this.config.messageTtlMs;
    const ttl = msg.ttlMs < 0 ? qTtl : qTtl < 0 ? msg.ttlMs : Math.min(msg.ttlMs, qTtl);
    const expiresAt = ttl >= 0 ? availableAt + ttl : Infinity;
    this.heldBytes += msg.body.length;
    // Only a delay makes a message wait: a clock that stepped back must not hold undelayed ones.
    if (msg.delayMs > 0 && availableAt > now) {
      const e = new Entry(this, msg, level, availableAt, expiresAt, deliveryCount, redelivered, DELAYED);
      this.delayed.push(e);
      return e;
    }
    const e = new Entry(this, msg, level, availableAt, expiresAt, deliveryCount, redelivered, READY);
    this.levels[level]!.push(e);
    this.enterReady(e);
    return e;
  }

  addConsumer(c: Consumer): void {
    this.consumers.push(c);
    c.active = true;
    this.active.push(c);
  }

  /**
   * Stops deliveries to `c`. requeue true: its unacked deliveries go back to the front of the queue
   * now (redelivered); false: they stay held until acked, nacked or their visibility timeout.
   */
  cancelConsumer(c: Consumer, requeue: boolean): void {
    if (c.cancelled) return;
    c.cancelled = true;
    const i = this.consumers.indexOf(c);
    if (i >= 0) this.consumers.splice(i, 1);
    if (!requeue || c.unacked === 0) return;
    const held: Entry[] = [];
    const ring = this.inflight;
    for (let pos = ring.firstIndex; pos < ring.endIndex; pos++) {
      const e = ring.atAbsolute(pos)!;
      if (e.state === UNACKED && e.ringPos === pos && e.consumer === c) held.push(e);
    }
    for (const e of held) {
      this.endDelivery(e);
      this.events.released(e);
    }
    this.requeue(held);
    this.trimInflight();
  }

  /**
   * Delivers ready messages to consumers with credit, round robin, at most `limit`. Returns how many.
   * `events.delivering` runs for each, synchronously; it may call back into the queue (ack, cancel).
   */
  dispatch(now: number, limit: number): number {
    let n = 0;
    const active = this.active;
    while (n < limit && !this.deleted) {
      let c = active.peek();
      while (c !== undefined && (c.cancelled || c.unacked >= c.prefetch)) {
        active.shift();
        c.active = false;
        c = active.peek();
      }
      if (c === undefined) break;
      const e = this.takeReady(now);
      if (e === null) break;
      active.shift();
      c.active = false;
      this.startDelivery(e, c, now);
      n++;
      if (!c.active && !c.cancelled && c.unacked < c.prefetch) {
        c.active = true;
        active.push(c);
      }
    }
    return n;
  }

  /** True when dispatch() could deliver more right now. */
  canDispatch(): boolean {
    if (this.readyCount === 0 || this.deleted) return false;
    for (const c of this.active) if (!c.cancelled && c.unacked < c.prefetch) return true;
    return false;
  }

  /** Pull one ready message (basic.get): it is unacked, held by no consumer, until settled or timed out. */
  get(now: number): Entry | null {
    const e = this.takeReady(now);
    if (e !== null) this.startDelivery(e, null, now);
    return e;
  }

  /** Settles an UNACKED entry of this queue: it leaves for good. */
  ack(e: Entry): void {
    this.endDelivery(e);
    this.counters.acked++;
    this.remove(e, 'ack');
    this.trimInflight();
  }

  /** requeue true: back to the front of the queue (the next delivery counts toward maxDeliveries); false: 'rejected'. */
  nack(e: Entry, requeue: boolean): void {
    this.endDelivery(e);
    if (requeue) this.requeue([e]);
    else this.remove(e, 'rejected');
    this.trimInflight();
  }

  /** Visibility timeouts, due delayed messages, expired heads, the TTL sweep. */
  tick(now: number): void {
    if (this.deleted) return;
    const ring = this.inflight;
    let due: Entry[] | undefined;
    while (ring.length > 0) {
      const e = ring.peek()!;
      if (e.state !== UNACKED || e.ringPos !== ring.firstIndex) {
        ring.shift();
        continue;
      }
      if (e.deadline > now) break;
      ring.shift();
      this.endDelivery(e);
      this.events.released(e);
      (due ??= []).push(e);
    }
    if (due !== undefined) this.requeue(due);
    while (this.delayed.length > 0 && this.delayed.peek()!.availableAt <= now) {
      const e = this.delayed.pop()!;
      e.state = READY;
      this.levels[e.level]!.push(e);
      this.enterReady(e);
    }
    this.expireHeads(now);
    if (this.msgTtlReady > 0 && now >= this.nextSweepAt) this.sweep(now);
  }

  /** When tick() next has something to do (Infinity = nothing scheduled). */
  nextWakeAt(): number {
    let at = Infinity;
    const h = this.inflight.peek();
    if (h !== undefined) at = h.deadline;
    const d = this.delayed.peek();
    if (d !== undefined && d.availableAt < at) at = d.availableAt;
    for (const level of this.levels) {
      const e = level.peek();
      // Expired means ready for longer than the TTL: strictly after expiresAt.
      if (e !== undefined && e.state === READY && e.expiresAt + 1 < at) at = e.expiresAt + 1;
    }
    if (this.msgTtlReady > 0 && this.nextSweepAt < at) at = this.nextSweepAt;
    return at;
  }

  /** Removes every ready and delayed message ('purge'); unacked ones stay. Returns how many. */
  purge(): number {
    let n = 0;
    for (const level of this.levels) {
      for (const e of level) {
        if (e.state !== READY) continue;
        this.leaveReady(e);
        this.remove(e, 'purge');
        n++;
      }
      level.clear();
    }
    for (const e of this.delayed.drain()) {
      this.remove(e, 'purge');
      n++;
    }
    this.tombstones = 0;
    this.sweepPos.fill(0);
    return n;
  }

  /** The queue is being deleted: every message is dropped without events except `released` for deliveries in flight. */
  drain(): void {
    this.deleted = true;
    for (const c of this.consumers) c.cancelled = true;
    this.consumers.length = 0;
    this.active.clear();
    for (const level of this.levels) {
      for (const e of level) e.state = GONE;
      level.clear();
    }
    for (const e of this.delayed.drain()) e.state = GONE;
    const ring = this.inflight;
    for (let pos = ring.firstIndex; pos < ring.endIndex; pos++) {
      const e = ring.atAbsolute(pos)!;
      if (e.state === UNACKED && e.ringPos === pos) {
        e.state = GONE;
        this.events.released(e);
      }
    }
    ring.clear();
    this.readyCount = this.readyBytes = this.unackedCount = this.heldBytes = this.tombstones = this.msgTtlReady = 0;
  }

  /** Every message held, for a journal snapshot: [entry, deliveryCount] in no particular order. */
  *entries(): IterableIterator<Entry> {
    for (const level of this.levels) for (const e of level) if (e.state === READY) yield e;
    for (const e of this.delayed.values()) yield e;
    const ring = this.inflight;
    for (let pos = ring.firstIndex; pos < ring.endIndex; pos++) {
      const e = ring.atAbsolute(pos)!;
      if (e.state === UNACKED && e.ringPos === pos) yield e;
    }
  }

  // -- internals -------------------------------------------------------------------------------

  private enterReady(e: Entry): void {
    this.readyCount++;
    this.readyBytes += e.msg.body.length;
    if (e.msg.ttlMs >= 0) this.msgTtlReady++;
  }

  private leaveReady(e: Entry): void {
    this.readyCount--;
    this.readyBytes -= e.msg.body.length;
    if (e.msg.ttlMs >= 0) this.msgTtlReady--;
  }

  /** `e` is detached from every structure and its counts adjusted: it is gone. */
  private remove(e: Entry, reason: RemoveReason): void {
    e.state = GONE;
    this.heldBytes -= e.msg.body.length;
    this.events.removed(e, reason);
  }

  /** The next deliverable ready message, removing expired and over-delivered ones met at the head. */
  private takeReady(now: number): Entry | null {
    const maxDeliveries = this.config.maxDeliveries;
    for (let l = this.levels.length - 1; l >= 0; l--) {
      const ring = this.levels[l]!;
      while (ring.length > 0) {
        const e = ring.shift()!;
        if (e.state !== READY) {
          this.tombstones--;
          continue;
        }
        this.leaveReady(e);
        if (e.expiresAt < now) this.remove(e, 'expired');
        else if (maxDeliveries > 0 && e.deliveryCount >= maxDeliveries) this.remove(e, 'delivery-limit');
        else return e;
      }
    }
    return null;
  }

  /** The ready message published first (smallest seq among the level heads), taken off its ring. */
  private takeOldestReady(): Entry | null {
    let best: Deque<Entry> | undefined;
    for (const ring of this.levels) {
      while (ring.length > 0 && ring.peek()!.state !== READY) {
        ring.shift();
        this.tombstones--;
      }
      const e = ring.peek();
      if (e !== undefined && (best === undefined || e.msg.seq < best.peek()!.msg.seq)) best = ring;
    }
    return best === undefined ? null : best.shift()!;
  }

  private startDelivery(e: Entry, c: Consumer | null, now: number): void {
    e.state = UNACKED;
    e.deliveryCount++;
    e.consumer = c;
    e.deadline = now + this.config.visibilityTimeoutMs;
    e.ringPos = this.inflight.endIndex;
    this.inflight.push(e);
    this.unackedCount++;
    this.counters.delivered++;
    if (e.redelivered) this.counters.redelivered++;
    if (c !== null) c.unacked++;
    this.events.delivering(e, c);
  }

  /** An UNACKED entry stops being in flight (its ring slot goes stale); its consumer regains credit. */
  private endDelivery(e: Entry): void {
    this.unackedCount--;
    e.state = READY; // provisional: the caller requeues or removes it
    const c = e.consumer;
    if (c !== null) {
      e.consumer = null;
      c.unacked--;
      if (!c.active && !c.cancelled && c.unacked < c.prefetch) {
        c.active = true;
        this.active.push(c);
      }
    }
  }

  /** Puts entries back at the front of their levels, keeping their order. */
  private requeue(list: Entry[]): void {
    for (let i = list.length - 1; i >= 0; i--) {
      const e = list[i]!;
      e.state = READY;
      e.redelivered = true;
      this.levels[e.level]!.unshift(e);
      this.enterReady(e);
    }
  }

  private trimInflight(): void {
    const ring = this.inflight;
    while (ring.length > 0) {
      const e = ring.peek()!;
      if (e.state === UNACKED && e.ringPos === ring.firstIndex) break;
      ring.shift();
    }
    if (ring.length > 2 * this.unackedCount + MIN_TOMBSTONES_BEFORE_COMPACT) {
      const live: Entry[] = [];
      for (let pos = ring.firstIndex; pos < ring.endIndex; pos++) {
        const e = ring.atAbsolute(pos)!;
        if (e.state === UNACKED && e.ringPos === pos) live.push(e);
      }
      ring.clear();
      for (const e of live) {
        e.ringPos = ring.endIndex;
        ring.push(e);
      }
    }
  }

  private expireHeads(now: number): void {
    for (const ring of this.levels) {
      while (ring.length > 0) {
        const e = ring.peek()!;
        if (e.state !== READY) {
          ring.shift();
          this.tombstones--;
          continue;
        }
        if (!(e.expiresAt < now)) break;
        ring.shift();
        this.leaveReady(e);
        this.remove(e, 'expired');
      }
    }
  }

  /** Looks at up to ttlSweepMaxMessages ready messages from where the last sweep stopped; expires due ones in place. */
  private sweep(now: number): void {
    this.nextSweepAt = now + this.options.ttlSweepIntervalMs;
    let budget = this.options.ttlSweepMaxMessages;
    for (let l = 0; l < this.levels.length && budget > 0; l++) {
      const ring = this.levels[l]!;
      let pos = Math.max(this.sweepPos[l]!, ring.firstIndex);
      if (pos >= ring.endIndex) pos = ring.firstIndex;
      while (budget > 0 && pos < ring.endIndex) {
        const e = ring.atAbsolute(pos)!;
        pos++;
        budget--;
        if (e.state === READY && e.expiresAt < now) {
          this.leaveReady(e);
          this.tombstones++;
          this.remove(e, 'expired');
        }
      }
      this.sweepPos[l] = pos;
    }
    if (this.tombstones > Math.max(MIN_TOMBSTONES_BEFORE_COMPACT, this.readyCount)) {
      for (let l = 0; l < this.levels.length; l++) {
        this.levels[l]!.filter((e) => e.state === READY);
        this.sweepPos[l] = this.levels[l]!.firstIndex;
      }
      this.tombstones = 0;
    }
  }
}
