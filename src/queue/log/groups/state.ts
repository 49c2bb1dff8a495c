/**
 * One consumer group's membership as a synchronous state machine (the pure core; the coordinator in
 * coordinator.ts is its shell: promises, timers, offset storage).
 *
 *   empty --join--> preparing-rebalance --every member rejoined, or rebalance timeout--> stable
 *   stable --join of a new member / changed subscription / leave / session timeout--> preparing-rebalance
 *
 * A rebalance completes when every member has a join waiting (new members by joining, known ones by
 * rejoining after a heartbeat answered `rebalance: true`), and no earlier than the initial delay
 * when the group started empty; or when the rebalance timeout (the largest `rebalanceTimeoutMs` of
 * the members when it began) passes, removing the members that did not rejoin. Completing bumps the
 * generation, runs the group's assignor and answers every waiting join with its own assignment.
 *
 * A member that does not heartbeat (or commit, or join) for its `sessionTimeoutMs` is removed and the
 * group rebalances. A member whose join is waiting is not expired that way: the rebalance timeout
 * bounds the wait instead (as in Kafka, so a client need not heartbeat while its join is pending).
 *
 * Time comes from the Clock (monotonic ms for every deadline); nothing here sets a timer. The shell
 * asks `nextDeadline()` and calls `tick()` when it passes. Joins are answered through tickets: every
 * call that can complete a rebalance returns the settled tickets.
 */
import type { Clock } from '../../../core/clock.js';
import type { Random } from '../../../core/random.js';
import { QueueError, isQueueError } from '../../errors.js';
import type { Assignor, GroupDescription, HeartbeatResult, JoinGroupResult, TopicPartition } from '../../types.js';
import { assignRange, assignRoundRobin, assignSticky, type AssignorFn } from './assignors.js';

export type GroupState = 'empty' | 'preparing-rebalance' | 'stable';

export const ASSIGNORS: Readonly<Record<Assignor, AssignorFn>> = {
  range: assignRange,
  'round-robin': assignRoundRobin,
  sticky: assignSticky,
};

/** The assignor of a group whose first member names none (Kafka's classic consumer default). */
export const DEFAULT_ASSIGNOR: Assignor = 'range';

/** The client id of a member that names none; member ids start with the client id. */
export const DEFAULT_CLIENT_ID = 'consumer';

/** A join waiting for its rebalance. The shell keeps its promise; `settle` lists hand it back. */
export interface JoinTicket {
  readonly memberId: string;
}

export type Settlement = { ticket: JoinTicket; result: JoinGroupResult; error?: undefined } | { ticket: JoinTicket; error: QueueError; result?: undefined };

/** A join as the core takes it: validated and with every default filled in by the shell. */
export interface MemberJoin {
  /** '' for a new member. */
  memberId: string;
  /** undefined: DEFAULT_CLIENT_ID for a new member, the one it had for a rejoin. */
  clientId: string | undefined;
  /** Sorted, without duplicates, each an existing topic. */
  topics: readonly string[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  /** undefined: whatever the group uses (DEFAULT_ASSIGNOR for a group starting empty). */
  assignor: Assignor | undefined;
}

export interface GroupOptions {
  name: string;
  clock: Clock;
  random: Random;
  /** Partitions of a topic; may throw (a deleted topic counts as 0 partitions at assignment). */
  partitionsOf(topic: string): number;
  /** Most members; a new member past it is refused with ARCHLAB_QUEUE_LIMIT. */
  maxMembers: number;
  /**
   * A group starting from empty waits this long for more members before its first rebalance
   * completes, extended by the same again for each member that joins meanwhile, up to the rebalance
   * timeout (Kafka's group.initial.rebalance.delay.ms). 0 = no wait.
   */
  initialRebalanceDelayMs: number;
}

interface Member {
  readonly memberId: string;
  clientId: string;
  topics: readonly string[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  /** Monotonic ms of the last heartbeat, commit or join. */
  lastSeenMs: number;
  /** The generation this member was last assigned in; undefined until its first rebalance completes. */
  generation: number | undefined;
  assignment: TopicPartition[];
  /** Set while the member's join waits for the rebalance. */
  ticket: JoinTicket | undefined;
}

function sameTopics(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

function hex32(random: Random): string {
  return random.uint32().toString(16).padStart(8, '0');
}

export class Group {
  readonly name: string;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly partitionsOf: (topic: string) => number;
  private readonly maxMembers: number;
  private readonly initialRebalanceDelayMs: number;

  private stateValue: GroupState = 'empty';
  private generationValue = 0;
  private assignorValue: Assignor = DEFAULT_ASSIGNOR;
  /** By member id, in join order. */
  private readonly members = new Map<string, Member>();
  /** Monotonic ms when the current rebalance gives up on members that did not rejoin. */
  private rebalanceDeadlineMs = 0;
  /** Monotonic ms before which the current rebalance (begun from empty) may not complete. */
  private delayUntilMs = 0;
  private rebalanceStartMs = 0;
  private initialDelayActive = false;
  private pendingJoins = 0;
  private rebalancesValue = 0;
  /** Wall-clock ms since the group has had no members (offset retention counts from here). */
  private emptySince: number;

  constructor(opts: GroupOptions) {
    this.name = opts.name;
    this.clock = opts.clock;
    this.random = opts.random;
    this.partitionsOf = opts.partitionsOf;
    this.maxMembers = opts.maxMembers;
    this.initialRebalanceDelayMs = opts.initialRebalanceDelayMs;
    this.emptySince = opts.clock.now();
  }

  get state(): GroupState {
    return this.stateValue;
  }

  get generation(): number {
    return this.generationValue;
  }

  get assignor(): Assignor {
    return this.assignorValue;
  }

  get memberCount(): number {
    return this.members.size;
  }

  /** Joins waiting for the current rebalance. */
  get waitingJoins(): number {
    return this.pendingJoins;
  }

  /** Rebalances completed since construction. */
  get rebalances(): number {
    return this.rebalancesValue;
  }

  /** Wall-clock ms since which the group has had no members (meaningful only while it has none). */
  get emptySinceMs(): number {
    return this.emptySince;
  }

  hasMember(memberId: string): boolean {
    return this.members.has(memberId);
  }

  /** Every topic some member subscribes to. */
  subscribedTopics(): Set<string> {
    const out = new Set<string>();
    for (const m of this.members.values()) for (const t of m.topics) out.add(t);
    return out;
  }

  /**
   * A member joins or rejoins. Returns its ticket and whatever this join settled (its own ticket
   * among them when the rebalance completed at once, or when a stable member rejoined with nothing
   * changed: it gets its current assignment without a rebalance). Throws UNKNOWN_MEMBER for a member
   * id the group does not know, LIMIT past maxMembers, BAD_ARGUMENT for an assignor other than the
   * group's.
   */
  join(req: MemberJoin): { ticket: JoinTicket; settled: Settlement[] } {
    const now = this.clock.monotonic();
    if (req.assignor !== undefined && this.members.size > 0 && req.assignor !== this.assignorValue) {
      throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `group "${this.name}" uses the ${this.assignorValue} assignor; a member asked for ${req.assignor}`, {
        details: { group: this.name, assignor: this.assignorValue, requested: req.assignor },
      });
    }
    const settled: Settlement[] = [];
    let member: Member;
    if (req.memberId === '') {
      if (this.members.size >= this.maxMembers) {
        throw new QueueError('ARCHLAB_QUEUE_LIMIT', `group "${this.name}" has ${this.members.size} members, the most allowed (maxMembersPerGroup)`, {
          details: { group: this.name, limit: 'maxMembersPerGroup', value: this.maxMembers },
        });
      }
      const clientId = req.clientId ?? DEFAULT_CLIENT_ID;
      member = {
        memberId: this.newMemberId(clientId),
        clientId,
        topics: req.topics,
        sessionTimeoutMs: req.sessionTimeoutMs,
        rebalanceTimeoutMs: req.rebalanceTimeoutMs,
        lastSeenMs: now,
        generation: undefined,
        assignment: [],
        ticket: undefined,
      };
      if (this.members.size === 0) this.assignorValue = req.assignor ?? DEFAULT_ASSIGNOR;
      this.members.set(member.memberId, member);
      if (this.stateValue === 'empty') {
        this.beginRebalance(now);
        if (this.initialRebalanceDelayMs > 0) {
          this.initialDelayActive = true;
          this.delayUntilMs = now + this.initialRebalanceDelayMs;
        }
      } else if (this.stateValue === 'stable') {
        this.beginRebalance(now);
      } else if (this.initialDelayActive) {
        this.delayUntilMs = Math.min(this.delayUntilMs + this.initialRebalanceDelayMs, this.rebalanceStartMs + this.maxRebalanceTimeoutMs());
      }
    } else {
      const known = this.members.get(req.memberId);
      if (known === undefined) throw this.unknownMember(req.memberId);
      member = known;
      member.lastSeenMs = now;
      if (this.stateValue === 'stable' && member.ticket === undefined && sameTopics(member.topics, req.topics) && member.generation === this.generationValue) {
        // Nothing changed: answer with the current assignment, no rebalance (Kafka does the same).
        member.clientId = req.clientId ?? member.clientId;
        member.sessionTimeoutMs = req.sessionTimeoutMs;
        member.rebalanceTimeoutMs = req.rebalanceTimeoutMs;
        const ticket: JoinTicket = { memberId: member.memberId };
        return { ticket, settled: [{ ticket, result: this.resultFor(member) }] };
      }
      member.clientId = req.clientId ?? member.clientId;
      member.topics = req.topics;
      member.sessionTimeoutMs = req.sessionTimeoutMs;
      member.rebalanceTimeoutMs = req.rebalanceTimeoutMs;
      if (member.ticket !== undefined) {
        // A second join from the same member replaces the first; the first caller hears why.
        settled.push({
          ticket: member.ticket,
          error: new QueueError('ARCHLAB_QUEUE_REBALANCE_IN_PROGRESS', `member ${member.memberId} of group "${this.name}" joined again; this earlier join was replaced`, {
            details: { group: this.name, memberId: member.memberId },
          }),
        });
        member.ticket = undefined;
        this.pendingJoins--;
      }
      if (this.stateValue === 'stable') this.beginRebalance(now);
    }
    const ticket: JoinTicket = { memberId: member.memberId };
    member.ticket = ticket;
    this.pendingJoins++;
    settled.push(...this.maybeComplete(now));
    return { ticket, settled };
  }

  /**
   * A heartbeat from a member: refreshes its session. `rebalance: true` tells it to rejoin. Throws
   * UNKNOWN_MEMBER for a member not in the group, ILLEGAL_GENERATION when `generation` is not the
   * one the member was last assigned in and the group's current one.
   */
  heartbeat(memberId: string, generation: number): HeartbeatResult {
    const member = this.fenced(memberId, generation);
    member.lastSeenMs = this.clock.monotonic();
    return { rebalance: this.stateValue === 'preparing-rebalance' };
  }

  /**
   * Checks that a member may commit offsets with `generation`, and refreshes its session. Rules:
   *
   * - An empty group accepts commits with member id '' and generation -1 (a consumer that assigns
   *   partitions itself rather than joining, as Kafka allows); a group with members refuses them.
   * - Otherwise the member must be in the group and `generation` must be the group's current
   *   generation and the one the member was assigned in: a member removed by a session timeout or a
   *   rebalance it missed gets UNKNOWN_MEMBER, one holding an older generation ILLEGAL_GENERATION.
   * - While the group is preparing a rebalance, members of the current generation may still commit.
   *   The rule follows Kafka's classic coordinator and is safe: no partition has a new owner until
   *   the rebalance completes, so the member committing still owns what it was assigned; and it lets
   *   a consumer commit what it processed before rejoining (onPartitionsRevoked), which is what keeps
   *   a rebalance from replaying work. The generation being replaced is fenced the moment the
   *   rebalance completes: from then on its commits get ILLEGAL_GENERATION (or UNKNOWN_MEMBER if the
   *   member was dropped).
   */
  checkCommit(memberId: string, generation: number): void {
    if (memberId === '' && generation === -1 && this.members.size === 0) return;
    const member = this.fenced(memberId, generation);
    member.lastSeenMs = this.clock.monotonic();
  }

  /** A member leaves: removed at once and the group rebalances (Kafka's LeaveGroup). Throws UNKNOWN_MEMBER. */
  leave(memberId: string): Settlement[] {
    const member = this.members.get(memberId);
    if (member === undefined) throw this.unknownMember(memberId);
    const now = this.clock.monotonic();
    const settled: Settlement[] = [];
    this.remove(member, settled, 'left the group');
    if (this.stateValue === 'stable') this.beginRebalance(now);
    settled.push(...this.maybeComplete(now));
    return settled;
  }

  /**
   * Starts a rebalance because something outside the membership changed (a subscribed topic gained
   * partitions or was deleted). No-op unless the group is stable.
   */
  requestRebalance(): Settlement[] {
    if (this.stateValue !== 'stable') return [];
    const now = this.clock.monotonic();
    this.beginRebalance(now);
    return this.maybeComplete(now);
  }

  /** Applies every deadline that has passed: session timeouts, the initial delay, the rebalance timeout. */
  tick(): Settlement[] {
    const now = this.clock.monotonic();
    const settled: Settlement[] = [];
    let removed = false;
    for (const member of [...this.members.values()]) {
      if (member.ticket === undefined && now >= member.lastSeenMs + member.sessionTimeoutMs) {
        this.remove(member, settled, 'missed its session timeout');
        removed = true;
      }
    }
    if (removed && this.stateValue === 'stable') this.beginRebalance(now);
    if (this.stateValue === 'preparing-rebalance' && now >= this.rebalanceDeadlineMs) {
      for (const member of [...this.members.values()]) {
        if (member.ticket === undefined) this.remove(member, settled, 'did not rejoin within the rebalance timeout');
      }
    }
    settled.push(...this.maybeComplete(now));
    return settled;
  }

  /** The earliest monotonic ms at which tick() has something to do; undefined when nothing is due ever. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (t: number): void => {
      if (next === undefined || t < next) next = t;
    };
    for (const member of this.members.values()) if (member.ticket === undefined) consider(member.lastSeenMs + member.sessionTimeoutMs);
    if (this.stateValue === 'preparing-rebalance') {
      consider(this.rebalanceDeadlineMs);
      if (this.initialDelayActive) consider(this.delayUntilMs);
    }
    return next;
  }

  /** Fails every waiting join with `error` (the coordinator is closing). */
  abort(error: QueueError): Settlement[] {
    const settled: Settlement[] = [];
    for (const member of this.members.values()) {
      if (member.ticket !== undefined) {
        settled.push({ ticket: member.ticket, error });
        member.ticket = undefined;
      }
    }
    this.pendingJoins = 0;
    return settled;
  }

  /** Membership as describeGroup shows it (offsets are the shell's). During a rebalance, the last generation's assignment. */
  describe(): Omit<GroupDescription, 'offsets'> {
    const members = [...this.members.values()]
      .sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0))
      .map((m) => ({ memberId: m.memberId, clientId: m.clientId, assignment: m.assignment.map((tp) => ({ ...tp })) }));
    return { group: this.name, state: this.stateValue, generation: this.generationValue, assignor: this.assignorValue, members };
  }

  private fenced(memberId: string, generation: number): Member {
    const member = this.members.get(memberId);
    if (member === undefined) throw this.unknownMember(memberId);
    if (generation !== this.generationValue || member.generation !== generation) {
      throw new QueueError(
        'ARCHLAB_QUEUE_ILLEGAL_GENERATION',
        `member ${memberId} of group "${this.name}" used generation ${generation}; the group is at ${this.generationValue}${member.generation === undefined ? ' and the member has not been assigned yet' : ''}: rejoin`,
        { details: { group: this.name, memberId, generation, current: this.generationValue } },
      );
    }
    return member;
  }

  private unknownMember(memberId: string): QueueError {
    return new QueueError('ARCHLAB_QUEUE_UNKNOWN_MEMBER', `member "${memberId}" is not in group "${this.name}": rejoin without a member id`, {
      details: { group: this.name, memberId },
    });
  }

  private newMemberId(clientId: string): string {
    // 128 random bits: collisions are not a practical concern, but the loop makes them impossible.
    for (;;) {
      const id = `${clientId}-${hex32(this.random)}${hex32(this.random)}${hex32(this.random)}${hex32(this.random)}`;
      if (!this.members.has(id)) return id;
    }
  }

  private maxRebalanceTimeoutMs(): number {
    let max = 0;
    for (const m of this.members.values()) max = Math.max(max, m.rebalanceTimeoutMs);
    return max;
  }

  private beginRebalance(now: number): void {
    this.stateValue = 'preparing-rebalance';
    this.rebalanceStartMs = now;
    this.rebalanceDeadlineMs = now + this.maxRebalanceTimeoutMs();
    this.initialDelayActive = false;
  }

  private remove(member: Member, settled: Settlement[], why: string): void {
    this.members.delete(member.memberId);
    if (member.ticket !== undefined) {
      settled.push({ ticket: member.ticket, error: new QueueError('ARCHLAB_QUEUE_UNKNOWN_MEMBER', `member ${member.memberId} ${why}`, { details: { group: this.name, memberId: member.memberId } }) });
      member.ticket = undefined;
      this.pendingJoins--;
    }
    if (this.members.size === 0) this.emptySince = this.clock.now();
  }

  private maybeComplete(now: number): Settlement[] {
    if (this.stateValue !== 'preparing-rebalance') return [];
    if (this.members.size > 0) {
      for (const m of this.members.values()) if (m.ticket === undefined) return [];
      if (this.initialDelayActive && now < this.delayUntilMs) return [];
    }
    return this.complete(now);
  }

  private complete(now: number): Settlement[] {
    // Partition counts first: if the log fails here, the group is left as it was.
    const counts = new Map<string, number>();
    for (const t of this.subscribedTopics()) {
      let n: number;
      try {
        n = this.partitionsOf(t);
      } catch (err) {
        // Deleted since the member joined: nothing of it to assign.
        if (!isQueueError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC')) throw err;
        n = 0;
      }
      counts.set(t, n);
    }
    this.generationValue++;
    this.rebalancesValue++;
    this.initialDelayActive = false;
    const settled: Settlement[] = [];
    if (this.members.size === 0) {
      this.stateValue = 'empty';
      return settled;
    }
    const ordered = [...this.members.values()];
    const assignment = ASSIGNORS[this.assignorValue](
      ordered.map((m) => ({ memberId: m.memberId, topics: m.topics, owned: m.assignment })),
      counts,
    );
    for (const m of ordered) {
      m.assignment = assignment.get(m.memberId) ?? [];
      m.generation = this.generationValue;
      m.lastSeenMs = now;
      if (m.ticket !== undefined) {
        settled.push({ ticket: m.ticket, result: this.resultFor(m) });
        m.ticket = undefined;
      }
    }
    this.pendingJoins = 0;
    this.stateValue = 'stable';
    return settled;
  }

  private resultFor(m: Member): JoinGroupResult {
    return { memberId: m.memberId, generation: this.generationValue, assignment: m.assignment.map((tp) => ({ ...tp })) };
  }
}
