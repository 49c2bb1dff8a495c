/**
 * Micro benchmark of the queue server's TCP path (not a test; not registered with bench/run.ts):
 *
 *   node --import tsx bench/queue/tcp-micro.ts [--quick] [--in-process]
 *
 * The server runs in a child process (`archlab queue`, pinned to CPU 0 with taskset when it exists,
 * so "one core" is true) and this process is the client:
 *
 * - produce: 1000-record batches of 100 B records, acks=leader, one partition, 32 batches in
 *   flight; `appendRaw` of batches encoded once (the server's cost) and `append` (encoding each
 *   batch in the client as well).
 * - fetch: reading the produced records back (1 MiB fetches, decoded in the client).
 * - broker: publish 100 B messages (1000 in flight) while a consumer (prefetch 1000) acks each one,
 *   memory-only queue and durable queue with fsync always.
 *
 * Each result is checked (record and message counts) before it is printed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArchlabError } from '../../src/core/errors.js';
import { connectQueue, type QueueClient } from '../../src/queue/client/index.js';
import { encodeRecordBatch } from '../../src/queue/log/record-batch.js';
import { startQueueServer } from '../../src/queue/server/index.js';

/** A result that failed its check, or a server that would not start: the run is void. */
class BenchVoid extends ArchlabError {
  constructor(message: string) {
    super('ARCHLAB_BENCH_VOID', message);
  }
}

const quick = process.argv.includes('--quick');
const inProcess = process.argv.includes('--in-process');
const ROOT = join(import.meta.dirname, '..', '..');

interface Server {
  port: number;
  stop(): Promise<void>;
}

async function startServer(dir: string, fsync: 'never' | 'always'): Promise<Server> {
  if (inProcess) {
    const s = await startQueueServer({ listeners: [{ port: 0 }], dataDir: dir, log: { level: 'warn' }, metrics: { defaultMetrics: false }, broker: { fsync } });
    return { port: s.address.port, stop: () => s.close() };
  }
  const file = join(dir, 'queue.yaml');
  writeFileSync(file, `listeners: [{ port: 0 }]\ndataDir: ${JSON.stringify(join(dir, 'data'))}\nlog: { level: warn }\nmetrics: { defaultMetrics: false }\nbroker: { fsync: ${fsync} }\n`);
  const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
  const args = ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'queue', '--config', file];
  const child: ChildProcess = hasTaskset ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise<number>((resolve, reject) => {
    let err = '';
    const t = setTimeout(() => reject(new BenchVoid(`server did not start: ${err}`)), 30_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on tcp:\/\/[^:]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new BenchVoid(`server exited with ${code}: ${err}`)));
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function fmt(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
}

function report(name: string, count: number, bytes: number, ms: number): void {
  const rate = (count / ms) * 1000;
  const mbs = (bytes / ms / 1e6) * 1000;
  process.stdout.write(`${name.padEnd(46)} ${fmt(rate).padStart(8)} msgs/s ${mbs.toFixed(1).padStart(7)} MB/s  (${count} in ${ms.toFixed(0)} ms)\n`);
}

/** Runs `total` calls of `op` with `window` in flight. */
async function pipelined(total: number, window: number, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, total) }, worker));
}

async function logBench(client: QueueClient): Promise<void> {
  const batches = quick ? 100 : 600;
  const perBatch = 1000;
  const value = Buffer.alloc(100, 0x61);
  const records = Array.from({ length: perBatch }, (_, i) => ({ key: null, value: i === 0 ? Buffer.alloc(100, 0x62) : value }));
  await client.createTopic('raw', { partitions: 1, segmentBytes: 256 * 1024 * 1024 });
  await client.createTopic('enc', { partitions: 1, segmentBytes: 256 * 1024 * 1024 });
  const encoded = encodeRecordBatch(records, { now: Date.now() });
  // warm-up
  await pipelined(20, 8, () => client.appendRaw('raw', 0, Buffer.from(encoded), 'leader'));

  // Each request gets its own copy: the log stamps the base offset into the buffer it is given.
  const copies = Array.from({ length: batches }, () => Buffer.from(encoded));
  let t0 = performance.now();
  await pipelined(batches, 32, (i) => client.appendRaw('raw', 0, copies[i]!, 'leader'));
  let ms = performance.now() - t0;
  const hw = (await client.describeTopic('raw')).partitions[0]!.highWatermark;
  if (hw !== (batches + 20) * perBatch) throw new BenchVoid(`produce check failed: high watermark ${hw}`);
  report('log produce appendRaw, 1000 x 100 B, acks=leader', batches * perBatch, batches * perBatch * 100, ms);

  t0 = performance.now();
  await pipelined(batches, 32, () => client.append({ topic: 'enc', partition: 0, acks: 'leader', records }));
  ms = performance.now() - t0;
  report('log produce append (client encodes), acks=leader', batches * perBatch, batches * perBatch * 100, ms);

  t0 = performance.now();
  let offset = 0;
  let n = 0;
  while (offset < hw) {
    const r = await client.fetch({ topic: 'raw', partition: 0, offset, maxBytes: 1024 * 1024 });
    n += r.records.length;
    offset = r.nextOffset;
  }
  ms = performance.now() - t0;
  if (n !== hw) throw new BenchVoid(`fetch check failed: ${n} records of ${hw}`);
  report('log fetch + decode, 1 MiB fetches', n, n * 100, ms);
}

async function brokerBench(client: QueueClient, consumer: QueueClient, durable: boolean): Promise<void> {
  const total = quick ? 20_000 : 100_000;
  const q = durable ? 'durable' : 'memory';
  await client.declareQueue(q, { durable, maxLength: total * 2 });
  const body = Buffer.alloc(100, 0x63);
  let acked = 0;
  let seen = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const sub = await consumer.consume(q, {
    prefetch: 1000,
    onDelivery: (d) => {
      seen++;
      consumer.ack(d.deliveryTag).then(() => {
        if (++acked === total) done();
      }, (err: unknown) => process.stderr.write(`ack failed: ${String(err)}\n`));
    },
  });
  const t0 = performance.now();
  await pipelined(total, 1000, () => client.publish('', q, { body }));
  await finished;
  const ms = performance.now() - t0;
  await sub.cancel();
  if (seen !== total) throw new BenchVoid(`broker check failed: ${seen} deliveries for ${total} messages`);
  report(`broker publish+consume+ack, 100 B, ${durable ? 'durable fsync always' : 'memory'}`, total, total * 100, ms);
}

async function main(): Promise<void> {
  process.stdout.write(`tcp-micro (${quick ? 'quick' : 'full'}, server ${inProcess ? 'in this process' : 'in a child process'}, node ${process.version})\n`);
  for (const fsync of ['never', 'always'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'archlab-tcp-micro-'));
    const server = await startServer(dir, fsync);
    const client = await connectQueue({ host: '127.0.0.1', port: server.port, requestTimeoutMs: 60_000 });
    const consumer = await connectQueue({ host: '127.0.0.1', port: server.port, requestTimeoutMs: 60_000 });
    try {
      if (fsync === 'never') {
        await logBench(client);
        await brokerBench(client, consumer, false);
      } else {
        await brokerBench(client, consumer, true);
      }
    } finally {
      await client.close();
      await consumer.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

await main();
