/**
 * Idempotent producers, per partition (Kafka's ProducerStateManager, reduced): for each producer id
 * the current epoch and the last few batches written (first and last sequence, offsets), so that
 *
 * - a retried batch (same id, epoch and sequences as one of them) is answered with the original
 *   offsets and not written again;
 * - a batch whose first sequence is not the next one expected fails ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE
 *   (a lost batch in between: the producer must not skip ahead);
 * - a batch from an older epoch fails ARCHLAB_QUEUE_PRODUCER_FENCED; a newer epoch starts at sequence 0.
 *
 * A producer this partition has never seen must start at sequence 0. Once the bound has made the map
 * forget a producer, an unknown one is accepted at any sequence (it may be a forgotten one going on),
 * as Kafka did before UNKNOWN_PRODUCER_ID: duplicates are caught while its state is held.
 * Sequences wrap from 2^31-1 to 0 like Kafka's.
 *
 * Pure and synchronous. The partition keeps one map it checks appends against and one it updates
 * only after bytes are written; snapshots serialise the latter next to the segments.
 */
import { QueueError } from '../errors.js';

/** Kafka keeps the last 5 batches per producer (max.in.flight.requests.per.connection for idempotence). */
export const PRODUCER_BATCHES_KEPT = 5;

const SEQ_MOD = 2147483648;

export interface ProducerBatchMeta {
  firstSeq: number;
  lastSeq: number;
  baseOffset: number;
  lastOffset: number;
}

interface ProducerEntry {
  epoch: number;
  /** Oldest first, at most PRODUCER_BATCHES_KEPT. */
  batches: ProducerBatchMeta[];
}

export type SequenceCheck = { duplicate: false } | { duplicate: true; baseOffset: number; lastOffset: number };

export interface ProducerSnapshot {
  version: 1;
  /** The state covers every batch below this offset. */
  offset: number;
  producers: [producerId: number, epoch: number, batches: [number, number, number, number][]][];
  /** The bound has made the map forget a producer (unknown ones may then start anywhere). */
  evicted?: boolean;
}

/** Last sequence of a batch of `count` records starting at `first`. */
export function lastSequence(first: number, count: number): number {
  return (first + count - 1) % SEQ_MOD;
}

export class ProducerStateMap {
  /** Insertion order is recency: a written producer moves to the end; the first is evicted. */
  private readonly entries = new Map<number, ProducerEntry>();
  /** Some producer was forgotten to keep the bound. */
  private evicted = false;

  /** @param maxProducers bound on producer ids held; the least recently written is forgotten past it. */
  constructor(readonly maxProducers: number) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Decides an idempotent batch: a duplicate (with its original offsets) or a new append. Throws
   * PRODUCER_FENCED or OUT_OF_ORDER_SEQUENCE. Does not change the state.
   */
  check(producerId: number, epoch: number, firstSeq: number, count: number): SequenceCheck {
    const e = this.entries.get(producerId);
    if (e === undefined) {
      if (firstSeq !== 0 && !this.evicted) throw outOfOrder(producerId, 0, firstSeq);
      return { duplicate: false };
    }
    if (epoch < e.epoch) {
      throw new QueueError('ARCHLAB_QUEUE_PRODUCER_FENCED', `producer ${producerId} epoch ${epoch} is fenced by epoch ${e.epoch}`, {
        details: { producerId, epoch, currentEpoch: e.epoch },
      });
    }
    if (epoch > e.epoch) {
      if (firstSeq !== 0) throw outOfOrder(producerId, 0, firstSeq);
      return { duplicate: false };
    }
    const lastSeq = lastSequence(firstSeq, count);
    for (const b of e.batches) {
      if (b.firstSeq === firstSeq && b.lastSeq === lastSeq) return { duplicate: true, baseOffset: b.baseOffset, lastOffset: b.lastOffset };
    }
    const newest = e.batches[e.batches.length - 1];
    if (newest === undefined) return { duplicate: false };
    const expected = (newest.lastSeq + 1) % SEQ_MOD;
    if (firstSeq !== expected) throw outOfOrder(producerId, expected, firstSeq);
    return { duplicate: false };
  }

  /** Records a written batch (never throws: recovery replays what is on disk). */
  record(producerId: number, epoch: number, firstSeq: number, count: number, baseOffset: number, lastOffset: number): void {
    let e = this.entries.get(producerId);
    if (e !== undefined) this.entries.delete(producerId);
    if (e === undefined || epoch > e.epoch) e = { epoch, batches: [] };
    else if (epoch < e.epoch) {
      this.entries.set(producerId, e);
      return;
    }
    e.batches.push({ firstSeq, lastSeq: lastSequence(firstSeq, count), baseOffset, lastOffset });
    if (e.batches.length > PRODUCER_BATCHES_KEPT) e.batches.shift();
    this.entries.set(producerId, e);
    if (this.entries.size > this.maxProducers) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
      this.evicted = true;
    }
  }

  clone(): ProducerStateMap {
    const c = new ProducerStateMap(this.maxProducers);
    for (const [id, e] of this.entries) c.entries.set(id, { epoch: e.epoch, batches: e.batches.map((b) => ({ ...b })) });
    c.evicted = this.evicted;
    return c;
  }

  toSnapshot(offset: number): ProducerSnapshot {
    const producers: ProducerSnapshot['producers'] = [];
    for (const [id, e] of this.entries) producers.push([id, e.epoch, e.batches.map((b) => [b.firstSeq, b.lastSeq, b.baseOffset, b.lastOffset])]);
    return { version: 1, offset, producers, evicted: this.evicted };
  }

  /** Rebuilds from a snapshot; throws ARCHLAB_QUEUE_CORRUPT when it is not one. */
  static fromSnapshot(s: unknown, maxProducers: number): ProducerStateMap {
    const bad = (): QueueError => new QueueError('ARCHLAB_QUEUE_CORRUPT', 'producer state snapshot is malformed');
    const snap = s as ProducerSnapshot;
    if (typeof snap !== 'object' || snap === null || snap.version !== 1 || !Array.isArray(snap.producers)) throw bad();
    const m = new ProducerStateMap(maxProducers);
    for (const p of snap.producers) {
      if (!Array.isArray(p) || typeof p[0] !== 'number' || typeof p[1] !== 'number' || !Array.isArray(p[2])) throw bad();
      const batches = p[2].map((b) => {
        if (!Array.isArray(b) || b.length !== 4 || !b.every((x) => Number.isSafeInteger(x))) throw bad();
        return { firstSeq: b[0], lastSeq: b[1], baseOffset: b[2], lastOffset: b[3] };
      });
      m.entries.set(p[0], { epoch: p[1], batches });
    }
    m.evicted = snap.evicted === true;
    return m;
  }
}

function outOfOrder(producerId: number, expected: number, got: number): QueueError {
  return new QueueError('ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE', `producer ${producerId}: expected sequence ${expected}, got ${got}`, {
    details: { producerId, expected, got },
  });
}
