/**
 * archlab's rows:
 *
 * - through the TCP server: bench/queue/server-child.ts in a child process pinned to one core with
 *   taskset (the load generator, this process, is pinned to another core while the bench runs when
 *   the machine has two), a data dir under the run's temp dir, broker fsync 'always'. Producer and
 *   consumer each on their own `connectQueue()` connection. Rows: the log with acks=leader and
 *   with acks=fsync, the queue with durable queues;
 * - embedded: `Log.open()` and `Broker.open({ fsync: 'always' })` in this process: what the engines
 *   do with no network in between.
 *
 * A part that cannot start (the server, an engine) leaves its rows out with a note saying why.
 */
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../harness.js';
import { Child, findBinary } from '../balancer-l7/procs.js';
import { Broker } from '../../src/queue/broker/index.js';
import { connectQueue, type QueueClient } from '../../src/queue/client/index.js';
import { engineDriver, type EngineDriver } from '../../src/queue/drivers/index.js';
import { Log } from '../../src/queue/log/index.js';
import { logTarget, queueLevelTarget, queueTarget, type LogClient, type Pair } from './archlab-adapters.js';
import type { LevelTarget } from './levelling.js';
import { rssOf } from './levelling.js';
import { ARCHLAB } from './report.js';
import type { Target } from './runner.js';

export interface ArchlabOptions {
  dataDir: string;
  prefetch: number;
  quick: boolean;
}

export interface ArchlabSetup {
  targets: Target[];
  notes: string[];
  level: LevelTarget | undefined;
  levelMissing?: string;
  close(): Promise<void>;
}

/**
 * A batch of the log rows closes at BATCH_RECORDS records or BATCH_BYTES encoded bytes, whichever
 * comes first (Kafka's producer closes a batch by bytes, batch.size). 1,000 records of 100 B fit
 * in 256 KiB; 1 KB records close a batch at 253 (261,599 bytes), so the window of 2,000 unacknowledged messages
 * every system gets holds about eight 1 KB batches rather than two.
 */
const BATCH_RECORDS = 1000;
const BATCH_BYTES = 256 * 1024;
/**
 * Untimed messages through each archlab path at each size before timing: V8 compiles the hot
 * functions of the server and the client after some thousands of calls (one call per batch on
 * the log's path), and the first timed run would otherwise measure the interpreter.
 */
const LOG_WARMUP = { quick: 10_000, full: 30_000 };
const QUEUE_WARMUP = { quick: 3_000, full: 10_000 };
/** How often the log consumer commits its group offset (and once at the end). */
const COMMIT_INTERVAL_MS = 100;
/** The driver Producer's batching in throughput runs (its defaults). */
const PRODUCER_LINGER_MS = 5;
const PRODUCER_BATCH_BYTES = 256 * 1024;

const message = (err: unknown): string => (err as Error).message.split('\n')[0]!;

export async function archlabTargets(o: ArchlabOptions): Promise<ArchlabSetup> {
  const notes: string[] = [];
  const targets: Target[] = [];
  const closers: (() => Promise<void>)[] = [];
  let level: LevelTarget | undefined;
  let levelMissing: string | undefined;
  const queueLimits = { maxLength: 10_000_000, maxLengthBytes: 4 * 1024 ** 3 };
  const logWarmup = o.quick ? LOG_WARMUP.quick : LOG_WARMUP.full;
  const queueWarmup = o.quick ? QUEUE_WARMUP.quick : QUEUE_WARMUP.full;

  // --- through the TCP server, in a child process pinned to one core
  const taskset = findBinary('taskset');
  const n = cpus().length;
  let server: Child | undefined;
  try {
    const childArgs = [join(ROOT, 'bench', 'queue', 'server-child.ts'), JSON.stringify({ dataDir: join(o.dataDir, 'server'), fsync: 'always' })];
    const node = [process.execPath, '--import', 'tsx'];
    const serverCore = n - 1;
    server = taskset ? new Child(taskset, ['-c', String(serverCore), ...node, ...childArgs], { name: 'archlab queue server', cwd: ROOT }) : new Child(node[0]!, [...node.slice(1), ...childArgs], { name: 'archlab queue server', cwd: ROOT });
    const ready = (await server.readyLine(30_000)) as { port?: number; failed?: string };
    if (!ready.port) throw new TypeError(`the server did not start: ${ready.failed ?? 'no port'}`);
    const port = ready.port;
    const srv = server;
    closers.push(() => srv.stop(5000));
    if (taskset && n >= 2) {
      pinSelf(taskset, `0-${n - 2}`);
      closers.push(async () => pinSelf(taskset, `0-${n - 1}`));
      notes.push(`archlab TCP server: a child process pinned to core ${serverCore} (taskset -c ${serverCore}); the load generator (the bench process) pinned to cores 0-${n - 2} for the whole run; the peers' servers are not pinned`);
    } else notes.push(taskset ? 'one CPU: the archlab server and the load generator share it' : 'taskset not found: the archlab server is not pinned to one core (apt-get install util-linux)');
    let pair: Pair<QueueClient> | undefined;
    let driver: EngineDriver | undefined;
    const clients = async (): Promise<Pair<QueueClient>> => {
      if (!pair) {
        const producer = await connectQueue({ host: '127.0.0.1', port, requestTimeoutMs: 60_000 });
        const consumer = await connectQueue({ host: '127.0.0.1', port, requestTimeoutMs: 60_000 });
        pair = { producer, consumer };
        const p = pair;
        closers.unshift(async () => {
          await p.producer.close().catch(() => undefined);
          await p.consumer.close().catch(() => undefined);
        });
      }
      return pair;
    };
    const logMethod = (acks: string): string =>
      `connectQueue() client; the producer appends encoded record batches of up to ${BATCH_RECORDS} records or ${BATCH_BYTES / 1024} KiB, whichever is reached first (appendRaw, acks=${acks}), the consumer long-polls fetch on a second connection and commits its group offset every ${COMMIT_INTERVAL_MS} ms and at the end`;
    const common = { batchRecords: BATCH_RECORDS, batchBytes: BATCH_BYTES, fetchMaxWaitMs: 100, fetchMaxBytes: 1 << 20, commitIntervalMs: COMMIT_INTERVAL_MS, clients, close: async () => undefined, warmupMessages: logWarmup };
    targets.push(
      logTarget({ system: ARCHLAB.logLeader, durability: 'written to the segment file (page cache)', method: `${ARCHLAB.logLeader}: ${logMethod('leader')}`, acks: 'leader', ...common }),
      logTarget({
        ...common,
        system: ARCHLAB.logLeaderPre,
        durability: 'written to the segment file (page cache)',
        method: `${ARCHLAB.logLeaderPre}: as ${ARCHLAB.logLeader}, but every batch (same sizes) is encoded before the clock starts, so the rate is the server's (one core), not the client's encoding; no latency run`,
        acks: 'leader',
        preEncoded: true,
      }),
      logTarget({
        ...common,
        system: ARCHLAB.logProducer,
        durability: 'written to the segment file (page cache)',
        method: `${ARCHLAB.logProducer}: the driver API's Producer (src/queue/drivers engineDriver on the connectQueue() client): send() per record, batched by linger ${PRODUCER_LINGER_MS} ms and ${PRODUCER_BATCH_BYTES / 1024} KiB batches (linger 0 in the latency run), acks=leader; consumer as the rows above`,
        acks: 'leader',
        producer: (mode) => {
          if (!driver) {
            const d = (driver = engineDriver('archlab', pair!.producer, pair!.producer));
            closers.unshift(() => d.close());
          }
          return driver.producer({ acks: 'leader', lingerMs: mode === 'latency' ? 0 : PRODUCER_LINGER_MS, maxBatchBytes: PRODUCER_BATCH_BYTES });
        },
      }),
      logTarget({ system: ARCHLAB.logFsync, durability: 'fsynced (group commit)', method: `${ARCHLAB.logFsync}: ${logMethod('fsync')}`, acks: 'fsync', ...common }),
      queueTarget({
        system: ARCHLAB.queueDurable,
        durability: 'durable queue, broker fsync always (group commit)',
        method: `${ARCHLAB.queueDurable}: connectQueue() client, publish to the default exchange (one request per message, pipelined), consumer with prefetch ${o.prefetch} on a second connection acking every delivery`,
        prefetch: o.prefetch,
        ...queueLimits,
        warmupMessages: queueWarmup,
        clients,
        close: async () => undefined,
      }),
    );
    const pid = ready as { pid?: number };
    level = queueLevelTarget('archlab queue', clients, () => (pid.pid ? rssOf(pid.pid) : undefined));
  } catch (err) {
    const why = `${message(err)}${server && !server.hasExited ? '' : server ? ` (${server.describeExit()})` : ''}`;
    notes.push(`archlab TCP rows not measured: ${why}`);
    levelMissing = why;
    await server?.stop(2000).catch(() => undefined);
  }

  // --- embedded, in this process
  try {
    const log = await Log.open({ dataDir: join(o.dataDir, 'embedded-log') });
    closers.push(() => log.close());
    const pair: Pair<LogClient> = { producer: log, consumer: log };
    targets.push(
      logTarget({
        system: ARCHLAB.logEmbedded,
        durability: 'written to the segment file (page cache)',
        method: `${ARCHLAB.logEmbedded}: Log.open() in the bench process; appendRaw of batches of up to ${BATCH_RECORDS} records or ${BATCH_BYTES / 1024} KiB, fetch with long poll, group offset committed every ${COMMIT_INTERVAL_MS} ms and at the end`,
        acks: 'leader',
        batchRecords: BATCH_RECORDS,
        batchBytes: BATCH_BYTES,
        fetchMaxWaitMs: 100,
        fetchMaxBytes: 1 << 20,
        commitIntervalMs: COMMIT_INTERVAL_MS,
        warmupMessages: logWarmup,
        clients: async () => pair,
        close: async () => undefined,
      }),
    );
  } catch (err) {
    notes.push(`archlab embedded log not measured: ${message(err)}`);
  }
  try {
    const broker = await Broker.open({ dataDir: join(o.dataDir, 'embedded-broker'), fsync: 'always' });
    closers.push(() => broker.close());
    targets.push(
      queueTarget({
        system: ARCHLAB.queueEmbedded,
        durability: 'durable queue, fsync always (group commit)',
        method: `${ARCHLAB.queueEmbedded}: Broker.open({ fsync: 'always' }) in the bench process; publish per message, consume with prefetch ${o.prefetch}, ack per delivery`,
        prefetch: o.prefetch,
        ...queueLimits,
        warmupMessages: queueWarmup,
        clients: async () => ({ producer: broker, consumer: broker }),
        close: async () => undefined,
      }),
    );
  } catch (err) {
    notes.push(`archlab embedded queue not measured: ${message(err)}`);
  }

  return {
    targets,
    notes,
    level,
    ...(levelMissing === undefined ? {} : { levelMissing }),
    async close() {
      for (const c of closers) await c().catch(() => undefined);
    },
  };
}

export function archlabLevelTarget(setup: ArchlabSetup): LevelTarget | undefined {
  return setup.level;
}

/** Sets this process's CPU affinity (every thread) to `cpuList`. */
function pinSelf(taskset: string, cpuList: string): void {
  execFileSync(taskset, ['-a', '-cp', cpuList, String(process.pid)], { stdio: 'ignore' });
}
