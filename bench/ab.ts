/**
 * What the A/B scripts share (bench/balancer-l7/ab.ts and half-ab.ts, bench/queue/tcp-ab.ts): two
 * source trees, or two variants, measured in interleaved pairs, the order alternating from pair to
 * pair, each pair compared as B ÷ A and the pairs summarised by their median; and starting and
 * stopping the processes measured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ArchlabError } from '../src/core/errors.js';
import { median } from './harness.js';

/** A process that would not start, or a run that failed its check: the A/B is void. */
export class AbVoid extends ArchlabError {
  constructor(message: string) {
    super('ARCHLAB_BENCH_VOID', message);
  }
}

export interface AbMetric<R> {
  /** As printed: "req/s", "CPU per request". */
  name: string;
  value(r: R): number;
}

/**
 * Runs `pairs` pairs of run(treeA) and run(treeB), A first in odd pairs and B first in even ones;
 * prints each pair (`show`) with B ÷ A of each metric, then the medians of those ratios.
 */
export async function interleavedPairs<R>(o: {
  treeA: string;
  treeB: string;
  pairs: number;
  run: (tree: string) => Promise<R>;
  show: (r: R) => string;
  metrics: readonly AbMetric<R>[];
}): Promise<void> {
  const ratios = o.metrics.map(() => [] as number[]);
  for (let p = 0; p < o.pairs; p++) {
    let a: R;
    let b: R;
    if (p % 2 === 0) {
      a = await o.run(o.treeA);
      b = await o.run(o.treeB);
    } else {
      b = await o.run(o.treeB);
      a = await o.run(o.treeA);
    }
    const line = o.metrics.map((m, i) => {
      const ratio = m.value(b) / m.value(a);
      ratios[i]!.push(ratio);
      return `${m.name} ${ratio.toFixed(3)}`;
    });
    process.stdout.write(`pair ${p + 1}: A ${o.show(a)} | B ${o.show(b)} | B/A ${line.join(', ')}\n`);
  }
  process.stdout.write(`median B/A over ${o.pairs} pairs: ${o.metrics.map((m, i) => `${m.name} ${median(ratios[i]!).toFixed(3)}`).join(', ')}\n`);
}

/**
 * Runs `command args` in `cwd` (stdout piped, stderr inherited) and resolves with the port of the
 * first `"port":N` it prints; an exit before that voids the A/B.
 */
export async function startWithPort(command: string, args: string[], cwd: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new AbVoid(`${args.find((a) => a.endsWith('.ts')) ?? command} exited with ${code}: ${out}`)));
  });
  return { child, port };
}

/** Starts `node --import tsx <args>` pinned to `cpu` (taskset) and resolves with the port of its `{"port":N}` line. */
export function startPinned(cpu: number, args: string[], cwd: string): Promise<{ child: ChildProcess; port: number }> {
  return startWithPort('taskset', ['-c', String(cpu), process.execPath, '--import', 'tsx', ...args], cwd);
}

/** SIGTERM, and resolves once the process has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}
