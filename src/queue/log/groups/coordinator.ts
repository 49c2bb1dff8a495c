/**
 * The group coordinator (Kafka's GroupCoordinator): the shell around the per-group state machines of
 * state.ts. It validates requests, turns join tickets into promises, keeps one timer per group for
 * the group's next deadline, stores committed offsets through store.ts, and expires the offsets of
 * groups left empty for `offsetsRetentionMs`.
 *
 * Timers are lazy: a heartbeat only pushes a member's deadline later, so it never reschedules; the
 * group's timer fires at the old deadline, finds nothing due and sets itself for the new one. Only a
 * change that brings a deadline earlier (a join, a leave, a rebalance starting) reschedules.
 *
 * The Log (src/queue/log) owns a coordinator and delegates LogApi's group methods to it; it calls
 * `topicChanged(topic)` after deleting a topic or adding partitions.
 */
import type { Clock, TimerHandle } from '../../../core/clock.js';
import type { Logger } from '../../../core/log.js';
import type { Random } from '../../../core/random.js';
import { QueueError, checkName, isQueueError } from '../../errors.js';
import type { Assignor, GroupDescription, HeartbeatResult, JoinGroupRequest, JoinGroupResult, OffsetCommit, TopicPartition } from '../../types.js';
import { ASSIGNORS, DEFAULT_ASSIGNOR, Group, type JoinTicket, type MemberJoin, type Settlement } from './state.js';
import { OffsetStore, type OffsetStoreStats } from './store.js';

export interface GroupCoordinatorOptions {
  /** Directory of the committed-offsets log (created if missing); the coordinator's alone. */
  dataDir: string;
  clock: Clock;
  /** Member ids are drawn from here. */
  random: Random;
  /** Partitions of a topic; throws QueueError ARCHLAB_QUEUE_UNKNOWN_TOPIC for a topic that does not exist. */
  partitionsOf(topic: string): number;
  /** One past the last offset of a partition (for lag). */
  highWatermark(topic: string, partition: number): number;
  /** fdatasync each batch of commits before resolving them (group commit). Default true. */
  fsync?: boolean;
  /** Most groups known (with members or committed offsets); a new one past it gets ARCHLAB_QUEUE_LIMIT. Default 10,000. */
  maxGroups?: number;
  /** Most members of one group; a new member past it gets ARCHLAB_QUEUE_LIMIT. Default 1,000. */
  maxMembersPerGroup?: number;
  /** Most joinGroup calls waiting for their rebalance, over all groups; past it ARCHLAB_QUEUE_LIMIT. Default 10,000. */
  maxPendingJoins?: number;
  /**
   * A group starting from empty waits this long (ms) for more members before its first rebalance
   * completes, extended by the same for each member that joins meanwhile, up to the rebalance
   * timeout (Kafka's group.initial.rebalance.delay.ms, whose default is 3 s). Default 0.
   */
  initialRebalanceDelayMs?: number;
  /** Smallest sessionTimeoutMs (and rebalanceTimeoutMs) a member may ask for, ms. Default 100. */
  minSessionTimeoutMs?: number;
  /** Largest sessionTimeoutMs (and rebalanceTimeoutMs) a member may ask for, ms. Default 1,800,000 (30 min, as Kafka). */
  maxSessionTimeoutMs?: number;
  /** Largest metadata string of one committed offset, in UTF-8 bytes. Default 4096 (Kafka's offset.metadata.max.bytes). */
  maxMetadataBytes?: number;
  /** Offsets of a group with no members are deleted this long (ms) after its last commit or its last member left, whichever is later; -1 keeps them forever. Default 7 days. */
  offsetsRetentionMs?: number;
  /** How often (ms) expired offsets are looked for. Default 600,000 (10 min). */
  offsetsRetentionCheckIntervalMs?: number;
  /** The offsets log is compacted once past this many bytes and twice its live size. Default 4 MiB. */
  compactMinBytes?: number;
  logger?: Logger;
}

export interface GroupCoordinatorStats {
  /** Groups known (with members or committed offsets). */
  groups: number;
  /** Members over all groups. */
  members: number;
  /** joinGroup calls waiting for a rebalance. */
  pendingJoins: number;
  /** Rebalances completed since open. */
  rebalances: number;
  /** commitOffsets calls stored since open. */
  commits: number;
  offsetStore: OffsetStoreStats;
}

export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_GROUPS = 10_000;
export const DEFAULT_MAX_MEMBERS_PER_GROUP = 1_000;
export const DEFAULT_MAX_PENDING_JOINS = 10_000;
export const DEFAULT_MIN_SESSION_TIMEOUT_MS = 100;
export const DEFAULT_MAX_SESSION_TIMEOUT_MS = 1_800_000;
export const DEFAULT_MAX_METADATA_BYTES = 4096;
export const DEFAULT_OFFSETS_RETENTION_MS = 7 * 24 * 3600 * 1000;
export const DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL_MS = 600_000;
/** Most topics one member may subscribe to. */
export const MAX_TOPICS_PER_MEMBER = 1_000;
/** Longest client id, in characters. */
export const MAX_CLIENT_ID_CHARS = 255;
/** Retry delay (ms) when a group's deadline handling failed (the log could not say a topic's partitions). */
const TICK_RETRY_MS = 1_000;

interface Limits {
  maxGroups: number;
  maxMembersPerGroup: number;
  maxPendingJoins: number;
  initialRebalanceDelayMs: number;
  minSessionTimeoutMs: number;
  maxSessionTimeoutMs: number;
  maxMetadataBytes: number;
  offsetsRetentionMs: number;
  offsetsRetentionCheckIntervalMs: number;
}

function badArgument(message: string, details?: Record<string, unknown>): QueueError {
  return new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', message, { details });
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < min) throw badArgument(`${name} must be an integer >= ${min}, got ${value}`, { option: name, value });
  return v;
}

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20 || s.charCodeAt(i) === 0x7f) return true;
  return false;
}

function isPartition(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= 0xffffffff;
}

export class GroupCoordinator {
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly partitionsOf: (topic: string) => number;
  private readonly highWatermark: (topic: string, partition: number) => number;
  private readonly limits: Limits;
  private readonly logger: Logger | undefined;
  private readonly store: OffsetStore;
  private readonly groups = new Map<string, Group>();
  private readonly timers = new Map<string, { handle: TimerHandle; atMs: number }>();
  private readonly waiting = new Map<JoinTicket, { resolve: (r: JoinGroupResult) => void; reject: (e: unknown) => void }>();
  /** Commits being written, per group (a group is not forgotten while it has some). */
  private readonly inflight = new Map<string, number>();
  private retentionTimer: TimerHandle | undefined;
  private sweeping: Promise<void> | undefined;
  private retiredRebalances = 0;
  private commits = 0;
  private closed = false;

  private constructor(opts: GroupCoordinatorOptions, limits: Limits, store: OffsetStore) {
    this.clock = opts.clock;
    this.random = opts.random;
    this.partitionsOf = opts.partitionsOf;
    this.highWatermark = opts.highWatermark;
    this.limits = limits;
    this.logger = opts.logger;
    this.store = store;
  }

  /**
   * Opens the coordinator: validates options (ARCHLAB_QUEUE_BAD_ARGUMENT), opens the offsets log in
   * `dataDir` (ARCHLAB_QUEUE_CORRUPT / ARCHLAB_QUEUE_STORAGE), and knows every group with committed
   * offsets as an empty group.
   */
  static async open(o: GroupCoordinatorOptions): Promise<GroupCoordinator> {
    if (typeof o.partitionsOf !== 'function' || typeof o.highWatermark !== 'function') throw badArgument('partitionsOf and highWatermark must be functions');
    if (o.clock === undefined || o.random === undefined) throw badArgument('clock and random are required');
    const limits: Limits = {
      maxGroups: intOption('maxGroups', o.maxGroups, DEFAULT_MAX_GROUPS, 1),
      maxMembersPerGroup: intOption('maxMembersPerGroup', o.maxMembersPerGroup, DEFAULT_MAX_MEMBERS_PER_GROUP, 1),
      maxPendingJoins: intOption('maxPendingJoins', o.maxPendingJoins, DEFAULT_MAX_PENDING_JOINS, 1),
      initialRebalanceDelayMs: intOption('initialRebalanceDelayMs', o.initialRebalanceDelayMs, 0, 0),
      minSessionTimeoutMs: intOption('minSessionTimeoutMs', o.minSessionTimeoutMs, DEFAULT_MIN_SESSION_TIMEOUT_MS, 1),
      maxSessionTimeoutMs: intOption('maxSessionTimeoutMs', o.maxSessionTimeoutMs, DEFAULT_MAX_SESSION_TIMEOUT_MS, 1),
      maxMetadataBytes: intOption('maxMetadataBytes', o.maxMetadataBytes, DEFAULT_MAX_METADATA_BYTES, 0),
      offsetsRetentionMs: intOption('offsetsRetentionMs', o.offsetsRetentionMs, DEFAULT_OFFSETS_RETENTION_MS, -1),
      offsetsRetentionCheckIntervalMs: intOption('offsetsRetentionCheckIntervalMs', o.offsetsRetentionCheckIntervalMs, DEFAULT_OFFSETS_RETENTION_CHECK_INTERVAL_MS, 1),
    };
    if (limits.maxSessionTimeoutMs < limits.minSessionTimeoutMs) {
      throw badArgument(`maxSessionTimeoutMs (${limits.maxSessionTimeoutMs}) must be >= minSessionTimeoutMs (${limits.minSessionTimeoutMs})`);
    }
    const store = await OffsetStore.open({ dir: o.dataDir, fsync: o.fsync ?? true, compactMinBytes: o.compactMinBytes, logger: o.logger });
    const coordinator = new GroupCoordinator(o, limits, store);
    for (const name of store.groups()) coordinator.groups.set(name, coordinator.newGroup(name));
    coordinator.scheduleRetention();
    return coordinator;
  }

  /**
   * Joins (memberId empty) or rejoins a group; resolves when the rebalance completes, with this
   * member's id, the new generation and its partitions. A stable member rejoining with the same
   * topics gets its current assignment at once. Fails with UNKNOWN_MEMBER (an id the group does not
   * know: rejoin without one), UNKNOWN_TOPIC, LIMIT (maxGroups, maxMembersPerGroup, maxPendingJoins),
   * BAD_ARGUMENT (bad request, or an assignor other than the group's), REBALANCE_IN_PROGRESS (the
   * same member joined again before this join was answered), CLOSED.
   */
  async joinGroup(req: JoinGroupRequest): Promise<JoinGroupResult> {
    this.ensureOpen();
    const name = checkName('group', req?.group);
    const join = this.normalizeJoin(req);
    if (this.waiting.size >= this.limits.maxPendingJoins) {
      throw new QueueError('ARCHLAB_QUEUE_LIMIT', `${this.waiting.size} joins are waiting for rebalances, the most allowed (maxPendingJoins)`, {
        details: { limit: 'maxPendingJoins', value: this.limits.maxPendingJoins },
      });
    }
    const group = this.groups.get(name) ?? this.createGroup(name, join.memberId);
    const before = group.rebalances;
    let out: { ticket: JoinTicket; settled: Settlement[] };
    try {
      out = group.join(join);
    } catch (err) {
      this.maybeForget(name);
      throw err;
    }
    const promise = new Promise<JoinGroupResult>((resolve, reject) => this.waiting.set(out.ticket, { resolve, reject }));
    this.settle(out.settled);
    this.afterChange(group, before);
    return promise;
  }

  /**
   * A member's heartbeat. `rebalance: true`: the group is rebalancing and the member must rejoin
   * (keeping its id). Fails with UNKNOWN_MEMBER or ILLEGAL_GENERATION (rejoin), CLOSED.
   */
  async heartbeat(group: string, memberId: string, generation: number): Promise<HeartbeatResult> {
    this.ensureOpen();
    const g = this.groups.get(checkName('group', group));
    if (g === undefined) throw this.unknownMember(group, memberId);
    return g.heartbeat(memberId, generation);
  }

  /** A member leaves; the group rebalances at once. Fails with UNKNOWN_MEMBER for a member not in it, CLOSED. */
  async leaveGroup(group: string, memberId: string): Promise<void> {
    this.ensureOpen();
    const name = checkName('group', group);
    const g = this.groups.get(name);
    if (g === undefined) throw this.unknownMember(group, memberId);
    const before = g.rebalances;
    this.settle(g.leave(memberId));
    this.afterChange(g, before);
    this.maybeForget(name);
  }

  /**
   * Stores committed offsets, fenced by member and generation (see Group.checkCommit for the rules;
   * memberId '' with generation -1 commits for a group without members). Resolves once durable per
   * the fsync option. Fails with UNKNOWN_MEMBER, ILLEGAL_GENERATION, UNKNOWN_TOPIC,
   * UNKNOWN_PARTITION, BAD_ARGUMENT (offset not a non-negative integer, metadata over
   * maxMetadataBytes, a partition twice), LIMIT (maxGroups), MESSAGE_TOO_LARGE (over 16 MiB in one
   * call), DISK_FULL / STORAGE (nothing stored), CLOSED.
   */
  async commitOffsets(group: string, memberId: string, generation: number, offsets: OffsetCommit[]): Promise<void> {
    this.ensureOpen();
    const name = checkName('group', group);
    if (typeof memberId !== 'string') throw badArgument(`memberId must be a string, got ${typeof memberId}`);
    if (!Number.isSafeInteger(generation)) throw badArgument(`generation must be an integer, got ${generation}`);
    const entries = this.checkOffsets(offsets);
    let g = this.groups.get(name);
    if (g === undefined) {
      if (memberId !== '' || generation !== -1) throw this.unknownMember(name, memberId);
      g = this.createGroup(name, '');
    }
    try {
      g.checkCommit(memberId, generation);
    } catch (err) {
      this.maybeForget(name);
      throw err;
    }
    if (entries.length === 0) {
      this.maybeForget(name);
      return;
    }
    this.inflight.set(name, (this.inflight.get(name) ?? 0) + 1);
    try {
      await this.store.commit(name, this.clock.now(), entries);
      this.commits++;
    } finally {
      const n = this.inflight.get(name)! - 1;
      if (n === 0) this.inflight.delete(name);
      else this.inflight.set(name, n);
      this.maybeForget(name);
    }
  }

  /** Committed offsets of the given partitions, in the order asked, offset -1 (and metadata '') where none. */
  async fetchOffsets(group: string, partitions: TopicPartition[]): Promise<OffsetCommit[]> {
    this.ensureOpen();
    const name = checkName('group', group);
    if (!Array.isArray(partitions)) throw badArgument('partitions must be an array of { topic, partition }');
    return partitions.map((tp) => {
      const topic = checkName('topic', tp?.topic);
      if (!isPartition(tp.partition)) throw badArgument(`partition must be a non-negative integer, got ${tp.partition}`, { topic, partition: tp.partition });
      const stored = this.store.get(name, topic, tp.partition);
      return { topic, partition: tp.partition, offset: stored?.offset ?? -1, metadata: stored?.metadata ?? '' };
    });
  }

  /**
   * The group's state, generation, members with their assignments, and for every partition that is
   * assigned or has a committed offset: committed (-1 when none), highWatermark and lag
   * (highWatermark - committed, at least 0; the whole highWatermark when nothing is committed). A
   * partition whose topic no longer exists is left out. An unknown group is 'dead' with nothing.
   */
  async describeGroup(group: string): Promise<GroupDescription> {
    this.ensureOpen();
    const name = checkName('group', group);
    const g = this.groups.get(name);
    if (g === undefined) return { group: name, state: 'dead', generation: 0, assignor: DEFAULT_ASSIGNOR, members: [], offsets: [] };
    const desc = g.describe();
    const committed = new Map<string, { topic: string; partition: number; offset: number }>();
    for (const o of this.store.list(name)) committed.set(`${o.topic}\u0000${o.partition}`, o);
    for (const m of desc.members) {
      for (const tp of m.assignment) {
        const key = `${tp.topic}\u0000${tp.partition}`;
        if (!committed.has(key)) committed.set(key, { ...tp, offset: -1 });
      }
    }
    const offsets: GroupDescription['offsets'] = [];
    for (const o of committed.values()) {
      let highWatermark: number;
      try {
        highWatermark = this.highWatermark(o.topic, o.partition);
      } catch (err) {
        if (isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC') || isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_PARTITION')) continue;
        throw err;
      }
      const lag = o.offset >= 0 ? Math.max(0, highWatermark - o.offset) : Math.max(0, highWatermark);
      offsets.push({ topic: o.topic, partition: o.partition, committed: o.offset, highWatermark, lag });
    }
    offsets.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    return { ...desc, offsets };
  }

  /**
   * The log tells the coordinator that a topic was deleted or gained partitions: groups subscribed
   * to it rebalance, and a deleted topic's committed offsets are dropped.
   */
  async topicChanged(topic: string): Promise<void> {
    this.ensureOpen();
    checkName('topic', topic);
    let exists = true;
    try {
      this.partitionsOf(topic);
    } catch (err) {
      if (!isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC')) throw err;
      exists = false;
    }
    for (const g of this.groups.values()) {
      if (!g.subscribedTopics().has(topic)) continue;
      const before = g.rebalances;
      this.settle(g.requestRebalance());
      this.afterChange(g, before);
    }
    if (!exists) {
      await this.store.deleteTopic(topic);
      for (const name of [...this.groups.keys()]) this.maybeForget(name);
    }
  }

  /** Names of the groups known, sorted. */
  listGroups(): string[] {
    return [...this.groups.keys()].sort();
  }

  stats(): GroupCoordinatorStats {
    let members = 0;
    let rebalances = this.retiredRebalances;
    for (const g of this.groups.values()) {
      members += g.memberCount;
      rebalances += g.rebalances;
    }
    return { groups: this.groups.size, members, pendingJoins: this.waiting.size, rebalances, commits: this.commits, offsetStore: this.store.stats() };
  }

  /** Fails waiting joins with ARCHLAB_QUEUE_CLOSED, stops timers, writes what is queued and closes the offsets log. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retentionTimer?.cancel();
    for (const t of this.timers.values()) t.handle.cancel();
    this.timers.clear();
    const closedError = new QueueError('ARCHLAB_QUEUE_CLOSED', 'the group coordinator was closed');
    for (const g of this.groups.values()) this.settle(g.abort(closedError));
    for (const w of this.waiting.values()) w.reject(closedError);
    this.waiting.clear();
    await this.sweeping;
    await this.store.close();
  }

  private ensureOpen(): void {
    if (this.closed) throw new QueueError('ARCHLAB_QUEUE_CLOSED', 'the group coordinator is closed');
  }

  private unknownMember(group: string, memberId: string): QueueError {
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_MEMBER', `member "${memberId}" is not in group "${group}": rejoin without a member id`, { details: { group, memberId } });
  }

  private newGroup(name: string): Group {
    return new Group({
      name,
      clock: this.clock,
      random: this.random,
      partitionsOf: this.partitionsOf,
      maxMembers: this.limits.maxMembersPerGroup,
      initialRebalanceDelayMs: this.limits.initialRebalanceDelayMs,
    });
  }

  private createGroup(name: string, memberId: string): Group {
    // A rejoin into a group we do not know is refused before the group counts against maxGroups.
    if (memberId !== '') throw this.unknownMember(name, memberId);
    if (this.groups.size >= this.limits.maxGroups) {
      throw new QueueError('ARCHLAB_QUEUE_LIMIT', `${this.groups.size} groups exist, the most allowed (maxGroups)`, { details: { limit: 'maxGroups', value: this.limits.maxGroups } });
    }
    const g = this.newGroup(name);
    this.groups.set(name, g);
    return g;
  }

  /** Drops a group that has no members, no committed offsets and no commit being written. */
  private maybeForget(name: string): void {
    const g = this.groups.get(name);
    if (g === undefined || g.memberCount > 0 || this.store.hasGroup(name) || this.inflight.has(name)) return;
    this.retiredRebalances += g.rebalances;
    this.groups.delete(name);
    this.timers.get(name)?.handle.cancel();
    this.timers.delete(name);
  }

  private normalizeJoin(req: JoinGroupRequest): MemberJoin {
    const memberId = req.memberId ?? '';
    if (typeof memberId !== 'string') throw badArgument(`memberId must be a string, got ${typeof memberId}`);
    const clientId = req.clientId === undefined || req.clientId === '' ? undefined : req.clientId;
    if (clientId !== undefined && (typeof clientId !== 'string' || clientId.length > MAX_CLIENT_ID_CHARS || hasControlChar(clientId))) {
      throw badArgument(`clientId must be a string of at most ${MAX_CLIENT_ID_CHARS} printable characters`, { clientId });
    }
    if (!Array.isArray(req.topics) || req.topics.length === 0 || req.topics.length > MAX_TOPICS_PER_MEMBER) {
      throw badArgument(`topics must be an array of 1 to ${MAX_TOPICS_PER_MEMBER} topic names`);
    }
    const topics = [...new Set(req.topics.map((t) => checkName('topic', t)))].sort();
    // Throws ARCHLAB_QUEUE_UNKNOWN_TOPIC for a topic that does not exist.
    for (const t of topics) this.partitionsOf(t);
    const { minSessionTimeoutMs: min, maxSessionTimeoutMs: max } = this.limits;
    const sessionTimeoutMs = req.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    const rebalanceTimeoutMs = req.rebalanceTimeoutMs ?? sessionTimeoutMs;
    for (const [field, v] of [
      ['sessionTimeoutMs', sessionTimeoutMs],
      ['rebalanceTimeoutMs', rebalanceTimeoutMs],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min || v > max) throw badArgument(`${field} must be an integer from ${min} to ${max} ms, got ${v}`, { field, value: v, min, max });
    }
    const assignor = req.assignor;
    if (assignor !== undefined && !Object.hasOwn(ASSIGNORS, assignor)) {
      throw badArgument(`assignor must be one of ${Object.keys(ASSIGNORS).join(', ')}, got ${JSON.stringify(assignor)}`);
    }
    return { memberId, clientId, topics, sessionTimeoutMs, rebalanceTimeoutMs, assignor: assignor as Assignor | undefined };
  }

  private checkOffsets(offsets: OffsetCommit[]): OffsetCommit[] {
    if (!Array.isArray(offsets)) throw badArgument('offsets must be an array of { topic, partition, offset, metadata? }');
    const seen = new Set<string>();
    return offsets.map((o) => {
      const topic = checkName('topic', o?.topic);
      const partitions = this.partitionsOf(topic);
      if (!isPartition(o.partition) || o.partition >= partitions) {
        throw new QueueError('ARCHLAB_QUEUE_UNKNOWN_PARTITION', `topic "${topic}" has ${partitions} partitions; there is no partition ${o.partition}`, {
          details: { topic, partition: o.partition, partitions },
        });
      }
      if (!Number.isSafeInteger(o.offset) || o.offset < 0) throw badArgument(`offset must be a non-negative integer, got ${o.offset}`, { topic, partition: o.partition, offset: o.offset });
      const metadata = o.metadata ?? '';
      if (typeof metadata !== 'string') throw badArgument('metadata must be a string', { topic, partition: o.partition });
      const bytes = Buffer.byteLength(metadata, 'utf8');
      if (bytes > this.limits.maxMetadataBytes) {
        throw badArgument(`metadata of ${topic}/${o.partition} is ${bytes} bytes, over maxMetadataBytes (${this.limits.maxMetadataBytes})`, { topic, partition: o.partition, bytes, maxBytes: this.limits.maxMetadataBytes });
      }
      const key = `${topic}\u0000${o.partition}`;
      if (seen.has(key)) throw badArgument(`partition ${topic}/${o.partition} appears twice in one commit`, { topic, partition: o.partition });
      seen.add(key);
      return { topic, partition: o.partition, offset: o.offset, metadata };
    });
  }

  private settle(settled: readonly Settlement[]): void {
    for (const s of settled) {
      const w = this.waiting.get(s.ticket);
      if (w === undefined) continue;
      this.waiting.delete(s.ticket);
      if (s.error !== undefined) w.reject(s.error);
      else w.resolve(s.result);
    }
  }

  /** After a membership change: logs a completed rebalance and reschedules the group's timer. */
  private afterChange(g: Group, rebalancesBefore: number): void {
    if (g.rebalances !== rebalancesBefore) {
      this.logger?.info({ group: g.name, generation: g.generation, members: g.memberCount, state: g.state }, 'group coordinator: rebalance completed');
    }
    this.schedule(g);
  }

  /** Makes sure the group's timer fires no later than its next deadline. */
  private schedule(g: Group, minDelayMs = 0): void {
    if (this.closed) return;
    const next = g.nextDeadline();
    const current = this.timers.get(g.name);
    if (next === undefined) {
      current?.handle.cancel();
      this.timers.delete(g.name);
      return;
    }
    const now = this.clock.monotonic();
    const atMs = Math.max(next, now + minDelayMs);
    if (current !== undefined && current.atMs <= atMs) return;
    current?.handle.cancel();
    const handle = this.clock.setTimer(atMs - now, () => this.onTimer(g.name));
    this.timers.set(g.name, { handle, atMs });
  }

  private onTimer(name: string): void {
    this.timers.delete(name);
    if (this.closed) return;
    const g = this.groups.get(name);
    if (g === undefined) return;
    const before = g.rebalances;
    try {
      this.settle(g.tick());
    } catch (err) {
      // The log failed to say a topic's partitions: try again shortly rather than spin.
      this.logger?.error({ err, group: name }, 'group coordinator: rebalance could not complete');
      this.schedule(g, TICK_RETRY_MS);
      return;
    }
    this.afterChange(g, before);
    this.maybeForget(name);
  }

  private scheduleRetention(): void {
    if (this.closed || this.limits.offsetsRetentionMs < 0) return;
    this.retentionTimer = this.clock.setTimer(this.limits.offsetsRetentionCheckIntervalMs, () => {
      this.retentionTimer = undefined;
      if (this.closed) return;
      this.sweeping = this.expireOffsets().finally(() => {
        this.sweeping = undefined;
        this.scheduleRetention();
      });
    });
  }

  /** Deletes the offsets of groups that have been empty, without commits, for offsetsRetentionMs. */
  private async expireOffsets(): Promise<void> {
    const now = this.clock.now();
    for (const [name, g] of [...this.groups]) {
      if (this.closed) return;
      if (g.memberCount > 0 || this.inflight.has(name)) continue;
      const last = this.store.lastCommitMs(name);
      if (last === undefined) continue;
      if (now - Math.max(last, g.emptySinceMs) < this.limits.offsetsRetentionMs) continue;
      try {
        await this.store.deleteGroup(name);
        this.logger?.info({ group: name }, 'group coordinator: offsets expired');
      } catch (err) {
        this.logger?.error({ err, group: name }, 'group coordinator: could not expire offsets');
        return;
      }
      this.maybeForget(name);
    }
  }
}
