/**
 * One run of bench/cdn: its temp dir, the processes it started (each in its own process group,
 * through bench/balancer-l7/procs.ts's Child, all stopped at the end even on error), and CPU
 * pinning. Systems under test (the origin, archlab's edge, nginx, Varnish) are pinned to the last
 * core with taskset; wrk to the others, so "one process" means one core and the load generator
 * never takes the server's core. With one CPU, or without taskset, nothing is pinned (noted).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from '../harness.js';
import { ROOT } from '../harness.js';
import { Child, findBinary, freePort, httpGet } from '../balancer-l7/procs.js';
import { nginxCacheConfig, varnishArgs, varnishVcl } from './configs.js';

export interface Started {
  system: string;
  /** Base URL, no path: http://127.0.0.1:PORT */
  base: string;
  child: Child;
}

export class CdnSession {
  readonly dir = mkdtempSync(join(tmpdir(), 'archlab-bench-cdn-'));
  readonly children: Child[] = [];
  readonly taskset = findBinary('taskset');
  readonly cpuCount = cpus().length;
  readonly wrkBinary = findBinary('wrk');
  /** Measurements that processes outside the bench disturbed, noted once at the end. */
  readonly disturbed: string[] = [];
  private readonly noted = new Set<string>();

  constructor(readonly ctx: BenchContext) {}

  /** The core every system under test runs on, when pinning is possible. */
  get serverCpu(): string | undefined {
    return this.taskset && this.cpuCount >= 2 ? String(this.cpuCount - 1) : undefined;
  }

  /** The cores the load generator (wrk) runs on, when pinning is possible. */
  get loadCpus(): string | undefined {
    return this.taskset && this.cpuCount >= 2 ? (this.cpuCount === 2 ? '0' : `0-${this.cpuCount - 2}`) : undefined;
  }

  pinningNote(): string {
    if (this.serverCpu) return `every system under test (origin, archlab edge, nginx, Varnish) pinned to core ${this.serverCpu} with taskset, wrk to core(s) ${this.loadCpus}`;
    return this.taskset ? 'one CPU: the systems under test and wrk share it' : 'taskset not found: nothing pinned (apt-get install util-linux)';
  }

  noteOnce(text: string): void {
    if (this.noted.has(text)) return;
    this.noted.add(text);
    this.ctx.note(text);
  }

  /** Spawns `command` in its own process group, pinned to the server core when possible. */
  spawnPinned(name: string, command: string, args: string[]): Child {
    const cpu = this.serverCpu;
    const c = cpu ? new Child(this.taskset!, ['-c', cpu, command, ...args], { name, cwd: ROOT }) : new Child(command, args, { name, cwd: ROOT });
    this.children.push(c);
    return c;
  }

  /** A node script of bench/cdn/ printing a ready line; pinned. */
  spawnScript(name: string, script: string, arg: unknown): Child {
    return this.spawnPinned(name, process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'cdn', script), JSON.stringify(arg)]);
  }

  /** Process groups of everything this run started. */
  groups(): number[] {
    return this.children.map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** nginx with proxy_cache in front of the origin; undefined (noted) when not installed or failing. */
  async nginx(system: string, originPort: number): Promise<Started | undefined> {
    const bin = findBinary('nginx');
    if (!bin) {
      this.ctx.note(`${system} skipped: nginx is not installed (apt-get install -y nginx)`);
      return undefined;
    }
    const port = await freePort();
    const conf = join(this.dir, 'nginx.conf');
    writeFileSync(conf, nginxCacheConfig(this.dir, port, originPort));
    const child = this.spawnPinned(system, bin, ['-p', `${this.dir}/`, '-c', conf, '-e', join(this.dir, 'nginx-startup.log')]);
    try {
      await child.waitForPort(port, 15_000);
      return { system, base: `http://127.0.0.1:${port}`, child };
    } catch (err) {
      this.ctx.note(`${system} skipped: ${(err as Error).message} ${readTail(join(this.dir, 'nginx-error.log')) || readTail(join(this.dir, 'nginx-startup.log'))}`.trim());
      await child.stop();
      return undefined;
    }
  }

  /** varnishd with memory storage and one thread pool; undefined (noted) when not installed or failing. */
  async varnish(system: string, originPort: number, storageMiB: number): Promise<Started | undefined> {
    const bin = findBinary('varnishd');
    if (!bin) {
      this.ctx.note(`${system} skipped: Varnish is not installed (apt-get install -y varnish)`);
      return undefined;
    }
    const port = await freePort();
    const vcl = join(this.dir, 'bench.vcl');
    writeFileSync(vcl, varnishVcl(originPort));
    const child = this.spawnPinned(system, bin, varnishArgs(join(this.dir, 'varnish'), vcl, port, storageMiB));
    try {
      // varnishd compiles the VCL with the C compiler before it listens.
      await child.waitForPort(port, 30_000);
      return { system, base: `http://127.0.0.1:${port}`, child };
    } catch (err) {
      this.ctx.note(`${system} skipped: ${(err as Error).message}`);
      await child.stop();
      return undefined;
    }
  }

  /** A bench/cdn node script that prints `{port}` (or `{unavailable}` / `{failed}`); undefined (noted) when it cannot run. */
  async script(system: string, script: string, arg: unknown): Promise<Started | undefined> {
    const child = this.spawnScript(system, script, arg);
    try {
      const line = await child.readyLine(60_000);
      if ('port' in line) return { system, base: `http://127.0.0.1:${line.port}`, child };
      this.ctx.note(`${system} skipped: ${'unavailable' in line ? line.unavailable : `failed to start: ${line.failed}`}`);
    } catch (err) {
      this.ctx.note(`${system} skipped: ${(err as Error).message}`);
    }
    await child.stop();
    return undefined;
  }
}

/** Objects the origin at `base` has served so far (its GET /__stats). */
export async function originServed(base: string): Promise<number> {
  const r = await httpGet(`${base}/__stats`);
  return (JSON.parse(r.body) as { served: number }).served;
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}
