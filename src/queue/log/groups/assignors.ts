/**
 * Partition assignors: pure functions from (members with their subscriptions, partitions per topic) to
 * each member's partitions. The coordinator runs one when a rebalance completes (the server decides,
 * as in Kafka's KIP-848 protocol, rather than a client leader as in the classic one).
 *
 * - range: per topic, the subscribed members sorted by id take contiguous runs; the first
 *   `partitions % members` take one more (Kafka's RangeAssignor). Members at the front of the order
 *   carry the extra partition of every topic, so several topics stack the imbalance.
 * - round robin: every partition of every subscribed topic, sorted by (topic, partition), dealt to the
 *   members sorted by id in turn, skipping a member not subscribed to the partition's topic (Kafka's
 *   RoundRobinAssignor).
 * - sticky: each member keeps what it `owned` while still valid; partitions without an owner go to
 *   the eligible member holding fewest; then partitions move, one at a time, from a member to an
 *   eligible member holding at least two fewer, until none can. With equal subscriptions counts end
 *   within 1 of each other and exactly as few partitions move as a balanced result requires; with
 *   different subscriptions no single move can narrow a gap of 2 or more.
 *
 * Every result has an entry for every member (possibly empty), lists sorted by (topic, partition),
 * and is a function of its input alone (no iteration-order or randomness leaks in).
 */
import { QueueError } from '../../errors.js';
import type { TopicPartition } from '../../types.js';

export interface AssignorMember {
  memberId: string;
  /** Topics the member subscribes to. */
  topics: readonly string[];
  /** Partitions the member held in the previous generation. Only `assignSticky` reads it. */
  owned?: readonly TopicPartition[];
}

/** Partitions per topic. A topic missing here (or with 0) has nothing to assign. */
export type PartitionCounts = ReadonlyMap<string, number> | Readonly<Record<string, number>>;

/** Member id -> its partitions, sorted by (topic, partition). */
export type Assignment = Map<string, TopicPartition[]>;

export type AssignorFn = (members: readonly AssignorMember[], partitions: PartitionCounts) => Assignment;

function compareTp(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function countOf(partitions: PartitionCounts, topic: string): number {
  const n = partitions instanceof Map ? partitions.get(topic) : (partitions as Readonly<Record<string, number>>)[topic];
  if (n === undefined) return 0;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `partition count of topic "${topic}" must be a non-negative integer, got ${n}`, { details: { topic, partitions: n } });
  }
  return n;
}

/** Members sorted by id, refusing duplicates; the sorted union of their topics. */
function prepare(members: readonly AssignorMember[]): { sorted: AssignorMember[]; topics: string[] } {
  const sorted = [...members].sort((a, b) => compareIds(a.memberId, b.memberId));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.memberId === sorted[i - 1]!.memberId) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `member id "${sorted[i]!.memberId}" appears twice`, { details: { memberId: sorted[i]!.memberId } });
    }
  }
  const topics = new Set<string>();
  for (const m of sorted) for (const t of m.topics) topics.add(t);
  return { sorted, topics: [...topics].sort(compareIds) };
}

function emptyAssignment(sorted: readonly AssignorMember[]): Assignment {
  const out: Assignment = new Map();
  for (const m of sorted) out.set(m.memberId, []);
  return out;
}

function finish(out: Assignment): Assignment {
  for (const list of out.values()) list.sort(compareTp);
  return out;
}

/** Kafka's RangeAssignor: per topic, contiguous runs to the subscribed members sorted by id. */
export function assignRange(members: readonly AssignorMember[], partitions: PartitionCounts): Assignment {
  const { sorted, topics } = prepare(members);
  const out = emptyAssignment(sorted);
  for (const topic of topics) {
    const n = countOf(partitions, topic);
    const subs = sorted.filter((m) => m.topics.includes(topic));
    const per = Math.floor(n / subs.length);
    const extra = n % subs.length;
    subs.forEach((m, i) => {
      const start = i * per + Math.min(i, extra);
      const len = per + (i < extra ? 1 : 0);
      const list = out.get(m.memberId)!;
      for (let p = start; p < start + len; p++) list.push({ topic, partition: p });
    });
  }
  return finish(out);
}

/** Kafka's RoundRobinAssignor: all partitions in (topic, partition) order, dealt to members in id order. */
export function assignRoundRobin(members: readonly AssignorMember[], partitions: PartitionCounts): Assignment {
  const { sorted, topics } = prepare(members);
  const out = emptyAssignment(sorted);
  const subscribed = sorted.map((m) => new Set(m.topics));
  let cursor = 0;
  for (const topic of topics) {
    const n = countOf(partitions, topic);
    for (let p = 0; p < n; p++) {
      // Some member subscribes to every topic in the union, so this finds one within a full turn.
      while (!subscribed[cursor]!.has(topic)) cursor = (cursor + 1) % sorted.length;
      out.get(sorted[cursor]!.memberId)!.push({ topic, partition: p });
      cursor = (cursor + 1) % sorted.length;
    }
  }
  return finish(out);
}

/**
 * Sticky: keep what each member owned (where the partition still exists, the member still subscribes
 * to its topic and no member earlier in id order claimed it too), place the rest on the least loaded
 * eligible member (most constrained partitions first), then balance by single moves.
 */
export function assignSticky(members: readonly AssignorMember[], partitions: PartitionCounts): Assignment {
  const { sorted, topics } = prepare(members);
  if (sorted.length === 0) return new Map();
  // Partitions are numbered in (topic, partition) order; `all[i]` is partition number i.
  const all: TopicPartition[] = [];
  const firstIndex = new Map<string, number>();
  for (const topic of topics) {
    firstIndex.set(topic, all.length);
    const n = countOf(partitions, topic);
    for (let p = 0; p < n; p++) all.push({ topic, partition: p });
  }
  const indexOf = (tp: TopicPartition): number | undefined => {
    const first = firstIndex.get(tp.topic);
    if (first === undefined || !Number.isSafeInteger(tp.partition) || tp.partition < 0 || tp.partition >= countOf(partitions, tp.topic)) return undefined;
    return first + tp.partition;
  };

  const m = sorted.length;
  const held: Set<number>[] = sorted.map(() => new Set<number>());
  const owner = new Int32Array(all.length).fill(-1);
  // Members (by position in `sorted`) subscribed to each topic, in id order.
  const eligible = new Map<string, number[]>();
  for (const topic of topics) eligible.set(topic, []);
  sorted.forEach((member, i) => {
    for (const t of new Set(member.topics)) eligible.get(t)!.push(i);
  });

  // 1. Keep valid previous ownership.
  sorted.forEach((member, i) => {
    const subs = new Set(member.topics);
    for (const tp of member.owned ?? []) {
      const idx = indexOf(tp);
      if (idx === undefined || owner[idx] !== -1 || !subs.has(tp.topic)) continue;
      owner[idx] = i;
      held[i]!.add(idx);
    }
  });

  const leastLoaded = (candidates: readonly number[], except: number): number => {
    let best = -1;
    for (const c of candidates) {
      if (c !== except && (best === -1 || held[c]!.size < held[best]!.size)) best = c;
    }
    return best;
  };

  // 2. Place partitions nobody keeps, the ones fewest members can take first (Kafka's order).
  const orphans: number[] = [];
  for (let i = 0; i < all.length; i++) if (owner[i] === -1) orphans.push(i);
  orphans.sort((a, b) => eligible.get(all[a]!.topic)!.length - eligible.get(all[b]!.topic)!.length || a - b);
  for (const idx of orphans) {
    const to = leastLoaded(eligible.get(all[idx]!.topic)!, -1);
    owner[idx] = to;
    held[to]!.add(idx);
  }

  // 3. Balance: move one partition at a time from the most loaded member that can give one to its
  // least loaded eligible member, while that narrows a gap of at least 2. Each move lowers the sum
  // of squared counts by at least 2, so the loop ends.
  const order = sorted.map((_, i) => i);
  for (;;) {
    order.sort((a, b) => held[b]!.size - held[a]!.size || a - b);
    const minCount = held[order[m - 1]!]!.size;
    let moved = false;
    for (const from of order) {
      const size = held[from]!.size;
      if (size < minCount + 2) break;
      // Highest-numbered partitions first, so the result does not depend on Set insertion order.
      const mine = [...held[from]!].sort((a, b) => b - a);
      for (const idx of mine) {
        const to = leastLoaded(eligible.get(all[idx]!.topic)!, from);
        if (to === -1 || held[to]!.size > size - 2) continue;
        held[from]!.delete(idx);
        held[to]!.add(idx);
        owner[idx] = to;
        moved = true;
        break;
      }
      if (moved) break;
    }
    if (!moved) break;
  }

  const out = emptyAssignment(sorted);
  sorted.forEach((member, i) => {
    const list = out.get(member.memberId)!;
    for (const idx of [...held[i]!].sort((a, b) => a - b)) list.push({ ...all[idx]! });
  });
  return out;
}
