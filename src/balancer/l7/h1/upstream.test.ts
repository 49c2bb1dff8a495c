/**
 * H1Upstream against a raw TCP backend whose every byte the test writes: connection reuse and its
 * limits, what makes a connection unusable, the errors an exchange ends with (and in which order the
 * handler hears them), the controller (abort, pause, resume), the fallback for bodies, and refusing
 * header values that would split the request head.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Dispatcher } from 'undici';
import { ArchlabError } from '../../../core/errors.js';
import { H1Upstream, type H1UpstreamOptions } from './upstream.js';

const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Bound on every wait in this file. */
const WAIT_MS = 5000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` until it holds; fails the test with `what` after WAIT_MS. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = performance.now() + WAIT_MS;
  while (!cond()) {
    if (performance.now() >= end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** One request head the backend read, on connection number `conn` (0-based, in accept order). */
interface SeenRequest {
  conn: number;
  head: string;
  socket: net.Socket;
}

interface RawBackend {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections that have closed so far. */
  closed: number;
  /** Every byte received, per connection. */
  received: Buffer[][];
  requests: SeenRequest[];
  /** Answers each request head (no request here has a body); the default answers 200 "ok". */
  answer: (r: SeenRequest) => void;
}

/** A backend on loopback that splits what it reads at blank lines and hands each head to `answer`. */
async function rawBackend(t: TestContext): Promise<RawBackend> {
  const sockets = new Set<net.Socket>();
  const be: RawBackend = {
    port: 0,
    accepted: 0,
    closed: 0,
    received: [],
    requests: [],
    answer: (r) => r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'),
  };
  const server = net.createServer((socket) => {
    const conn = be.accepted++;
    be.received[conn] = [];
    sockets.add(socket);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      be.received[conn]!.push(chunk);
      buf = Buffer.concat([buf, chunk]);
      for (let end = buf.indexOf(CRLFCRLF); end >= 0; end = buf.indexOf(CRLFCRLF)) {
        const r = { conn, head: buf.toString('latin1', 0, end), socket };
        buf = buf.subarray(end + 4);
        be.requests.push(r);
        be.answer(r);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      be.closed++;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  be.port = (server.address() as net.AddressInfo).port;
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return be;
}

/** A port on loopback that refuses connections (bound, then released). */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A fallback that records what was dispatched to it instead of sending anything. */
function fakeFallback(): H1UpstreamOptions['fallback'] & { calls: [Dispatcher.DispatchOptions, Dispatcher.DispatchHandler][]; destroyed: number } {
  const f = {
    calls: [] as [Dispatcher.DispatchOptions, Dispatcher.DispatchHandler][],
    destroyed: 0,
    dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      f.calls.push([opts, handler]);
      return true;
    },
    async destroy(): Promise<void> {
      f.destroyed++;
    },
  };
  return f as unknown as ReturnType<typeof fakeFallback>;
}

function upstream(t: TestContext, port: number, over: Partial<H1UpstreamOptions> = {}): H1Upstream {
  const up = new H1Upstream({ host: '127.0.0.1', port, connectMs: 2000, idleMs: 10_000, maxIdle: 8, maxHeadBytes: 16 * 1024, fallback: fakeFallback(), ...over });
  t.after(() => up.destroy());
  return up;
}

/** What a handler heard, in order: "start", "head 200", "data", "end", "error <code>". */
interface Heard {
  events: string[];
  status?: number;
  headers?: IncomingHttpHeaders;
  body: Buffer[];
  error?: Error & { code?: string };
  controller?: Dispatcher.DispatchController;
  /** Settles at onResponseEnd or onResponseError. */
  done: Promise<void>;
}

type Hooks = Partial<{
  onRequestStart(c: Dispatcher.DispatchController): void;
  onResponseStart(c: Dispatcher.DispatchController): void;
  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void;
}>;

function send(up: H1Upstream, opts: Partial<Dispatcher.DispatchOptions> = {}, hooks: Hooks = {}): Heard {
  let settle!: () => void;
  const heard: Heard = { events: [], body: [], done: new Promise<void>((r) => (settle = r)) };
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      heard.controller = c;
      heard.events.push('start');
      hooks.onRequestStart?.(c);
    },
    onResponseStart(c, status, headers) {
      heard.events.push(`head ${status}`);
      heard.status = status;
      heard.headers = headers;
      hooks.onResponseStart?.(c);
    },
    onResponseData(c, chunk) {
      heard.events.push('data');
      heard.body.push(Buffer.from(chunk));
      hooks.onResponseData?.(c, chunk);
    },
    onResponseEnd() {
      heard.events.push('end');
      settle();
    },
    onResponseError(_c, err) {
      heard.events.push(`error ${(err as { code?: string }).code ?? ''}`);
      heard.error = err;
      settle();
    },
  };
  up.dispatch({ method: 'GET', path: '/', headers: { host: 'backend' }, ...opts } as Dispatcher.DispatchOptions, handler);
  return heard;
}

/** Waits for the exchange to end, bounded. */
async function settled(h: Heard): Promise<Heard> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new assert.AssertionError({ message: `exchange did not settle; heard ${h.events.join(', ')}` })), WAIT_MS);
  });
  try {
    await Promise.race([h.done, timeout]);
  } finally {
    clearTimeout(timer);
  }
  return h;
}

function body(h: Heard): string {
  return Buffer.concat(h.body).toString();
}

test('sequential requests reuse one connection; each request head is one well-formed write', async (t) => {
  const be = await rawBackend(t);
  const up = upstream(t, be.port);
  for (let i = 0; i < 5; i++) {
    const h = await settled(send(up, { path: `/n/${i}`, headers: { host: 'backend', 'x-seq': String(i), 'x-multi': ['a', 'b'] } }));
    assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
    assert.equal(body(h), 'ok');
    assert.equal(up.idleCount, 1);
  }
  assert.equal(be.accepted, 1, 'one connection carried all five');
  assert.deepEqual(
    be.requests.map((r) => r.head),
    [0, 1, 2, 3, 4].map((i) => `GET /n/${i} HTTP/1.1\r\nhost: backend\r\nx-seq: ${i}\r\nx-multi: a\r\nx-multi: b`),
  );
});

test('HEAD: the content-length of the answer is passed on, no body is awaited, and the connection is reused', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.write(r.head.startsWith('HEAD') ? 'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n' : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  const up = upstream(t, be.port);
  const head = await settled(send(up, { method: 'HEAD' }));
  assert.deepEqual(head.events, ['start', 'head 200', 'end']);
  assert.equal(head.headers!['content-length'], '1000');
  const get = await settled(send(up));
  assert.equal(body(get), 'ok');
  assert.equal(be.accepted, 1);
});

test('an idle connection the backend closed is dropped; the next request succeeds on a new one', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => {
    r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    if (r.conn === 0) setImmediate(() => r.socket.end());
  };
  const up = upstream(t, be.port);
  assert.equal(body(await settled(send(up))), 'ok');
  await until(() => up.idleCount === 0, 'the closed idle connection to be forgotten');
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
  assert.equal(be.accepted, 2);
});

test('an idle connection is closed after idleMs', async (t) => {
  const be = await rawBackend(t);
  const up = upstream(t, be.port, { idleMs: 50 });
  await settled(send(up));
  assert.equal(up.idleCount, 1);
  await until(() => be.closed === 1, 'the backend to see the idle connection close');
  assert.equal(up.idleCount, 0);
});

test('a response with connection: close, or with a close-delimited body, leaves no connection to reuse', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => {
    if (r.conn === 0) r.socket.write('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok');
    else if (r.conn === 1) r.socket.end('HTTP/1.1 200 OK\r\n\r\nuntil-close');
    else r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const up = upstream(t, be.port);
  const a = await settled(send(up));
  assert.deepEqual(a.events, ['start', 'head 200', 'data', 'end']);
  assert.equal(up.idleCount, 0);
  const b = await settled(send(up));
  assert.equal(body(b), 'until-close');
  assert.equal(b.events.at(-1), 'end');
  assert.equal(up.idleCount, 0);
  await settled(send(up));
  assert.equal(be.accepted, 3, 'each of the first two responses closed its connection');
  await until(() => be.closed === 2, 'the first two connections to close');
});

test('connect refused: onResponseError with ECONNREFUSED and no onRequestStart', async (t) => {
  const up = upstream(t, await refusedPort());
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['error ECONNREFUSED']);
  assert.equal(up.idleCount, 0);
});

test('the backend closes mid-body: onResponseError after onResponseStart, code UND_ERR_SOCKET', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..');
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  assert.equal(h.events[0], 'start');
  assert.equal(h.events[1], 'head 200');
  assert.equal(h.events.at(-1), 'error UND_ERR_SOCKET');
  assert.equal(body(h), 'only ten..');
  assert.equal(up.idleCount, 0);
});

test('the backend resets mid-body: onResponseError after onResponseStart', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => {
    r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart', () => setTimeout(() => r.socket.resetAndDestroy(), 20));
  };
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  assert.deepEqual(h.events.slice(0, 2), ['start', 'head 200']);
  assert.match(h.events.at(-1)!, /^error (ECONNRESET|UND_ERR_SOCKET)$/);
  assert.equal(up.idleCount, 0);
});

test('the backend closes before answering: onResponseError after onRequestStart, code UND_ERR_SOCKET', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.end();
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['start', 'error UND_ERR_SOCKET']);
});

test('a response with both Content-Length and Transfer-Encoding is an error, never passed on, and the connection closes', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['start', 'error ARCHLAB_UPSTREAM_PROTOCOL']);
  assert.match(h.error!.message, /Transfer-Encoding and Content-Length/);
  await until(() => be.closed === 1, 'the connection to close');
  assert.equal(up.idleCount, 0);
});

test('bytes after a complete response: the exchange ends but the connection is not reused', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
  assert.equal(up.idleCount, 0);
  await until(() => be.closed === 1, 'the connection to close');
});

test('controller.abort() mid-body: onResponseError with that very reason, and the connection is closed, not reused', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => {
    if (r.conn === 0) r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst');
    else r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const up = upstream(t, be.port);
  const reason = new ArchlabError('TEST_ABORT', 'client closed');
  const h = await settled(send(up, {}, { onResponseData: (c) => c.abort(reason) }));
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'error TEST_ABORT']);
  assert.equal(h.error, reason);
  assert.equal(h.controller!.aborted, true);
  assert.equal(h.controller!.reason, reason);
  await until(() => be.closed === 1, 'the aborted connection to close');
  assert.equal(up.idleCount, 0);
  assert.equal(body(await settled(send(up))), 'ok');
  assert.equal(be.accepted, 2);
});

test('controller.abort() in onRequestStart: nothing is written to the backend', async (t) => {
  const be = await rawBackend(t);
  const up = upstream(t, be.port);
  const reason = new ArchlabError('TEST_ABORT', 'client left');
  const h = await settled(send(up, {}, { onRequestStart: (c) => c.abort(reason) }));
  assert.deepEqual(h.events, ['start', 'error TEST_ABORT']);
  assert.equal(h.error, reason);
  await until(() => be.closed === 1, 'the connection to close');
  assert.equal(be.received[0]!.length, 0, 'no request bytes reached the backend');
  assert.equal(up.idleCount, 0);
});

test('controller.abort() after the response ended does nothing: the connection stays reusable', async (t) => {
  const be = await rawBackend(t);
  const up = upstream(t, be.port);
  const h = await settled(send(up));
  h.controller!.abort(new ArchlabError('TEST_ABORT', 'late'));
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
  assert.equal(up.idleCount, 1);
  await settled(send(up));
  assert.equal(be.accepted, 1);
});

test('pause() stops onResponseData and resume() restarts it; the body arrives whole', async (t) => {
  const be = await rawBackend(t);
  let backendSocket: net.Socket | undefined;
  be.answer = (r) => {
    if (backendSocket === undefined) {
      backendSocket = r.socket;
      r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nfirst');
    } else r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const up = upstream(t, be.port);
  let paused = false;
  const h = send(up, {}, {
    onResponseData: (c) => {
      if (!paused) {
        paused = true;
        c.pause();
      }
    },
  });
  await until(() => h.body.length === 1, 'the first body chunk');
  assert.equal(h.controller!.paused, true);
  backendSocket!.write('second!');
  // Nothing may be delivered while paused, however long we look.
  await sleep(100);
  assert.deepEqual(h.events, ['start', 'head 200', 'data']);
  h.controller!.resume();
  await settled(h);
  assert.equal(h.controller!.paused, false);
  assert.equal(body(h), 'firstsecond!');
  assert.equal(h.events.at(-1), 'end');
  assert.equal(up.idleCount, 1, 'a paused-then-resumed exchange leaves the connection reusable');
  await settled(send(up));
  assert.equal(be.accepted, 1);
});

test('pause() in onResponseData holds back the rest of a chunked body that arrived in the same read', async (t) => {
  const be = await rawBackend(t);
  be.answer = (r) => r.socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n0\r\n\r\n');
  const up = upstream(t, be.port);
  const h = send(up, {}, { onResponseData: (c) => c.pause() });
  await until(() => h.body.length >= 1, 'the first body chunk');
  await sleep(50);
  assert.deepEqual(h.events, ['start', 'head 200', 'data'], 'no data and no end while paused');
  // One chunk per resume: the handler pauses again at each.
  for (let i = 0; i < 10 && h.events.at(-1) !== 'end'; i++) {
    const n = h.events.length;
    h.controller!.resume();
    await until(() => h.events.length > n, 'the next event after resume');
  }
  await settled(h);
  assert.equal(body(h), 'abcd');
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'data', 'data', 'data', 'end']);
  assert.equal(up.idleCount, 1);
});

test('pause() in the read that also holds the end: the end waits for resume(), and the connection is not released meanwhile', async (t) => {
  const be = await rawBackend(t);
  // The whole response, then the backend closes: neither may turn a complete response into an error.
  be.answer = (r) => r.socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  const up = upstream(t, be.port);
  const h = send(up, {}, { onResponseData: (c) => c.pause() });
  await until(() => h.body.length === 1, 'the body');
  await sleep(50);
  assert.deepEqual(h.events, ['start', 'head 200', 'data']);
  assert.equal(up.idleCount, 0, 'not released while its exchange is paused');
  h.controller!.resume();
  await settled(h);
  assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
  await until(() => up.idleCount === 0 && be.closed === 1, 'the connection the backend closed to be dropped');
});

test('a request with a body goes to the fallback, untouched, and opens no connection', async (t) => {
  const be = await rawBackend(t);
  const fallback = fakeFallback();
  const up = upstream(t, be.port, { fallback });
  const opts = { method: 'POST', path: '/upload', headers: { host: 'backend', 'content-length': '5' }, body: 'hello' } as Dispatcher.DispatchOptions;
  const handler: Dispatcher.DispatchHandler = {};
  assert.equal(up.dispatch(opts, handler), true);
  assert.equal(fallback.calls.length, 1);
  assert.equal(fallback.calls[0]![0], opts);
  assert.equal(fallback.calls[0]![1], handler);
  await sleep(20);
  assert.equal(be.accepted, 0);
});

test('header names, values or a path with CR or LF: an error, and nothing is written (no connection is even opened)', async (t) => {
  const be = await rawBackend(t);
  const up = upstream(t, be.port);
  const cases: Partial<Dispatcher.DispatchOptions>[] = [
    { headers: { host: 'backend', 'x-evil': 'a\r\nx-injected: 1' } },
    { headers: { host: 'backend', 'x-evil': 'a\nb' } },
    { headers: { host: 'backend', 'x-evil': ['fine', 'a\rb'] } },
    { headers: { host: 'backend', 'x-nul': 'a\0b' } },
    { path: '/a HTTP/1.1\r\nx-injected: 1\r\n\r\nGET /b' },
    // Names too, as undici checks them: a name is never where a line can end.
    { headers: { host: 'backend', 'x-a\r\nx-injected': 'v' } },
    { headers: { host: 'backend', 'x-a: b\nc': 'v' } },
  ];
  for (const c of cases) {
    const h = await settled(send(up, c));
    assert.deepEqual(h.events, ['error UND_ERR_INVALID_ARG'], JSON.stringify(c));
  }
  await sleep(20);
  assert.equal(be.accepted, 0);
  assert.equal(be.requests.length, 0);
});

test('maxIdle: of four connections busy at once, only two are kept idle afterwards; the others close', async (t) => {
  const be = await rawBackend(t);
  const waiting: net.Socket[] = [];
  // Answer nothing until all four requests are in, so four connections are busy at once.
  be.answer = (r) => {
    waiting.push(r.socket);
    if (waiting.length === 4) for (const s of waiting) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const up = upstream(t, be.port, { maxIdle: 2 });
  const hs = [send(up), send(up), send(up), send(up)];
  for (const h of hs) await settled(h);
  for (const h of hs) assert.deepEqual(h.events, ['start', 'head 200', 'data', 'end']);
  assert.equal(be.accepted, 4);
  assert.equal(up.idleCount, 2);
  await until(() => be.closed === 2, 'the two connections over maxIdle to close');
  // Reuse takes the idle ones, last in first out: no new connection.
  be.answer = (r) => r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  await settled(send(up));
  await settled(send(up));
  assert.equal(be.accepted, 4);
});

test('idle connections are reused last in, first out', async (t) => {
  const be = await rawBackend(t);
  const held = new Map<string, SeenRequest>();
  be.answer = (r) => {
    const path = r.head.split(' ')[1]!;
    if (path === '/a' || path === '/b') held.set(path, r);
    else r.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  };
  const up = upstream(t, be.port);
  const a = send(up, { path: '/a' });
  const b = send(up, { path: '/b' });
  await until(() => held.size === 2, 'both requests to reach the backend');
  const ok = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
  // /a's connection is released first, then /b's: /b's is the last in.
  held.get('/a')!.socket.write(ok);
  await settled(a);
  held.get('/b')!.socket.write(ok);
  await settled(b);
  assert.equal(up.idleCount, 2);
  const n = be.requests.length;
  await settled(send(up, { path: '/c' }));
  assert.equal(be.requests[n]!.conn, held.get('/b')!.conn, 'the most recently released connection is taken');
});

test('destroy() closes idle connections and the fallback; later requests fail with ClientDestroyedError', async (t) => {
  const be = await rawBackend(t);
  const fallback = fakeFallback();
  const up = upstream(t, be.port, { fallback });
  await settled(send(up));
  assert.equal(up.idleCount, 1);
  await up.destroy();
  assert.equal(up.idleCount, 0);
  assert.equal(fallback.destroyed, 1);
  await until(() => be.closed === 1, 'the backend to see the idle connection close');
  const h = await settled(send(up));
  assert.deepEqual(h.events, ['error UND_ERR_DESTROYED']);
  assert.equal(be.accepted, 1);
});

test('destroy() while an exchange is in flight: it completes, then its connection is closed rather than kept', async (t) => {
  const be = await rawBackend(t);
  let held: net.Socket | undefined;
  be.answer = (r) => {
    held = r.socket;
  };
  const up = upstream(t, be.port);
  const h = send(up);
  await until(() => held !== undefined, 'the request to reach the backend');
  await up.destroy();
  held!.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  await settled(h);
  assert.equal(body(h), 'ok');
  assert.equal(up.idleCount, 0);
  await until(() => be.closed === 1, 'the connection to close');
});
