/** Shared by the `archlab up` tests: small topologies in temp dirs, bounded waits, port probes. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseTopology, type Topology, type TopologyInput } from '../../src/up/topology.js';

/** A temp dir removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'archlab-up-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The small topology of the tests: 1 region, 2 app instances, memory cache, SQLite in `dir`, embedded
 * queue, the load generator idle (tests that count requests exactly turn it on themselves, or not).
 */
export const SMALL_TOPOLOGY: TopologyInput = {
  name: 'test',
  clients: { rate: 0 },
  cdn: { regions: [{ name: 'eu', edges: 1 }] },
  app: { instances: 2, data: { products: 60, users: 5 } },
  cache: { engine: 'memory', strategy: 'cache-aside' },
  queue: { engine: 'embedded', worker: { work: '1ms' } },
};

export function smallTopology(dataDir: string, extra: Partial<TopologyInput> = {}): Topology {
  return parseTopology({ ...SMALL_TOPOLOGY, ...extra, dataDir });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it returns true, for at most `timeoutMs`; fails with `what`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** What 127.0.0.1:port does with a TCP connection: accepts it, refuses it (ECONNREFUSED), or something else (bounded by 2 s). */
export function probe(port: number): Promise<'accepts' | 'refused' | string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (result: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done('timeout'), 2000);
    socket.once('connect', () => done('accepts'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? err.message)));
  });
}

/** `n` distinct ports free at the time of the call (listened on, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

export interface Exit {
  code: number | null;
  signal: string | null;
}

/** A child process with its output captured (killed with SIGKILL when the test ends, if still running). */
export interface CapturedChild {
  child: ChildProcessByStdio<null, Readable, Readable>;
  out(): string;
  err(): string;
  /** Resolves when the child exits. */
  exited: Promise<Exit>;
  /** Resolves once stdout matches `re`; fails after `timeoutMs`, or at once if the child exits first. */
  waitForOut(re: RegExp, timeoutMs: number, what: string): Promise<void>;
  /** The exit, failing if it takes longer than `timeoutMs`. */
  exit(timeoutMs: number, what: string): Promise<Exit>;
}

/** `node --import tsx <script> ...args` with stdout and stderr captured. */
export function spawnTsx(t: TestContext, script: string, args: readonly string[], cwd?: string): CapturedChild {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd === undefined ? {} : { cwd }) });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const fail = (message: string): assert.AssertionError => new assert.AssertionError({ message: `${message}; stdout: ${out}\nstderr: ${err}` });
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    waitForOut: (re, timeoutMs, what) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(fail(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
        const check = (): void => {
          if (!re.test(out)) return;
          clearTimeout(timer);
          child.stdout.off('data', check);
          resolve();
        };
        child.stdout.on('data', check);
        check();
        void exited.then(() => {
          clearTimeout(timer);
          reject(fail(`exited before its ${what}`));
        });
      }),
    exit: (timeoutMs, what) => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([exited, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(fail(`no exit within ${timeoutMs} ms ${what}`)), timeoutMs)))]).finally(() => clearTimeout(timer));
    },
  };
}
