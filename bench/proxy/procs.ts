/**
 * Child processes for the proxy benchmark: every system under test, the target servers and the load
 * client run in their own process group, so none shares an event loop with another; stop() ends the
 * whole group, and whatever is left is killed when the bench exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BenchProcessError, canConnect, findBinary, freePort, sleep } from '../balancer-l7/procs.js';

// The process-group helpers shared with the L7 benchmark.
export { BenchProcessError, findBinary, freePort, sleep };

/** A child's first JSON line on stdout: ready (with whatever it reports), or a result. */
export type Line = Record<string, unknown>;

export function printLine(line: Line): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
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
