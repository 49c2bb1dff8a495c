/**
 * One small harness for every benchmark: warm-up, repeated runs, the median, peers side by side,
 * a note for each peer that is not installed, and results in the one schema ARCHITECTURE.md gives.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Row {
  system: string;
  scenario: string;
  metric: string;
  value: number;
  unit: string;
}

export interface Results {
  bench: string;
  date: string;
  quick: boolean;
  machine: { cpus: number; node: string; cpu?: string };
  rows: Row[];
  /** Peers skipped and why, targets met or missed: what a reader of the JSON needs to trust it. */
  notes: string[];
}

export interface BenchContext {
  quick: boolean;
  /** Adds one measured number. */
  row(row: Row): void;
  note(text: string): void;
  log(text: string): void;
}

export interface Bench {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<void> | void;
  /** The targets, each 'met' or 'MISSED' with the measured value; added to the notes. */
  targets?(results: Results): string[];
  /** Markdown for the docs page, from the finished results. */
  report?(results: Results): string;
  /** The docs page whose `<!-- bench:NAME -->` region the report replaces. */
  docsPage?: string;
}

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface RateOptions {
  /** Operations per timed run. */
  ops: number;
  /** Timed runs; the median is reported. */
  runs: number;
  /** Untimed runs first, so the JIT has settled. Default 1. */
  warmup?: number;
}

/**
 * Operations per second of `batch(ops)`, which must perform `ops` operations and return something
 * derived from their results (kept, so the work cannot be optimised away). Median of `runs` runs.
 */
export function rate(batch: (ops: number) => unknown, o: RateOptions): number {
  let sink: unknown;
  for (let i = 0; i < (o.warmup ?? 1); i++) sink = batch(o.ops);
  const samples: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    const t0 = process.hrtime.bigint();
    sink = batch(o.ops);
    const ns = Number(process.hrtime.bigint() - t0);
    samples.push((o.ops / ns) * 1e9);
  }
  keep(sink);
  return median(samples);
}

let kept: unknown;
function keep(v: unknown): void {
  kept = v;
}
export function lastKept(): unknown {
  return kept;
}

/**
 * A loop of `target.get(keys[i])` compiled afresh for each caller. V8 shares call-site feedback
 * between closures made from one function literal, so one shared loop would turn megamorphic after
 * the second subject and measure the harness instead of the subject.
 */
export function compileLookupLoop<K>(): (target: { get(key: K): unknown }, keys: ArrayLike<K>, count: number) => number {
  return new Function(
    'target',
    'keys',
    'count',
    `let acc = 0;
     const n = keys.length;
     for (let i = 0; i < count; i++) {
       const r = target.get(keys[i % n]);
       acc += typeof r === 'string' ? r.length : 1;
     }
     return acc;`,
  ) as (target: { get(key: K): unknown }, keys: ArrayLike<K>, count: number) => number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Heap bytes retained by what `build` returns, measured with forced GCs (needs --expose-gc). */
export function retainedBytes(build: () => unknown): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  // Typed arrays keep their bytes outside the JS heap: count both.
  const used = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  gc();
  const before = used();
  const held = build();
  gc();
  gc();
  const after = used();
  keep(held);
  return Math.max(0, after - before);
}

/** Loads an optional peer package; undefined (and a note saying how to install it) when absent. */
export async function peer<T>(ctx: BenchContext, pkg: string, load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' || (err as { code?: string }).code === 'MODULE_NOT_FOUND') {
      ctx.note(`peer ${pkg} not installed, skipped: npm install --no-save ${pkg}`);
      return undefined;
    }
    throw err;
  }
}

export function machine(): Results['machine'] {
  const c = cpus();
  return { cpus: c.length, node: process.version, ...(c[0] ? { cpu: c[0].model } : {}) };
}

export async function runBench(bench: Bench, quick: boolean, out: (t: string) => void = (t) => process.stdout.write(t)): Promise<Results> {
  const results: Results = { bench: bench.name, date: new Date().toISOString(), quick, machine: machine(), rows: [], notes: [] };
  const ctx: BenchContext = {
    quick,
    row(r) {
      if (!Number.isFinite(r.value)) throw new TypeError(`bench ${bench.name}: ${r.system}/${r.scenario}/${r.metric} is not a finite number`);
      results.rows.push(r);
      out(`  ${r.system.padEnd(22)} ${r.scenario.padEnd(28)} ${r.metric.padEnd(22)} ${format(r.value)} ${r.unit}\n`);
    },
    note(t) {
      results.notes.push(t);
      out(`  note: ${t}\n`);
    },
    log(t) {
      out(`${t}\n`);
    },
  };
  out(`${bench.name}${quick ? ' (quick)' : ''}: ${bench.description}\n`);
  await bench.run(ctx);
  if (bench.targets) {
    out('\ntargets\n');
    for (const t of bench.targets(results)) {
      results.notes.push(`target ${t}`);
      out(`  ${t}\n`);
    }
  }
  return results;
}

export function writeResults(results: Results): string {
  const file = join(ROOT, 'bench', 'results', `${results.bench}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  return file;
}

/** Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in a docs page. */
export function writeDocsRegion(page: string, name: string, markdown: string): boolean {
  const file = join(ROOT, page);
  const text = readFileSync(file, 'utf8');
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a < 0 || b < a) return false;
  writeFileSync(file, text.slice(0, a + open.length) + '\n' + markdown.trimEnd() + '\n' + text.slice(b));
  return true;
}

export function format(v: number): string {
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toPrecision(4);
}

/** A markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cell = (v: string | number): string => (typeof v === 'number' ? format(v) : v);
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

export function find(results: Results, q: Partial<Row>): Row | undefined {
  return results.rows.find((r) => (Object.keys(q) as (keyof Row)[]).every((k) => r[k] === q[k]));
}
