/**
 * Real independent peers for the L4 protocol tests (HAProxy, openssl s_client): find them, run
 * them as foreground children, stop them in t.after, and bound every wait.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import { ArchlabError } from '../../../src/core/errors.js';

export class PeerTestError extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_TEST_PEER', message, { details });
  }
}

/** An executable on PATH or in the sbin directories Debian uses (haproxy lives in /usr/sbin). */
export function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** `false` when `bin` exists, else the skip message; under CI=true a missing peer is a failure, not a skip. */
export function peerSkip(bin: string | undefined, name: string, install: string): false | string {
  return bin ? false : `${name} not installed (${install}); skipped`;
}

/** Rejects after `ms` with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PeerTestError(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A port free right now on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** True when this machine can listen on ::1. */
export async function haveIPv6Loopback(): Promise<boolean> {
  try {
    await freePort('::1');
    return true;
  } catch {
    return false;
  }
}

export interface Child {
  proc: ChildProcess;
  /** stdout and stderr so far, for failure messages. */
  output(): string;
}

/** Spawns a foreground child, stopped (SIGTERM, then SIGKILL after 3 s) in t.after. */
export function spawnChild(t: TestContext, bin: string, args: string[], opts: { cwd?: string; stdin?: 'pipe' | 'ignore' } = {}): Child {
  const proc = spawn(bin, args, { cwd: opts.cwd, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  proc.on('error', (err) => (out += `\nspawn error: ${err.message}`));
  t.after(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  });
  return { proc, output: () => out };
}

/** Writes `text` to a file in a fresh temp directory (removed in t.after) and returns its path. */
export function tempFile(t: TestContext, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-l4-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Resolves once `host:port` accepts a TCP connection; fails early if `child` exits. */
export async function waitForPort(child: Child, host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.proc.exitCode !== null) throw new PeerTestError(`peer exited with code ${child.proc.exitCode} before listening on ${host}:${port}:\n${child.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new PeerTestError(`nothing listening on ${host}:${port} after ${timeoutMs} ms:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends `bytes` on a fresh connection and returns everything the peer sends back until it closes. */
export function exchange(host: string, port: number, bytes: Buffer, timeoutMs = 5000): Promise<{ reply: Buffer; localPort: number }> {
  return within(
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let localPort = 0;
      const s = net.connect(port, host, () => {
        localPort = s.localPort ?? 0;
        s.write(bytes);
      });
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('close', () => resolve({ reply: Buffer.concat(chunks), localPort }));
      s.on('error', (err: NodeJS.ErrnoException) => {
        // A peer refusing the bytes may reset the connection: that is an answer too.
        if (err.code === 'ECONNRESET') return;
        reject(err);
      });
    }),
    timeoutMs,
    `a reply from ${host}:${port}`,
  );
}
