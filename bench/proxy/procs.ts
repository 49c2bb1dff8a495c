/**
 * Child processes for the proxy benchmark: every system under test, the target servers and the load
 * client run in their own process group, so none shares an event loop with another; stop() ends the
 * whole group, and whatever is left is killed when the bench exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { connect, createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { ArchlabError } from '../../src/core/errors.js';

export class BenchProcessError extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_BENCH_PROCESS', message, { details });
  }
}

/** A child's first JSON line on stdout: ready (with whatever it reports), or a result. */
export type Line = Record<string, unknown>;

export function printLine(line: Line): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** An executable on PATH or in the sbin directories. */
export function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const live = new Set<Child>();
let hooked = false;

export class Child {
  private readonly proc: ChildProcess;
  private buf = '';
  private readonly lines: Line[] = [];
  private waiter: (() => void) | undefined;
  private stderrTail = '';
  private exited = false;
  private readonly exit: Promise<void>;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    cwd?: string,
  ) {
    if (!hooked) {
      hooked = true;
      process.on('exit', () => {
        for (const c of live) c.kill('SIGKILL');
      });
    }
    this.proc = spawn(command, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this);
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const text = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (text.startsWith('{') && this.lines.length < 1000) {
          try {
            this.lines.push(JSON.parse(text) as Line);
          } catch {
            // not ours
          }
        }
      }
      this.waiter?.();
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (d: string) => (this.stderrTail = (this.stderrTail + d).slice(-3000)));
    this.exit = new Promise((resolve) => {
      const done = (): void => {
        this.exited = true;
        live.delete(this);
        this.waiter?.();
        resolve();
      };
      this.proc.on('exit', done);
      this.proc.on('error', (err) => {
        this.stderrTail += `spawn failed: ${err.message}`;
        done();
      });
    });
  }

  /** Waits for the next JSON line that has `key` (or one of the keys). */
  async line(key: string | string[], timeoutMs: number): Promise<Line> {
    const keys = typeof key === 'string' ? [key] : key;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => keys.some((k) => k in l));
      if (i >= 0) return this.lines.splice(i, 1)[0]!;
      if (this.exited) throw new BenchProcessError(`${this.name} exited before printing "${key}": ${this.stderrTail.trim().split('\n').slice(-5).join(' | ')}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new BenchProcessError(`${this.name}: no "${key}" line within ${timeoutMs} ms; stderr: ${this.stderrTail.trim().slice(-500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  /** Waits until `port` accepts connections (for tinyproxy, which prints nothing useful). */
  async waitForPort(port: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await canConnect(port))) {
      if (this.exited) throw new BenchProcessError(`${this.name} exited: ${this.stderrTail.trim().slice(-500)}`);
      if (performance.now() > deadline) throw new BenchProcessError(`${this.name}: port ${port} not open within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  get done(): boolean {
    return this.exited;
  }

  /** Resolves when the child exits by itself. */
  wait(): Promise<void> {
    return this.exit;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.proc.pid === undefined) return;
    try {
      process.kill(-this.proc.pid, signal);
    } catch {
      // already gone
    }
  }

  async stop(graceMs = 3000): Promise<void> {
    if (this.exited) return;
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(t);
    this.kill('SIGKILL');
  }
}

function canConnect(port: number): Promise<boolean> {
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
