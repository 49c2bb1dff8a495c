/**
 * A/B of archlab's L7 fast path between two source trees (not a test; not registered with
 * bench/run.ts):
 *
 *   node --import tsx bench/balancer-l7/ab.ts <treeA> <treeB> [pairs=6] [seconds=5]
 *
 * e.g. `git worktree add /tmp/base HEAD` for A and the working tree for B. The balancer of each
 * tree (bench/balancer-l7/archlab.ts, one process, round robin over one backend) runs pinned to
 * CPU 0; the backend (bench/balancer-l7/backend.ts, 64-byte answers) and wrk (one thread, 50
 * connections) share CPU 1, so the balancer's core is its own. In each pair A and B are measured
 * back to back, in alternating order, each after a 1 s warm-up. Per run: req/s and the balancer's
 * CPU per 1,000 requests (utime + stime from /proc, over the measured seconds). Per pair: B ÷ A;
 * at the end the medians. A run with socket errors or non-2xx answers is reported and voids the A/B.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { AbVoid, interleavedPairs, startPinned, stopChild as stop } from '../ab.js';
import { processCpuMs } from './procs.js';

const [treeA, treeB, pairsArg, secondsArg] = process.argv.slice(2);
if (treeA === undefined || treeB === undefined) {
  process.stderr.write('usage: node --import tsx bench/balancer-l7/ab.ts <treeA> <treeB> [pairs] [seconds]\n');
  process.exit(2);
}
const pairs = Number(pairsArg ?? 6);
const seconds = Number(secondsArg ?? 5);
const ROOT = join(import.meta.dirname, '..', '..');


interface Wrk {
  rps: number;
  requests: number;
  errors: string | undefined;
}

async function wrk(port: number, s: number): Promise<Wrk> {
  const child = spawn('taskset', ['-c', '1', 'wrk', '-t1', '-c50', `-d${s}s`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const errors = /Socket errors:[^\n]*|Non-2xx[^\n]*/.exec(out)?.[0];
  return { rps, requests, errors };
}

interface Run {
  rps: number;
  cpuPer1k: number;
}

async function run(tree: string, backendPort: number): Promise<Run> {
  const lb = await startPinned(0, [join(tree, 'bench/balancer-l7/archlab.ts'), '--backends', `127.0.0.1:${backendPort}`], tree);
  try {
    await wrk(lb.port, 1);
    const cpu0 = processCpuMs(lb.child.pid!);
    const w = await wrk(lb.port, seconds);
    const cpu = processCpuMs(lb.child.pid!) - cpu0;
    if (w.errors !== undefined || !Number.isFinite(w.rps)) throw new AbVoid(`${tree}: ${w.errors ?? 'wrk printed no rate'}`);
    return { rps: w.rps, cpuPer1k: (cpu / w.requests) * 1000 };
  } finally {
    await stop(lb.child);
  }
}

const backend = await startPinned(1, [join(ROOT, 'bench/balancer-l7/backend.ts'), '0'], ROOT);
try {
  await interleavedPairs({
    treeA,
    treeB,
    pairs,
    run: (tree) => run(tree, backend.port),
    show: (r: Run) => `${r.rps.toFixed(0)} req/s ${r.cpuPer1k.toFixed(1)} ms CPU/1k`,
    metrics: [
      { name: 'req/s', value: (r: Run) => r.rps },
      { name: 'CPU per request', value: (r: Run) => r.cpuPer1k },
    ],
  });
} finally {
  await stop(backend.child);
}
