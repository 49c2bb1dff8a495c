/**
 * Child processes for the L7 benchmark: each system under test runs in its own process group, so
 * it never shares an event loop with the load generator, and stopping the group stops every
 * process it forked (nginx's worker, a cluster's workers). Every group started is stopped at the
 * end, and on exit if the bench dies first.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { createServer, connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { delimiter, join } from 'node:path';
import { ArchlabError } from '../../src/core/errors.js';
import { ROOT } from '../harness.js';
import type { ReadyLine } from './common.js';

export class BenchProcessError extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_BENCH_PROCESS', message, { details });
  }
}

/** An executable on PATH, or in the sbin directories Debian puts nginx and haproxy in. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

const require = createRequire(import.meta.url);

/** True when `pkg` resolves from the project (installed), without loading it. */
export function hasPackage(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** A port free right now on 127.0.0.1 (for configs that need a fixed port: nginx, HAProxy, a cluster). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const live = new Set<Child>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous last resort: 'exit' handlers cannot wait, so SIGKILL whatever is left.
  process.on('exit', () => {
    for (const c of live) c.killNow();
  });
}

export interface SpawnOptions {
  name: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** One process group under test. */
export class Child {
  readonly name: string;
  private readonly proc: ChildProcess;
  private stderrTail = '';
  private stdoutBuf = '';
  private readonly lines: string[] = [];
  private lineWaiter: (() => void) | undefined;
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exitPromise: Promise<void>;

  constructor(command: string, args: string[], o: SpawnOptions) {
    installExitHook();
    this.name = o.name;
    // detached: a new session and process group, so one kill(-pid) reaches every descendant.
    this.proc = spawn(command, args, { cwd: o.cwd, env: o.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.proc.stdout?.setEncoding('utf8');
    this.proc.stdout?.on('data', (d: string) => {
      // Keep only the first lines (the ready line); later output is drained so the pipe never fills.
      if (this.lines.length >= 20) return;
      this.stdoutBuf += d;
      let nl: number;
      while ((nl = this.stdoutBuf.indexOf('\n')) >= 0) {
        this.lines.push(this.stdoutBuf.slice(0, nl));
        this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      }
      this.lineWaiter?.();
    });
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-4000);
    });
    this.exitPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exited = { code, signal };
        live.delete(this);
        this.lineWaiter?.();
        resolve();
      });
      this.proc.on('error', (err) => {
        this.stderrTail += `\nspawn failed: ${err.message}`;
        this.exited = { code: -1, signal: null };
        live.delete(this);
        this.lineWaiter?.();
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get hasExited(): boolean {
    return this.exited !== undefined;
  }

  /** The last of what it wrote on stderr, for error messages. */
  stderr(): string {
    return this.stderrTail.trim();
  }

  describeExit(): string {
    const e = this.exited;
    const how = e ? (e.signal ? `killed by ${e.signal}` : `exited with code ${e.code}`) : 'still running';
    const err = this.stderr();
    return `${this.name} ${how}${err ? `: ${err.split('\n').slice(-6).join(' | ')}` : ''}`;
  }

  /** Waits for the child's JSON ready line (child scripts print one). */
  async readyLine(timeoutMs: number): Promise<ReadyLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const l of this.lines) {
        if (!l.startsWith('{')) continue;
        try {
          const parsed = JSON.parse(l) as ReadyLine;
          if ('port' in parsed || 'unavailable' in parsed || 'failed' in parsed) return parsed;
        } catch {
          // not our line
        }
      }
      if (this.exited) throw new BenchProcessError(`${this.describeExit()} before it was ready`);
      const left = deadline - Date.now();
      if (left <= 0) throw new BenchProcessError(`${this.name} not ready within ${timeoutMs} ms${this.stderr() ? `: ${this.stderr()}` : ''}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.lineWaiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.lineWaiter = undefined;
    }
  }

  /** Waits until `port` accepts a TCP connection (for nginx and HAProxy, which print nothing). */
  async waitForPort(port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await canConnect(port))) {
      if (this.exited) throw new BenchProcessError(`${this.describeExit()} before port ${port} accepted connections`);
      if (Date.now() > deadline) throw new BenchProcessError(`${this.name}: port ${port} not accepting connections within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** CPU time (user + system) of every process in the group so far, in ms. */
  cpuMs(): number {
    return this.proc.pid === undefined ? 0 : groupCpuMs(this.proc.pid);
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader has exited. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exited || this.proc.pid === undefined) return;
    signalGroup(this.proc.pid, 'SIGTERM');
    const t = setTimeout(() => this.killNow(), graceMs);
    await this.exitPromise;
    clearTimeout(t);
    // The leader is gone; make sure nothing it forked outlives it.
    signalGroup(this.proc.pid, 'SIGKILL');
  }

  killNow(): void {
    if (this.proc.pid !== undefined) signalGroup(this.proc.pid, 'SIGKILL');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}

/** True when 127.0.0.1:`port` accepts a TCP connection within 500 ms. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Sum of utime + stime of the processes whose process group is `pgid`, from /proc (Linux). */
export function groupCpuMs(pgid: number): number {
  return cpuByGroup().get(pgid) ?? 0;
}

/** Fields after the ")" that closes the command name: state(3) ppid pgrp(5) ... utime(14) stime(15). */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of process `pid` so far, ms, from /proc (Linux). */
export function processCpuMs(pid: number): number {
  const f = statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return (Number(f[11]) + Number(f[12])) * (1000 / ticksPerSecond());
}

/** CPU time (utime + stime, ms) of every live process on the machine, summed by process group. */
export function cpuByGroup(): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  const msPerTick = 1000 / ticksPerSecond();
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const f = statFields(stat);
    const pgid = Number(f[2]);
    out.set(pgid, (out.get(pgid) ?? 0) + (Number(f[11]) + Number(f[12])) * msPerTick);
  }
  return out;
}

/**
 * What the machine's CPUs did, so a run can tell how much of them processes outside the bench
 * took. `selfMs` is this process plus its reaped children (wrk, the fixed-rate generator).
 */
export interface CpuSnapshot {
  at: number;
  machineBusyMs: number;
  groups: Map<number, number>;
  selfMs: number;
}

export function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal: all CPUs together, in clock ticks. Only
    // time spent in processes counts: interrupt time is mostly loopback traffic the bench makes,
    // and no process is charged for it.
    const t = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const busy = (t[0] ?? 0) + (t[1] ?? 0) + (t[2] ?? 0);
    const self = readFileSync('/proc/self/stat', 'utf8');
    const f = self.slice(self.lastIndexOf(')') + 2).split(' ');
    const msPerTick = 1000 / ticksPerSecond();
    return {
      at: performance.now(),
      machineBusyMs: busy * msPerTick,
      groups: cpuByGroup(),
      selfMs: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * msPerTick,
    };
  } catch {
    return undefined;
  }
}

/**
 * Share of the machine's CPU capacity (all cores) that processes other than this one, its reaped
 * children and the process groups `ours` used between two snapshots: load the bench did not make.
 */
export function otherCpuShare(a: CpuSnapshot, b: CpuSnapshot, ours: number[], cpus: number): number {
  const mine = b.selfMs - a.selfMs + groupsCpuMs(a, b, ours);
  return shareOfMachine(a, b, b.machineBusyMs - a.machineBusyMs - mine, cpus);
}

/** Share of the machine's CPU capacity (all cores) the process groups `ours` used between two snapshots. */
export function benchCpuShare(a: CpuSnapshot, b: CpuSnapshot, ours: number[], cpus: number): number {
  return shareOfMachine(a, b, groupsCpuMs(a, b, ours), cpus);
}

/** CPU ms the process groups `ours` used between two snapshots. */
function groupsCpuMs(a: CpuSnapshot, b: CpuSnapshot, ours: number[]): number {
  let used = 0;
  for (const g of new Set(ours)) used += (b.groups.get(g) ?? 0) - (a.groups.get(g) ?? 0);
  return used;
}

/** `ms` of CPU as a share of all cores over the time between two snapshots (0 when none passed). */
function shareOfMachine(a: CpuSnapshot, b: CpuSnapshot, ms: number, cpus: number): number {
  const capacity = (b.at - a.at) * cpus;
  return capacity > 0 ? Math.max(0, ms / capacity) : 0;
}

export interface GetResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One GET on a fresh connection, bounded by `timeoutMs`. */
export function httpGet(url: string, timeoutMs = 5000): Promise<GetResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 1 << 20) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new BenchProcessError(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Runs a child to completion and parses the last JSON line it prints; bounded by `timeoutMs`. */
export function runJson<T>(command: string, args: string[], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-2000)));
    const guard = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as T);
      else reject(new BenchProcessError(`${signal ? `killed by ${signal}` : `exited with code ${code}`}: ${err.trim() || out.trim()}`));
    });
  });
}
