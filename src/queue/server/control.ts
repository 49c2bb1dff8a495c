/**
 * The CONTROL frame's methods: the rare calls of LogApi and BrokerApi, carried as JSON
 * `{ method, args }`. Only the methods listed here can be called; each one's arguments are checked
 * for shape (the engines check the values) and a call that does not fit fails with
 * ARCHLAB_QUEUE_BAD_ARGUMENT before it reaches an engine.
 */
import { z } from 'zod';
import { QueueError } from '../errors.js';
import type {
  Assignor,
  BindingArgs,
  BrokerApi,
  ExchangeConfig,
  JoinGroupRequest,
  LogApi,
  OffsetCommit,
  QueueConfig,
  SeekTarget,
  TopicConfig,
  TopicPartition,
} from '../types.js';

export interface ControlEngines {
  log: LogApi;
  broker: BrokerApi;
  /** Told of every group that joins, for the lag metrics. */
  groupSeen?(group: string): void;
}

const str = z.string().max(1024);
const int = z.int();
/** JSON turns an `undefined` argument into null: both mean "not given". */
const opt = <T extends z.ZodType>(t: T) => t.nullish().transform((v) => v ?? undefined);
const obj = z.record(z.string(), z.unknown());
const bytes = z.custom<Buffer>((v) => Buffer.isBuffer(v), 'expected bytes');
const topicPartition = z.strictObject({ topic: str, partition: int });
const seekTarget = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('earliest') }),
  z.strictObject({ kind: z.literal('latest') }),
  z.strictObject({ kind: z.literal('offset'), offset: int }),
  z.strictObject({ kind: z.literal('timestamp'), timestamp: int }),
]);
const joinGroup = z.strictObject({
  group: str,
  memberId: opt(str),
  clientId: opt(str),
  topics: z.array(str).max(10_000),
  sessionTimeoutMs: opt(int),
  rebalanceTimeoutMs: opt(int),
  assignor: opt(z.enum(['range', 'round-robin', 'sticky'])),
});
const offsetCommit = z.strictObject({ topic: str, partition: int, offset: int, metadata: opt(z.string().max(4096)) });
const bindingArgs = opt(z.record(z.string(), z.string()));

interface Method {
  args: z.ZodType<unknown[]>;
  call(e: ControlEngines, args: never): Promise<unknown>;
}

function method<S extends z.ZodType<unknown[]>>(args: S, call: (e: ControlEngines, a: z.output<S>) => Promise<unknown>): Method {
  return { args, call: call as Method['call'] };
}

/** Drops keys whose value is undefined, so `exactOptionalPropertyTypes`-style engines see them absent. */
function defined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

export const CONTROL_METHODS: Readonly<Record<string, Method>> = {
  // log
  createTopic: method(z.tuple([str, opt(obj)]), (e, [name, config]) => e.log.createTopic(name, config as Partial<TopicConfig> | undefined)),
  deleteTopic: method(z.tuple([str]), (e, [name]) => e.log.deleteTopic(name)),
  describeTopic: method(z.tuple([str]), (e, [name]) => e.log.describeTopic(name)),
  listTopics: method(z.tuple([]), (e) => e.log.listTopics()),
  partitionFor: method(z.tuple([str, bytes.nullable()]), (e, [topic, key]) => e.log.partitionFor(topic, key)),
  initProducerId: method(z.tuple([]), (e) => e.log.initProducerId()),
  offsetForTimestamp: method(z.tuple([str, int, int]), (e, [t, p, ts]) => e.log.offsetForTimestamp(t, p, ts)),
  resolveSeek: method(z.tuple([str, int, seekTarget]), (e, [t, p, target]) => e.log.resolveSeek(t, p, target as SeekTarget)),
  joinGroup: method(z.tuple([joinGroup]), (e, [req]) => {
    e.groupSeen?.(req.group);
    const r = defined(req) as JoinGroupRequest;
    if (req.assignor !== undefined) r.assignor = req.assignor as Assignor;
    return e.log.joinGroup(r);
  }),
  heartbeat: method(z.tuple([str, str, int]), (e, [g, m, gen]) => e.log.heartbeat(g, m, gen)),
  leaveGroup: method(z.tuple([str, str]), (e, [g, m]) => e.log.leaveGroup(g, m)),
  commitOffsets: method(z.tuple([str, str, int, z.array(offsetCommit).max(100_000)]), (e, [g, m, gen, offsets]) =>
    e.log.commitOffsets(g, m, gen, offsets.map((o) => defined(o)) as OffsetCommit[]),
  ),
  fetchOffsets: method(z.tuple([str, z.array(topicPartition).max(100_000)]), (e, [g, parts]) => e.log.fetchOffsets(g, parts as TopicPartition[])),
  describeGroup: method(z.tuple([str]), (e, [g]) => e.log.describeGroup(g)),
  // broker
  declareExchange: method(z.tuple([str, opt(obj)]), (e, [name, config]) => e.broker.declareExchange(name, config as Partial<ExchangeConfig> | undefined)),
  deleteExchange: method(z.tuple([str]), (e, [name]) => e.broker.deleteExchange(name)),
  declareQueue: method(z.tuple([str, opt(obj)]), (e, [name, config]) => e.broker.declareQueue(name, config as Partial<QueueConfig> | undefined)),
  deleteQueue: method(z.tuple([str]), (e, [name]) => e.broker.deleteQueue(name)),
  purgeQueue: method(z.tuple([str]), (e, [name]) => e.broker.purgeQueue(name)),
  bind: method(z.tuple([str, str, str, bindingArgs]), (e, [q, x, rk, args]) => e.broker.bind(q, x, rk, args as BindingArgs | undefined)),
  unbind: method(z.tuple([str, str, str, bindingArgs]), (e, [q, x, rk, args]) => e.broker.unbind(q, x, rk, args as BindingArgs | undefined)),
  queueStats: method(z.tuple([str]), (e, [name]) => e.broker.queueStats(name)),
  listQueues: method(z.tuple([]), (e) => e.broker.listQueues()),
};

/** Runs one CONTROL call; rejects with BAD_ARGUMENT for an unknown method or arguments of the wrong shape. */
export async function callControl(engines: ControlEngines, name: string, args: unknown[]): Promise<unknown> {
  const m = Object.hasOwn(CONTROL_METHODS, name) ? CONTROL_METHODS[name] : undefined;
  if (m === undefined) {
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `unknown CONTROL method ${JSON.stringify(name.slice(0, 100))}`, { details: { method: name.slice(0, 100) } });
  }
  const parsed = m.args.safeParse(args);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `argument ${issue.path.join('.')}` : 'arguments';
    throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `${name}: ${where}: ${issue?.message ?? 'invalid'}`, { details: { method: name } });
  }
  return m.call(engines, parsed.data as never);
}
