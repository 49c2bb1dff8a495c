/**
 * How steady is this machine's core? (not a test; not registered with bench/run.ts)
 *
 *   node --import tsx bench/balancer-l7/vm-speed.ts [windows=10] [seconds=3]
 *
 * The L7 bench's req/s ratios (archlab against http-proxy) come from runs a minute apart, so they
 * are only as steady as the core's speed over that time. This measures it, beside the proxies'
 * own cost, in alternating windows:
 *
 * - a probe pinned to CPU 0 times fixed work: 3e7 steps of integer arithmetic (user space only)
 *   and 100,000 system calls (a 256-byte write to /dev/null and a read from /dev/zero, alternately);
 * - archlab's balancer and http-proxy, each one process pinned to CPU 0, are loaded in turn (the
 *   order alternating by window) by wrk (one thread, 50 connections) on CPU 1, beside the backend (bench/balancer-l7/backend.ts), for
 *   `seconds` each; their CPU per 1,000 requests comes from /proc (utime + stime).
 *
 * Per window it prints the probe's two times, each proxy's CPU per 1k requests and req/s, and the
 * req/s ratio; at the end the spread (max ÷ min) of each column and the correlation of each proxy's
 * CPU per request with the probe's system-call time.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { startPinned, stopChild } from '../ab.js';
import { processCpuMs } from './procs.js';
import { errorCount, runWrk } from './wrk.js';

const ROOT = join(import.meta.dirname, '..', '..');
const ARITH_STEPS = 3e7;
const SYSCALL_PAIRS = 50_000;

export interface ProbeResult {
  /** ms for ARITH_STEPS steps of integer arithmetic. */
  arithMs: number;
  /** ns per system call, over 2 × SYSCALL_PAIRS of them. */
  syscallNs: number;
}

function arith(): number {
  let x = 0;
  for (let i = 0; i < ARITH_STEPS; i++) x = (x * 31 + i) | 0;
  return x;
}

/** The probe's work, timed after one untimed pass (so the loop is compiled). */
export function probe(): ProbeResult {
  const buf = Buffer.alloc(256, 7);
  const sink = openSync('/dev/null', 'w');
  const zero = openSync('/dev/zero', 'r');
  try {
    arith();
    let t = performance.now();
    if (arith() === 0.5) process.stdout.write(''); // keeps the result alive
    const arithMs = performance.now() - t;
    t = performance.now();
    for (let i = 0; i < SYSCALL_PAIRS; i++) {
      writeSync(sink, buf);
      readSync(zero, buf);
    }
    const syscallNs = ((performance.now() - t) * 1e6) / (2 * SYSCALL_PAIRS);
    return { arithMs, syscallNs };
  } finally {
    closeSync(sink);
    closeSync(zero);
  }
}

/** Pearson's r of two equally long series. */
export function correlation(a: number[], b: number[]): number {
  const n = a.length;
  const ma = a.reduce((x, y) => x + y, 0) / n;
  const mb = b.reduce((x, y) => x + y, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i]! - ma) * (b[i]! - mb);
    saa += (a[i]! - ma) ** 2;
    sbb += (b[i]! - mb) ** 2;
  }
  return saa === 0 || sbb === 0 ? 0 : sab / Math.sqrt(saa * sbb);
}

function runProbe(): ProbeResult {
  const out = execFileSync('taskset', ['-c', '0', process.execPath, '--import', 'tsx', join(ROOT, 'bench/balancer-l7/vm-speed.ts'), '--probe'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as ProbeResult;
}

interface Load {
  rps: number;
  cpuPer1k: number;
}

async function load(pid: number, port: number, seconds: number): Promise<Load> {
  const cpu0 = processCpuMs(pid);
  const w = await runWrk({ wrk: 'wrk', url: `http://127.0.0.1:${port}/`, connections: 50, threads: 1, durationS: seconds, pin: { taskset: 'taskset', cpus: '1' } });
  const cpu = processCpuMs(pid) - cpu0;
  if (errorCount(w) > 0) process.stdout.write(`  (${errorCount(w)} errors or non-2xx answers in this window)\n`);
  return { rps: w.rps, cpuPer1k: (cpu / w.requests) * 1000 };
}

async function main(windows: number, seconds: number): Promise<void> {
  const pinned = (cpu: number, args: string[]) => startPinned(cpu, args, ROOT);
  const backend = await pinned(1, [join(ROOT, 'bench/balancer-l7/backend.ts'), '0']);
  const archlab = await pinned(0, [join(ROOT, 'bench/balancer-l7/archlab.ts'), '--backends', `127.0.0.1:${backend.port}`]);
  const httpProxy = await pinned(0, [join(ROOT, 'bench/balancer-l7/http-proxy.ts'), String(backend.port)]);
  const rows: { p: ProbeResult; a: Load; h: Load }[] = [];
  try {
    // Warm-up: both proxies compiled and their connection pools full.
    await load(archlab.child.pid!, archlab.port, 1);
    await load(httpProxy.child.pid!, httpProxy.port, 1);
    process.stdout.write('window | arith ms | syscall ns | archlab CPU/1k | archlab req/s | http-proxy CPU/1k | http-proxy req/s | req/s ratio\n');
    for (let w = 1; w <= windows; w++) {
      const p = runProbe();
      // The order alternates, so that neither proxy always runs right after the probe.
      const first = w % 2 === 1 ? archlab : httpProxy;
      const second = first === archlab ? httpProxy : archlab;
      const one = await load(first.child.pid!, first.port, seconds);
      const two = await load(second.child.pid!, second.port, seconds);
      const [a, h] = first === archlab ? [one, two] : [two, one];
      rows.push({ p, a, h });
      process.stdout.write(
        `${w} | ${p.arithMs.toFixed(1)} | ${p.syscallNs.toFixed(0)} | ${a.cpuPer1k.toFixed(1)} | ${a.rps.toFixed(0)} | ${h.cpuPer1k.toFixed(1)} | ${h.rps.toFixed(0)} | ${(a.rps / h.rps).toFixed(2)}x\n`,
      );
    }
  } finally {
    await Promise.all([stopChild(archlab.child), stopChild(httpProxy.child), stopChild(backend.child)]);
  }
  const spread = (xs: number[]) => (Math.max(...xs) / Math.min(...xs)).toFixed(2);
  const col = {
    arith: rows.map((r) => r.p.arithMs),
    sys: rows.map((r) => r.p.syscallNs),
    a: rows.map((r) => r.a.cpuPer1k),
    h: rows.map((r) => r.h.cpuPer1k),
    ratio: rows.map((r) => r.a.rps / r.h.rps),
  };
  process.stdout.write(
    `spread (max/min): arith ${spread(col.arith)}, syscall ${spread(col.sys)}, archlab CPU/1k ${spread(col.a)}, http-proxy CPU/1k ${spread(col.h)}, ratio ${spread(col.ratio)} (from ${Math.min(...col.ratio).toFixed(2)}x to ${Math.max(...col.ratio).toFixed(2)}x)\n` +
      `correlation with syscall ns: archlab CPU/1k r = ${correlation(col.sys, col.a).toFixed(2)}, http-proxy CPU/1k r = ${correlation(col.sys, col.h).toFixed(2)}\n`,
  );
}

if (import.meta.filename === process.argv[1]) {
  if (process.argv[2] === '--probe') process.stdout.write(JSON.stringify(probe()) + '\n');
  else await main(Math.max(2, Number(process.argv[2] ?? 10)), Math.max(1, Number(process.argv[3] ?? 3)));
}
