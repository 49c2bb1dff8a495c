import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../fixtures/lifecycle-server.ts', import.meta.url));

/** Resolves with the first line of `stream` that parses as JSON and satisfies `match`. */
function waitForLine(
  stream: NodeJS.ReadableStream,
  match: (obj: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: stream });
    rl.on('line', (line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (match(obj)) {
        resolve(obj);
        rl.close();
      }
    });
    rl.on('close', () => reject(new assert.AssertionError({ message: 'stream ended before the expected line' })));
  });
}

/** Races `p` against a timer so nothing in this test can hang. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new assert.AssertionError({ message: `timed out after ${ms}ms waiting for ${what}` })), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

test('SIGTERM drains the in-flight request, refuses new connections, exits 0', { timeout: 30_000 }, async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HANDLER_DELAY_MS: '300' },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // A second reader of stderr, for the shutdown log line.
  const draining = waitForLine(child.stderr!, (o) => o.msg === 'signal received, draining');
  draining.catch(() => {}); // awaited below; this only keeps an early failure from being "unhandled"

  const stdoutLines = createInterface({ input: child.stdout! });
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  stdoutLines.on('line', (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) w();
  });
  const nextEvent = async (name: string): Promise<Record<string, unknown>> => {
    for (;;) {
      const i = events.findIndex((e) => e.event === name);
      if (i >= 0) return events.splice(i, 1)[0]!;
      if (child.exitCode !== null) throw new assert.AssertionError({ message: `child exited early; stderr:\n${stderr}` });
      await new Promise<void>((r) => waiters.push(r));
    }
  };

  const { port } = await within(nextEvent('listening'), 15_000, 'the child to listen');
  assert.equal(typeof port, 'number');

  const reply = new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: port as number, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  reply.catch(() => {}); // awaited below
  await within(nextEvent('request'), 10_000, 'the request to reach the handler');

  const exited = exitOf(child);
  assert.equal(child.kill('SIGTERM'), true);
  await within(draining, 10_000, `the drain log line; stderr:\n${stderr}`);

  // The listener is closed before that line is written: a new connection must be refused.
  const refused = await within(
    new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: port as number });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    }),
    5000,
    'the post-signal connection attempt',
  );
  assert.equal(refused, 'ECONNREFUSED');

  const r = await within(reply, 10_000, 'the in-flight response');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow ok');
  assert.equal(r.connection, 'close');

  const { code, signal } = await within(exited, 10_000, 'the child to exit');
  assert.equal(signal, null, `child died of a signal; stderr:\n${stderr}`);
  assert.equal(code, 0, `stderr:\n${stderr}`);
  assert.match(stderr, /"msg":"drained, exiting"/);
});
