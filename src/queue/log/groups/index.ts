/**
 * Consumer groups for the log (Kafka's group coordinator): membership, rebalances with range, round
 * robin and sticky assignment, fenced offset commits that survive restarts, and lag.
 *
 * - assignors.ts: the assignors, pure functions.
 * - state.ts: one group's membership as a synchronous state machine over a Clock.
 * - store.ts: committed offsets in an append-only, CRC'd, compacted file.
 * - coordinator.ts: the shell the Log delegates LogApi's group methods to.
 */
export { GroupCoordinator } from './coordinator.js';
export type { GroupCoordinatorOptions, GroupCoordinatorStats } from './coordinator.js';
export { assignRange, assignRoundRobin, assignSticky } from './assignors.js';
export type { Assignment, AssignorFn, AssignorMember, PartitionCounts } from './assignors.js';
export type { OffsetStoreStats } from './store.js';
