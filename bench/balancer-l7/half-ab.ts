/**
 * A/B of archlab's latency at half load after a lull, between two variants: two source trees, or
 * the same tree under two sets of Node flags (not a test; not registered with bench/run.ts):
 *
 *   node --import tsx bench/balancer-l7/half-ab.ts [--a-tree DIR] [--b-tree DIR] \
 *     [--a-flags "..."] [--b-flags "..."] [--pairs 4] [--rate 5900] [--idle-s 30]
 *
 * Each run is what one round of `npm run bench -- balancer-l7` does to archlab, shortened: a new
 * balancer (bench/balancer-l7/archlab.ts of the variant's tree, under its flags), 2 s + 6 s of wrk
 * at 50 connections (the closed-loop run), `idle-s` seconds of nothing (the bench measures the other
 * systems meanwhile), then the open-loop generator (fixedrate.ts) at `rate` req/s for 6 s after 2 s
 * of warm-up, through archlab and then straight to the backend. Nothing is pinned: the balancer,
 * the backend and the generator share the two cores, as in the bench. Per run: archlab's p99, and
 * the added p99 (archlab's − direct's, measured seconds apart). Pairs interleave A and B
 * (bench/ab.ts); the summary is the median of B ÷ A of archlab's p99 and the median added p99 of
 * each. A run with errors voids the A/B.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbVoid, interleavedPairs, startWithPort, stopChild as stop } from '../ab.js';
import { median } from '../harness.js';
import type { FixedRateResult } from './common.js';
import { errorCount, runWrk } from './wrk.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const ROOT = join(import.meta.dirname, '..', '..');
const variants = {
  A: { tree: opt('--a-tree', ROOT), flags: opt('--a-flags', '').split(' ').filter(Boolean) },
  B: { tree: opt('--b-tree', ROOT), flags: opt('--b-flags', '').split(' ').filter(Boolean) },
};
const pairs = Number(opt('--pairs', '4'));
const rate = Number(opt('--rate', '5900'));
const idleS = Number(opt('--idle-s', '30'));
if (!(pairs >= 1 && pairs <= 20 && rate > 0 && rate <= 50_000 && idleS >= 0 && idleS <= 600)) {
  process.stderr.write('half-ab: need 1 <= pairs <= 20, 0 < rate <= 50000, 0 <= idle-s <= 600\n');
  process.exit(2);
}

/** Runs `node [flags] --import tsx <args>` and resolves with the port of its `{"port":N}` line. */
function startNode(flags: string[], args: string[], cwd: string): Promise<{ child: ChildProcess; port: number }> {
  return startWithPort(process.execPath, [...flags, '--import', 'tsx', ...args], cwd);
}

async function output(cmd: string, cmdArgs: string[]): Promise<string> {
  const child = spawn(cmd, cmdArgs, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new AbVoid(`${cmd} ${cmdArgs.join(' ')} exited with ${code}`);
  return out;
}

async function fixedRate(port: number): Promise<FixedRateResult> {
  const out = await output(process.execPath, ['--import', 'tsx', 'bench/balancer-l7/fixedrate.ts', '--url', `http://127.0.0.1:${port}/`, '--rate', String(rate), '--duration-s', '6', '--warmup-s', '2', '--connections', '64', '--expect-bytes', '64']);
  const r = JSON.parse(out) as FixedRateResult;
  if (r.errors > 0) throw new AbVoid(`fixedrate on port ${port}: ${r.errors} errors`);
  return r;
}

interface Run {
  p99: number;
  added: number;
  detail: string;
}

async function run(name: string, backendPort: number): Promise<Run> {
  const v = variants[name as 'A' | 'B'];
  const lb = await startNode(v.flags, [join(v.tree, 'bench/balancer-l7/archlab.ts'), '--backends', `127.0.0.1:${backendPort}`], v.tree);
  try {
    for (const durationS of [2, 6]) {
      const w = await runWrk({ wrk: 'wrk', url: `http://127.0.0.1:${lb.port}/`, connections: 50, threads: 1, durationS });
      if (errorCount(w) > 0) throw new AbVoid(`wrk through archlab: ${errorCount(w)} errors`);
    }
    await sleep(idleS * 1000);
    const through = await fixedRate(lb.port);
    const direct = await fixedRate(backendPort);
    return { p99: through.p99Ms, added: through.p99Ms - direct.p99Ms, detail: `p999 ${through.p999Ms.toFixed(2)} direct p99 ${direct.p99Ms.toFixed(2)}` };
  } finally {
    await stop(lb.child);
  }
}

const added: Record<'A' | 'B', number[]> = { A: [], B: [] };
const backend = await startNode([], [join(ROOT, 'bench/balancer-l7/backend.ts'), '0'], ROOT);
process.stdout.write(`A: ${variants.A.tree} ${variants.A.flags.join(' ')}\nB: ${variants.B.tree} ${variants.B.flags.join(' ')}\n${pairs} pairs at ${rate} req/s after ${idleS} s idle\n`);
try {
  await interleavedPairs({
    treeA: 'A',
    treeB: 'B',
    pairs,
    run: async (name) => {
      const r = await run(name, backend.port);
      added[name as 'A' | 'B'].push(r.added);
      return r;
    },
    show: (r: Run) => `p99 ${r.p99.toFixed(2)} added ${r.added.toFixed(2)} ms (${r.detail})`,
    metrics: [{ name: 'p99', value: (r: Run) => r.p99 }],
  });
  process.stdout.write(`median added p99: A ${median(added.A).toFixed(2)} ms, B ${median(added.B).toFixed(2)} ms\n`);
} finally {
  await stop(backend.child);
}
