import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { once } from 'node:events';
import { isArchlabError } from './errors.js';
import { listen, runUntilSignal } from './lifecycle.js';
import type { ServerHandle } from './lifecycle.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(url: string, agent: http.Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** Registers cleanup so a failing test still frees its port and sockets. */
function cleanup(t: TestContext, handle: ServerHandle, ...more: Array<{ destroy(): void }>): void {
  t.after(async () => {
    for (const m of more) m.destroy();
    await handle.close();
  });
}

describe('listen', () => {
  test('port 0: reports the real port and a URL; closing stops accepting', async (t) => {
    const server = http.createServer((_req, res) => res.end('hi'));
    const handle = await listen(server, { port: 0 });
    cleanup(t, handle);
    assert.equal(handle.address.host, '127.0.0.1');
    assert.ok(handle.address.port > 0);
    assert.equal(handle.address.url, `http://127.0.0.1:${handle.address.port}`);
    const reply = await get(`${handle.address.url}/`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'hi');
    await handle.close();
    assert.equal(await connectRefused(handle.address.port), true);
  });

  test('EADDRINUSE rejects with a typed ListenError naming host:port', async (t) => {
    const first = await listen(http.createServer(), { port: 0 });
    cleanup(t, first);
    const second = http.createServer();
    await assert.rejects(listen(second, { port: first.address.port }), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_LISTEN_FAILED'));
      assert.ok(err.message.includes(`127.0.0.1:${first.address.port}`), err.message);
      assert.match(err.message, /EADDRINUSE/);
      assert.equal(err.retryable, true);
      return true;
    });
    assert.equal(second.listening, false);
  });

  test('bad options are refused before binding', async () => {
    await assert.rejects(listen(http.createServer(), { port: 70000 }), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
    await assert.rejects(listen(http.createServer(), { port: 0, drainTimeoutMs: -1 }), (e: unknown) =>
      isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'),
    );
  });

  test('close() with an idle keep-alive connection resolves without waiting for the drain timeout', { timeout: 15_000 }, async (t) => {
    const server = http.createServer((_req, res) => res.end('ok'));
    server.keepAliveTimeout = 600_000;
    // A drain bound far above the test timeout: only closing the idle socket at once can pass.
    const handle = await listen(server, { port: 0, drainTimeoutMs: 600_000 });
    const agent = new http.Agent({ keepAlive: true });
    cleanup(t, handle, agent);
    const reply = await get(`${handle.address.url}/`, agent);
    assert.equal(reply.status, 200);
    const sockets = Object.values(agent.freeSockets).flat();
    assert.equal(sockets.length, 1, 'the agent holds one idle keep-alive socket');
    // The agent unrefs idle sockets; ref it so the loop stays up to see the server's FIN.
    sockets[0]!.ref();
    const closedByServer = once(sockets[0]!, 'close');
    await handle.close();
    await closedByServer;
  });

  test('an in-flight request finishes during close and is answered with Connection: close', { timeout: 15_000 }, async (t) => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const arrivedP = new Promise<void>((r) => (arrived = r));
    const server = http.createServer((_req, res) => {
      arrived();
      void released.then(() => res.end('done'));
    });
    const handle = await listen(server, { port: 0, drainTimeoutMs: 600_000 });
    const agent = new http.Agent({ keepAlive: true });
    cleanup(t, handle, agent);
    const replyP = get(`${handle.address.url}/`, agent);
    await arrivedP;
    const closed = handle.close();
    let closeResolved = false;
    void closed.then(() => (closeResolved = true));
    assert.equal(await connectRefused(handle.address.port), true, 'no new connections once closing');
    assert.equal(closeResolved, false, 'close waits for the in-flight request');
    release();
    const reply = await replyP;
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'done');
    assert.equal(reply.headers.connection, 'close');
    await closed;
  });

  test('a response whose headers already went out: the connection ends after it', { timeout: 15_000 }, async (t) => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('part1 ');
      void released.then(() => res.end('part2'));
    });
    // Only close() may end this connection, not Node's keep-alive timer.
    server.keepAliveTimeout = 600_000;
    const handle = await listen(server, { port: 0, drainTimeoutMs: 600_000 });
    const agent = new http.Agent({ keepAlive: true });
    cleanup(t, handle, agent);
    const body = await new Promise<{ res: http.IncomingMessage; text: Promise<string> }>((resolve, reject) => {
      http
        .get(`${handle.address.url}/`, { agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          resolve({ res, text: once(res, 'end').then(() => Buffer.concat(chunks).toString()) });
        })
        .on('error', reject);
    });
    assert.equal(body.res.headers.connection, 'keep-alive');
    const socket = body.res.socket;
    const socketClosed = once(socket, 'close');
    const closed = handle.close();
    release();
    assert.equal(await body.text, 'part1 part2');
    await socketClosed;
    await closed;
  });

  test('a stuck request is cut after drainTimeoutMs and close() still resolves', { timeout: 15_000 }, async (t) => {
    let arrived!: () => void;
    const arrivedP = new Promise<void>((r) => (arrived = r));
    const server = http.createServer(() => arrived()); // never answers
    const handle = await listen(server, { port: 0, drainTimeoutMs: 200 });
    cleanup(t, handle);
    const req = http.get(`${handle.address.url}/`, { agent: false });
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => req.on('error', resolve));
    await arrivedP;
    await handle.close();
    const err = await failed;
    assert.match(String(err.code ?? err.message), /ECONNRESET|socket hang up/);
    assert.equal(req.socket?.destroyed ?? true, true);
  });

  test('close() twice is safe and returns the same promise', async () => {
    const handle = await listen(http.createServer(), { port: 0 });
    const a = handle.close();
    const b = handle.close();
    assert.equal(a, b);
    await Promise.all([a, b]);
    await handle.close();
  });

  test('plain TCP server: open connections are destroyed after the drain bound', { timeout: 15_000 }, async (t) => {
    const server = net.createServer(() => {
      /* holds the connection open */
    });
    const handle = await listen(server, { port: 0, drainTimeoutMs: 100 });
    assert.equal(handle.address.url, undefined);
    const client = net.connect({ host: '127.0.0.1', port: handle.address.port });
    cleanup(t, handle, client);
    client.on('error', () => {});
    await once(client, 'connect');
    // Wait until the server has accepted it, so close() sees an open socket.
    await new Promise<void>((r) => server.getConnections((_e, n) => (n > 0 ? r() : setTimeout(r, 20))));
    const clientClosed = once(client, 'close');
    await handle.close();
    await clientClosed;
  });
});

describe('runUntilSignal', () => {
  const SIG: NodeJS.Signals = 'SIGUSR2';

  /** Waits for `p`, failing after `ms`; the timer also keeps the loop alive while a signal is in transit. */
  async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new assert.AssertionError({ message: `timed out waiting for ${what}` })), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  function exitRecorder(): { codes: number[]; next: Promise<number>; exit: (code: number) => void } {
    const codes: number[] = [];
    let resolveNext!: (c: number) => void;
    const next = new Promise<number>((r) => (resolveNext = r));
    return {
      codes,
      next,
      exit: (code) => {
        codes.push(code);
        resolveNext(code);
      },
    };
  }

  test('first signal closes every handle, then exits 0', { timeout: 10_000 }, async (t) => {
    const closedOrder: string[] = [];
    const handles = ['a', 'b'].map((name) => ({
      close: async () => {
        await new Promise((r) => setTimeout(r, 10));
        closedOrder.push(name);
      },
    }));
    const rec = exitRecorder();
    const before = process.listenerCount(SIG);
    const dispose = runUntilSignal(handles, { exit: rec.exit, signals: [SIG] });
    t.after(dispose);
    assert.equal(process.listenerCount(SIG), before + 1);
    process.kill(process.pid, SIG);
    assert.equal(await within(rec.next, 5000, 'exit'), 0);
    assert.deepEqual(closedOrder.sort(), ['a', 'b']);
    assert.deepEqual(rec.codes, [0]);
    dispose();
    assert.equal(process.listenerCount(SIG), before);
  });

  test('a second signal during the drain exits at once with 130', { timeout: 10_000 }, async (t) => {
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const rec = exitRecorder();
    const dispose = runUntilSignal(
      [
        {
          close: () => {
            started();
            return new Promise<void>(() => {}); // never drains
          },
        },
      ],
      { exit: rec.exit, signals: [SIG], drainTimeoutMs: 600_000, repeatWindowMs: 0 },
    );
    t.after(dispose);
    process.emit(SIG, SIG);
    await startedP;
    process.emit(SIG, SIG);
    assert.equal(await within(rec.next, 5000, 'exit'), 130);
    process.emit(SIG, SIG); // after exit, further signals are ignored
    assert.deepEqual(rec.codes, [130]);
  });

  test('one Ctrl-C delivered twice (the terminal and npm both send it) drains; a second press after the window forces the exit', { timeout: 10_000 }, async (t) => {
    let release!: () => void;
    const rec = exitRecorder();
    const dispose = runUntilSignal([{ close: () => new Promise<void>((r) => (release = r)) }], { exit: rec.exit, signals: [SIG], drainTimeoutMs: 600_000, repeatWindowMs: 200 });
    t.after(dispose);
    process.emit(SIG, SIG);
    process.emit(SIG, SIG); // the same press, again at once
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(rec.codes, [], 'still draining');
    release();
    assert.equal(await within(rec.next, 5000, 'exit'), 0, 'drained and exited 0');

    const rec2 = exitRecorder();
    const dispose2 = runUntilSignal([{ close: () => new Promise<void>(() => {}) }], { exit: rec2.exit, signals: [SIG], drainTimeoutMs: 600_000, repeatWindowMs: 200 });
    t.after(dispose2);
    dispose();
    process.emit(SIG, SIG);
    await new Promise((r) => setTimeout(r, 300));
    process.emit(SIG, SIG); // a real second press
    assert.equal(await within(rec2.next, 5000, 'exit'), 130);
  });

  test('a drain longer than drainTimeoutMs exits 1', { timeout: 10_000 }, async (t) => {
    const rec = exitRecorder();
    const dispose = runUntilSignal([{ close: () => new Promise<void>(() => {}) }], {
      exit: rec.exit,
      signals: [SIG],
      drainTimeoutMs: 50,
    });
    t.after(dispose);
    process.emit(SIG, SIG);
    assert.equal(await within(rec.next, 5000, 'exit'), 1);
    assert.deepEqual(rec.codes, [1]);
  });

  test('a close that fails exits 1 and still closes the others', { timeout: 10_000 }, async (t) => {
    const rec = exitRecorder();
    let otherClosed = false;
    const dispose = runUntilSignal(
      [
        { close: () => Promise.reject(new RangeError('stuck')) },
        {
          close: async () => {
            otherClosed = true;
          },
        },
      ],
      { exit: rec.exit, signals: [SIG] },
    );
    t.after(dispose);
    process.emit(SIG, SIG);
    assert.equal(await within(rec.next, 5000, 'exit'), 1);
    assert.equal(otherClosed, true);
  });
});
