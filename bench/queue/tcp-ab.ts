/**
 * A/B of the queue server's 1 KB produce path through TCP, between two source trees (not a test;
 * not registered with bench/run.ts):
 *
 *   node --import tsx bench/queue/tcp-ab.ts <treeA> <treeB> [pairs=4] [mib=1024]
 *
 * e.g. `git worktree add /tmp/base HEAD` for A and the working tree for B. In each pair the server
 * of A and of B (bench/queue/server-child.ts from that tree, pinned to CPU 0 with taskset) gets
 * `mib` MiB of 1 KB records in pre-encoded 256 KiB batches (253 records), acks=leader, with 8
 * batches in flight (about the full bench's window of 2,000 messages), from this process; the order
 * alternates from pair to pair. Per run: MB/s of batches, the server's CPU per MiB (utime + stime
 * from /proc) and its read system calls per MiB (/proc/<pid>/io). Per pair: B ÷ A; at the end the
 * medians. Each run is checked (high watermark = records sent) before it counts.
 *
 * Set AB_SERVER_FLAGS to pass node flags to the servers (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p").
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectQueue } from '../../src/queue/client/index.js';
import { encodeRecordBatch } from '../../src/queue/log/record-batch.js';
import { AbVoid, interleavedPairs, startWithPort, stopChild } from '../ab.js';
import { processCpuMs } from '../balancer-l7/procs.js';

const [treeA, treeB, pairsArg, mibArg] = process.argv.slice(2);
if (treeA === undefined || treeB === undefined) {
  process.stderr.write('usage: node --import tsx bench/queue/tcp-ab.ts <treeA> <treeB> [pairs] [mib]\n');
  process.exit(2);
}
const pairs = Number(pairsArg ?? 4);
const mib = Number(mibArg ?? 1024);
const RECORDS_PER_BATCH = 253;
const IN_FLIGHT = 8;

function readCalls(pid: number): number {
  return Number(/syscr: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? Number.NaN);
}

interface Run {
  mbPerS: number;
  cpuMsPerMiB: number;
  readsPerMiB: number;
}

const value = Buffer.alloc(1024 - 16);
for (let i = 0; i < value.length; i++) value[i] = (i * 7919) & 0xff;
const batch = encodeRecordBatch(
  Array.from({ length: RECORDS_PER_BATCH }, () => ({ key: null, value })),
  { now: Date.now() },
);
const batches = Math.ceil((mib * 1024 * 1024) / batch.length);

async function run(tree: string): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-tcp-ab-'));
  const flags = (process.env.AB_SERVER_FLAGS ?? '').split(' ').filter(Boolean);
  const args = ['-c', '0', process.execPath, ...flags, '--import', 'tsx', join(tree, 'bench/queue/server-child.ts'), JSON.stringify({ dataDir: join(dir, 'server'), fsync: 'always' })];
  let started: Awaited<ReturnType<typeof startWithPort>>;
  try {
    started = await startWithPort('taskset', args, tree);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const { child, port } = started;
  try {
    const pid = child.pid!;
    const client = await connectQueue({ host: '127.0.0.1', port, requestTimeoutMs: 60_000 });
    try {
      await client.createTopic('ab', { partitions: 1 });
      // The server stamps offsets into its own copy of each frame: one batch can be sent again and again.
      for (let i = 0; i < 20; i++) await client.appendRaw('ab', 0, batch, 'leader');
      const cpu0 = processCpuMs(pid);
      const reads0 = readCalls(pid);
      const t0 = performance.now();
      let sent = 0;
      const worker = async (): Promise<void> => {
        while (sent < batches) {
          sent++;
          await client.appendRaw('ab', 0, batch, 'leader');
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const ms = performance.now() - t0;
      const cpu = processCpuMs(pid) - cpu0;
      const reads = readCalls(pid) - reads0;
      const hw = (await client.describeTopic('ab')).partitions[0]?.highWatermark;
      if (hw !== (batches + 20) * RECORDS_PER_BATCH) throw new AbVoid(`check failed: high watermark ${hw}, expected ${(batches + 20) * RECORDS_PER_BATCH}`);
      const sentMiB = (batches * batch.length) / (1024 * 1024);
      return { mbPerS: (batches * batch.length) / ms / 1000, cpuMsPerMiB: cpu / sentMiB, readsPerMiB: reads / sentMiB };
    } finally {
      await client.close();
    }
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

await interleavedPairs({
  treeA,
  treeB,
  pairs,
  run,
  show: (r: Run) => `${r.mbPerS.toFixed(0)} MB/s ${r.cpuMsPerMiB.toFixed(2)} ms CPU/MiB ${r.readsPerMiB.toFixed(1)} reads/MiB`,
  metrics: [
    { name: 'throughput', value: (r: Run) => r.mbPerS },
    { name: 'server CPU per MiB', value: (r: Run) => r.cpuMsPerMiB },
  ],
});
