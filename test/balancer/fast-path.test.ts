/**
 * The balancer's HTTP/1.1 fast path (l7/h1/inbound.ts) end to end, driven by a raw keep-alive
 * client on one socket: request after request, pipelining, the hand-off to node:http in the middle of
 * a connection, smuggling shapes, response framing (Content-Length, chunked, HEAD, 204, 304), a large
 * download with a slow reader, clients and backends that leave, timeouts and shutdown.
 *
 * Which stack answered is read from the response head: the fast path writes its own fields in lower
 * case (`connection: keep-alive`, `keep-alive: timeout=N`, `transfer-encoding: chunked`) while
 * node:http writes `Connection`, `Keep-Alive` and `Transfer-Encoding`. The backend's own fields reach
 * the client in lower case either way (the proxy forwards them so), so only these tell.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type * as http from 'node:http';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { backend, balancer, deadPort, sleep, waitFor, type TestBackend } from './helpers.js';

/** Bound on every wait for the balancer in this file, ms. */
const WAIT_MS = 10_000;
const MiB = 1024 * 1024;
const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

interface RawResponse {
  status: number;
  /** The head as sent, without its blank line. */
  head: string;
  /** Field names exactly as sent, in order. */
  names: string[];
  /** Lowercase names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** Bytes of body seen (also when they went to onBody instead of `body`). */
  bodyBytes: number;
}

interface ReadOptions {
  /** The request was HEAD: no body whatever the fields say. */
  head?: boolean;
  /** Takes the body instead of collecting it. */
  onBody?: (chunk: Buffer) => void;
  timeoutMs?: number;
}

/**
 * A keep-alive HTTP/1.1 client on one raw socket: writes whatever it is given and reads responses
 * framed by Content-Length, chunked encoding, or the end of the connection. Every wait is bounded.
 */
class RawClient {
  /** Bytes received and not yet taken, in arrival order. */
  private parts: Buffer[] = [];
  private length = 0;
  /** The server ended or closed the connection. */
  eof = false;
  closed = false;
  private wake: (() => void) | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.parts.push(chunk);
      this.length += chunk.length;
      this.wake?.();
    });
    socket.on('end', () => {
      this.eof = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.eof = true;
      this.closed = true;
      this.wake?.();
    });
  }

  static async connect(t: TestContext, port: number): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    t.after(() => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Bytes received and not yet read as part of a response. */
  get buffered(): number {
    return this.length;
  }

  /** Waits for more bytes (or the end of the connection) until `deadline`. */
  private more(deadline: number, what: string): Promise<void> {
    if (this.eof) assert.fail(`connection closed while waiting for ${what}`);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        reject(new assert.AssertionError({ message: `timed out waiting for ${what}` }));
      }, Math.max(0, deadline - performance.now()));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** Everything buffered as one Buffer (the parts are joined only while looking for a delimiter). */
  private flat(): Buffer {
    if (this.parts.length > 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0] ?? Buffer.alloc(0);
  }

  private take(n: number): Buffer {
    const all = this.flat();
    this.parts = n < all.length ? [all.subarray(n)] : [];
    this.length -= n;
    return all.subarray(0, n);
  }

  /** Up to `max` bytes from the front without joining parts (for bodies). */
  private takeSome(max: number): Buffer {
    const first = this.parts[0]!;
    if (first.length <= max) {
      this.parts.shift();
      this.length -= first.length;
      return first;
    }
    this.parts[0] = first.subarray(max);
    this.length -= max;
    return first.subarray(0, max);
  }

  private async until(sep: Buffer, deadline: number, what: string): Promise<Buffer> {
    for (;;) {
      const i = this.flat().indexOf(sep);
      if (i >= 0) {
        const got = this.take(i);
        this.take(sep.length);
        return got;
      }
      await this.more(deadline, what);
    }
  }

  private async exactly(n: number, deadline: number, what: string, sink: (b: Buffer) => void): Promise<void> {
    let left = n;
    while (left > 0) {
      while (this.length === 0) await this.more(deadline, what);
      const b = this.takeSome(left);
      left -= b.length;
      sink(b);
    }
  }

  /** Reads one response. */
  async response(o: ReadOptions = {}): Promise<RawResponse> {
    const deadline = performance.now() + (o.timeoutMs ?? WAIT_MS);
    const head = (await this.until(CRLFCRLF, deadline, 'a response head')).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    assert.ok(m, `status line: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const names: string[] = [];
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      assert.ok(colon > 0, `field line: ${JSON.stringify(line)}`);
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      names.push(name);
      const k = name.toLowerCase();
      headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`;
    }
    const kept: Buffer[] = [];
    let bodyBytes = 0;
    const sink = (b: Buffer): void => {
      bodyBytes += b.length;
      if (o.onBody) o.onBody(b);
      else kept.push(b);
    };
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    if (o.head || status === 204 || status === 304 || status < 200) {
      // no body
    } else if (te !== undefined) {
      assert.equal(te.toLowerCase(), 'chunked');
      assert.equal(cl, undefined, 'both Transfer-Encoding and Content-Length');
      for (let i = 0; ; i++) {
        assert.ok(i < 1_000_000, 'too many chunks');
        const line = (await this.until(CRLF, deadline, 'a chunk size')).toString('latin1');
        assert.match(line, /^[0-9a-f]+$/i, 'chunk size line');
        const size = parseInt(line, 16);
        if (size === 0) {
          // Trailer section (none expected): up to an empty line.
          for (let j = 0; j < 100; j++) if ((await this.until(CRLF, deadline, 'the end of the trailers')).length === 0) break;
          break;
        }
        await this.exactly(size, deadline, 'chunk data', sink);
        const after = await this.until(CRLF, deadline, 'the CRLF after chunk data');
        assert.equal(after.length, 0, 'chunk data not followed by CRLF');
      }
    } else if (cl !== undefined) {
      assert.match(cl, /^\d+$/);
      await this.exactly(Number(cl), deadline, `a body of ${cl} bytes`, sink);
    } else {
      // Close-delimited.
      for (;;) {
        while (this.length > 0) sink(this.takeSome(this.length));
        if (this.eof) break;
        await this.more(deadline, 'the end of a close-delimited body').catch((err: unknown) => {
          if (!this.eof) throw err;
        });
      }
    }
    return { status, head, names, headers, body: Buffer.concat(kept), bodyBytes };
  }

  /** Resolves once the server has closed the connection (this side sees the end); fails after `timeoutMs`. */
  async waitEnd(timeoutMs = WAIT_MS): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.eof) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.wake = undefined;
          reject(new assert.AssertionError({ message: 'timed out waiting for the server to close the connection' }));
        }, Math.max(0, deadline - performance.now()));
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }
}

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: fast.test\r\n${extra}\r\n`;
}

/** The head was written by the fast path: its own fields, lower case, and keep-alive unless `close`. */
function assertFastHead(r: RawResponse, close = false): void {
  if (close) assert.ok(r.names.includes('connection') && r.headers.connection === 'close', `fast path, closing:\n${r.head}`);
  else {
    assert.ok(r.names.includes('connection') && r.headers.connection === 'keep-alive', `fast path keep-alive:\n${r.head}`);
    assert.ok(r.names.includes('keep-alive'), `fast path keep-alive timeout:\n${r.head}`);
  }
  assert.ok(!r.names.includes('Connection') && !r.names.includes('Keep-Alive') && !r.names.includes('Transfer-Encoding'), `no node:http fields:\n${r.head}`);
}

/** The head was written by node:http's ServerResponse. */
function assertNodeHttpHead(r: RawResponse): void {
  assert.ok(r.names.includes('Connection'), `node:http writes Connection:\n${r.head}`);
  assert.ok(!r.names.includes('connection'), `no fast-path connection field:\n${r.head}`);
}

/** A backend answering `body:<url>` to everything, unless `handler` takes the request. */
function echoBackend(t: TestContext, handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | void): Promise<TestBackend> {
  return backend(t, 'echo', (req, res) => {
    if (handler?.(req, res) === true) return true;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.length > 0 ? `body:${req.url}:${req.method}:${body.toString()}` : `body:${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    return true;
  });
}

function lbFor(t: TestContext, ...addresses: string[]): ReturnType<typeof balancer> {
  return lbWith(t, {}, ...addresses);
}

function lbWith(t: TestContext, extra: Record<string, unknown>, ...addresses: string[]): ReturnType<typeof balancer> {
  return balancer(t, {
    pools: [{ name: 'app', algorithm: 'round-robin', backends: addresses.map((address, i) => ({ id: `b${i}`, address })) }],
    timeouts: { drain: '1s' },
    ...extra,
  });
}

function portOf(lb: { listeners: { port: number }[] }): number {
  return lb.listeners[0]!.port;
}

test('keep-alive GETs on one connection: all answered on the fast path, with the forwarding fields', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  for (let i = 0; i < 6; i++) {
    // With and without an explicit Connection: keep-alive (both are the fast path's shape).
    c.send(get(`/k/${i}?q=${i}`, i % 2 === 0 ? '' : 'Connection: keep-alive\r\n'));
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `body:/k/${i}?q=${i}`);
    assertFastHead(r);
    assert.equal(r.headers['keep-alive'], 'timeout=5');
    assert.match(r.headers.via ?? '', /1\.1 archlab/);
    assert.ok(r.headers.date, 'a Date field');
  }
  assert.equal(c.eof, false, 'the connection stays open');
  assert.equal(be.seen.length, 6);
  const ids = new Set<string>();
  for (const [i, s] of be.seen.entries()) {
    assert.equal(s.method, 'GET');
    assert.equal(s.url, `/k/${i}?q=${i}`);
    assert.equal(s.headers.host, 'fast.test');
    assert.equal(s.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(s.headers['x-forwarded-proto'], 'http');
    assert.match(String(s.headers.via), /1\.1 archlab/);
    assert.match(String(s.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    ids.add(String(s.headers['x-request-id']));
    assert.equal(s.headers.connection ?? 'keep-alive', 'keep-alive', 'hop-by-hop Connection not forwarded as close');
  }
  assert.equal(ids.size, 6, 'each request has its own x-request-id');
});

test('HEAD: no body, the backend\'s content-length, and the connection stays usable', async (t) => {
  const be = await echoBackend(t, (req, res) => {
    if (req.method !== 'HEAD') return false;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1234 });
    res.end();
    return true;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(`HEAD /h HTTP/1.1\r\nHost: fast.test\r\n\r\n`);
  const r = await c.response({ head: true });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], '1234');
  assertFastHead(r);
  c.send(get('/after-head'));
  const next = await c.response();
  assert.equal(next.body.toString(), 'body:/after-head', 'no stray body bytes came before the next response');
});

test('204 and 304: no body, and the connection stays usable for the next request', async (t) => {
  const be = await echoBackend(t, (req, res) => {
    if (req.url === '/204') {
      res.writeHead(204, { 'x-kind': 'no-content' });
      res.end();
      return true;
    }
    if (req.url === '/304') {
      res.writeHead(304, { etag: '"v1"' });
      res.end();
      return true;
    }
    return false;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  for (const path of ['/204', '/304', '/204']) {
    c.send(get(path, path === '/304' ? 'If-None-Match: "v1"\r\n' : ''));
    const r = await c.response();
    assert.equal(r.status, Number(path.slice(1)));
    assert.equal(r.headers['transfer-encoding'], undefined, `${path}: no chunked framing`);
    assertFastHead(r);
    c.send(get(`/after${path}`));
    const next = await c.response();
    assert.equal(next.status, 200);
    assert.equal(next.body.toString(), `body:/after${path}`);
  }
  assert.equal(be.seen.filter((s) => s.url === '/304')[0]!.headers['if-none-match'], '"v1"');
});

test('a chunked backend response (no content-length) reaches the client correctly chunked', async (t) => {
  const pieces = ['first,', 'second and longer,', 'x'.repeat(70_000), ',last'];
  const be = await echoBackend(t, (req, res) => {
    if (req.url !== '/chunked') return false;
    res.writeHead(200, { 'content-type': 'text/plain' });
    let i = 0;
    const next = (): void => {
      if (i === pieces.length - 1) {
        res.end(pieces[i]);
        return;
      }
      res.write(pieces[i++]);
      setTimeout(next, 10);
    };
    next();
    return true;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  for (let round = 0; round < 2; round++) {
    c.send(get('/chunked'));
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.ok(r.names.includes('transfer-encoding'), 'the fast path frames it');
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.body.toString(), pieces.join(''));
    assertFastHead(r);
  }
});

test('pipelining: three requests in one write are answered in order, the slowest first', async (t) => {
  const delays: Record<string, number> = { '/slow': 300, '/mid': 100, '/quick': 0 };
  const be = await echoBackend(t, (req, res) => {
    const ms = delays[req.url ?? ''];
    if (ms === undefined) return false;
    req.resume();
    setTimeout(() => res.end(`answer:${req.url}`), ms);
    return true;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/slow') + get('/mid') + get('/quick'));
  const bodies: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await c.response();
    assert.equal(r.status, 200);
    assertFastHead(r);
    bodies.push(r.body.toString());
  }
  assert.deepEqual(bodies, ['answer:/slow', 'answer:/mid', 'answer:/quick']);
  assert.equal(c.buffered, 0);
  // And the connection goes on after the pipelined batch.
  c.send(get('/after'));
  assert.equal((await c.response()).body.toString(), 'body:/after');
});

test('hand-off in the middle of a connection: a fast GET, then a POST with a body, both answered; the body arrives intact', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/first'));
  const first = await c.response();
  assert.equal(first.body.toString(), 'body:/first');
  assertFastHead(first);

  // The head and part of the body in one write, the rest later: node:http reads on from where the fast path stopped.
  const payload = 'hello, node:http — ünïcode and all';
  const bytes = Buffer.from(payload);
  c.send(Buffer.concat([Buffer.from(`POST /upload HTTP/1.1\r\nHost: fast.test\r\nContent-Type: text/plain\r\nContent-Length: ${bytes.length}\r\n\r\n`), bytes.subarray(0, 5)]));
  await sleep(30);
  c.send(bytes.subarray(5));
  const post = await c.response();
  assert.equal(post.status, 200);
  assert.equal(post.body.toString(), `body:/upload:POST:${payload}`);
  assertNodeHttpHead(post);

  // Handed off for good: a GET after it is node:http's too, on the same socket.
  c.send(get('/third'));
  const third = await c.response();
  assert.equal(third.body.toString(), 'body:/third');
  assertNodeHttpHead(third);
  assert.deepEqual(be.seen.map((s) => `${s.method} ${s.url}`), ['GET /first', 'POST /upload', 'GET /third']);
});

test('hand-off of pipelined bytes: a fast GET and a POST in one write, both answered in order', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/a') + 'POST /b HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 7\r\n\r\npayload' + get('/c'));
  const a = await c.response();
  assert.equal(a.body.toString(), 'body:/a');
  assertFastHead(a);
  const b = await c.response();
  assert.equal(b.body.toString(), 'body:/b:POST:payload');
  assertNodeHttpHead(b);
  const cc = await c.response();
  assert.equal(cc.body.toString(), 'body:/c');
  assertNodeHttpHead(cc);
});

test('a request head split across writes goes to node:http and is answered', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbFor(t, be.address);
  // As the first request of a connection.
  const c = await RawClient.connect(t, portOf(lb));
  c.send('GET /split HTTP/1.1\r\nHo');
  await sleep(30);
  c.send('st: fast.test\r\n\r\n');
  const r = await c.response();
  assert.equal(r.body.toString(), 'body:/split');
  assertNodeHttpHead(r);
  // After a fast request, with the start of the next one pipelined behind it.
  const d = await RawClient.connect(t, portOf(lb));
  d.send(get('/whole') + 'GET /half HTTP/1.1\r\nHost: fa');
  const whole = await d.response();
  assert.equal(whole.body.toString(), 'body:/whole');
  assertFastHead(whole);
  await sleep(30);
  d.send('st.test\r\n\r\n');
  const half = await d.response();
  assert.equal(half.body.toString(), 'body:/half');
  assertNodeHttpHead(half);
});

test('smuggling shapes after a fast GET on the same socket: 400, and the backend never sees them', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbFor(t, be.address);
  const shapes = [
    'POST /smuggle HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /inner HTTP/1.1\r\nHost: fast.test\r\n\r\n',
    'GET /smuggle HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'GET /smuggle HTTP/1.1\r\nHost: fast.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello',
    'GET /smuggle HTTP/1.1\r\nHost: fast.test\r\nHost: other.test\r\n\r\n',
  ];
  for (const [i, shape] of shapes.entries()) {
    const c = await RawClient.connect(t, portOf(lb));
    c.send(get(`/ok/${i}`));
    const ok = await c.response();
    assert.equal(ok.status, 200);
    assertFastHead(ok);
    c.send(shape);
    const bad = await c.response();
    assert.equal(bad.status, 400, `shape ${i}: ${bad.head}`);
    assert.equal(bad.headers.connection, 'close');
    await c.waitEnd();
  }
  assert.deepEqual(be.seen.map((s) => s.url), shapes.map((_, i) => `/ok/${i}`), 'only the fast GETs reached the backend');
});

test('a 32 MiB download arrives complete and unaltered, with the client pausing its reads', async (t) => {
  const data = randomBytes(32 * MiB);
  const expected = createHash('sha256').update(data).digest('hex');
  const be = await echoBackend(t, (req, res) => {
    if (req.url !== '/big' && req.url !== '/big-chunked') return false;
    req.resume();
    if (req.url === '/big') res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
    else res.writeHead(200, { 'content-type': 'application/octet-stream' });
    // In 1 MiB writes with backpressure (chunked responses get one chunk per write).
    let at = 0;
    const pump = (): void => {
      while (at < data.length && !res.destroyed) {
        const piece = data.subarray(at, at + MiB);
        at += piece.length;
        if (at >= data.length) {
          res.end(piece);
          return;
        }
        if (!res.write(piece)) {
          res.once('drain', pump);
          return;
        }
      }
    };
    pump();
    return true;
  });
  const lb = await lbWith(t, { limits: { maxBody: '64MiB' } }, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  for (const path of ['/big', '/big-chunked']) {
    const hash = createHash('sha256');
    let seen = 0;
    let pauses = 0;
    let nextPauseAt = 4 * MiB;
    c.send(get(path));
    const r = await c.response({
      timeoutMs: 60_000,
      onBody: (chunk) => {
        hash.update(chunk);
        seen += chunk.length;
        if (seen >= nextPauseAt && pauses < 4) {
          pauses++;
          nextPauseAt += 6 * MiB;
          c.socket.pause();
          setTimeout(() => c.socket.resume(), 100);
        }
      },
    });
    assert.equal(r.status, 200);
    assertFastHead(r);
    assert.equal(r.bodyBytes, data.length, path);
    assert.equal(hash.digest('hex'), expected, `${path}: the body arrived unaltered`);
    assert.equal(pauses, 4);
  }
  // The framing held: the connection carries another request.
  c.send(get('/after'));
  assert.equal((await c.response()).body.toString(), 'body:/after');
});

for (const how of ['closes', 'resets'] as const) {
  test(`the client ${how} its connection mid-response (the backend streams slowly): the backend's response sees 'close' in bounded time`, async (t) => {
    let backendClosed = false;
    let pieces = 0;
    const be = await echoBackend(t, (req, res) => {
      if (req.url !== '/stream') return false;
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      // A piece every 50 ms, at most 400 of them (20 s, twice the bound below).
      const timer = setInterval(() => {
        if (res.destroyed || pieces >= 400) {
          clearInterval(timer);
          if (!res.destroyed) res.end();
          return;
        }
        pieces++;
        res.write(`piece ${pieces}\n`);
      }, 50);
      res.on('close', () => {
        backendClosed = true;
        clearInterval(timer);
      });
      return true;
    });
    const lb = await lbFor(t, be.address);
    const c = await RawClient.connect(t, portOf(lb));
    c.send(get('/stream'));
    assert.ok(await waitFor(() => pieces >= 2 && c.buffered > 100, WAIT_MS), 'the head and the first pieces arrived');
    if (how === 'resets') c.socket.resetAndDestroy();
    else c.socket.destroy();
    assert.ok(await waitFor(() => backendClosed, WAIT_MS), `the backend's response was not closed within ${WAIT_MS} ms of the client leaving`);
  });
}

test('a client that half-closes is a client gone, as node:http and nginx take it: the request in progress is cancelled at the backend; an idle connection is closed', async (t) => {
  let backendClosed = false;
  let pieces = 0;
  const be = await echoBackend(t, (req, res) => {
    if (req.url !== '/stall') return false;
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first piece\n');
    pieces++;
    // Then nothing: only the client's leaving can end this exchange before the balancer's idle timeout.
    res.on('close', () => {
      backendClosed = true;
    });
    return true;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/stall'));
  assert.ok(await waitFor(() => pieces >= 1 && c.buffered > 0, WAIT_MS), 'the head and the first piece arrived');
  c.socket.end();
  assert.ok(await waitFor(() => backendClosed, WAIT_MS), `the backend's response was not closed within ${WAIT_MS} ms of the client's FIN`);
  await c.waitEnd();

  // With nothing in progress, a FIN closes the connection (after the answered request).
  const d = await RawClient.connect(t, portOf(lb));
  d.send(get('/idle'));
  assert.equal((await d.response()).body.toString(), 'body:/idle');
  d.socket.end();
  await d.waitEnd();
  assert.equal(d.buffered, 0);
});

test('keep-alive timeout: an idle fast-path connection is closed by the balancer', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbWith(t, { timeouts: { keepAlive: '200ms', drain: '1s' } }, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/once'));
  const r = await c.response();
  assert.equal(r.status, 200);
  assertFastHead(r);
  assert.equal(r.headers['keep-alive'], 'timeout=1', 'whole seconds, at least 1');
  await c.waitEnd();
  assert.equal(c.buffered, 0, 'nothing after the response');
});

test('headers timeout: a connection that sends nothing is closed by the balancer', async (t) => {
  const be = await echoBackend(t);
  const lb = await lbWith(t, { timeouts: { headers: '200ms', drain: '1s' } }, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  await c.waitEnd();
  assert.equal(be.seen.length, 0);
});

test('close(): an idle fast connection is ended at once; a request in flight completes with connection: close', async (t) => {
  let release: (() => void) | undefined;
  const be = await echoBackend(t, (req, res) => {
    if (req.url !== '/held') return false;
    req.resume();
    release = () => res.end('held answer');
    return true;
  });
  // A long drain, so only the fast path's own shutdown can end the idle connection quickly.
  const lb = await lbWith(t, { timeouts: { drain: '30s' } }, be.address);
  const idle = await RawClient.connect(t, portOf(lb));
  idle.send(get('/warm'));
  assertFastHead(await idle.response());
  const busy = await RawClient.connect(t, portOf(lb));
  busy.send(get('/held'));
  assert.ok(await waitFor(() => release !== undefined, WAIT_MS), 'the held request reached the backend');

  const closing = lb.close();
  await idle.waitEnd();
  assert.equal(idle.buffered, 0);
  assert.equal(busy.eof, false, 'the busy connection waits for its response');
  release!();
  const r = await busy.response();
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'held answer');
  assertFastHead(r, true);
  await busy.waitEnd();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closing, new Promise((_, reject) => (timer = setTimeout(() => reject(new assert.AssertionError({ message: 'close() did not resolve' })), WAIT_MS)))]);
  clearTimeout(timer);
});

test('a backend that resets mid-body: the client connection is cut, not left hanging', async (t) => {
  const be = await echoBackend(t, (req, res) => {
    if (req.url !== '/reset') return false;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 100_000 });
    res.write(Buffer.alloc(1000, 0x61), () => setTimeout(() => req.socket.resetAndDestroy(), 20));
    return true;
  });
  const lb = await lbFor(t, be.address);
  const c = await RawClient.connect(t, portOf(lb));
  c.send(get('/reset'));
  await assert.rejects(c.response(), /connection closed while waiting for a body of 100000 bytes/);
  await c.waitEnd();
});

test('a backend that refuses connections: 502 on a fast-path request, and the connection stays usable', async (t) => {
  const dead = await deadPort();
  const lb = await balancer(t, {
    pools: [{ name: 'app', backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }], retries: { attempts: 0 } }],
    timeouts: { drain: '1s' },
  });
  const c = await RawClient.connect(t, portOf(lb));
  for (let i = 0; i < 2; i++) {
    c.send(get(`/refused/${i}`));
    const r = await c.response();
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-archlab-error'], 'ARCHLAB_UPSTREAM_CONNECT');
    assertFastHead(r);
  }
});

test('with a refusing backend and a good one, a fast-path GET is retried and answered 200', async (t) => {
  const dead = await deadPort();
  const good = await echoBackend(t);
  const lb = await lbFor(t, `127.0.0.1:${dead}`, good.address);
  const c = await RawClient.connect(t, portOf(lb));
  for (let i = 0; i < 4; i++) {
    c.send(get(`/retry/${i}`));
    const r = await c.response();
    assert.equal(r.status, 200, `request ${i}`);
    assert.equal(r.body.toString(), `body:/retry/${i}`);
    assertFastHead(r);
  }
  assert.equal(good.seen.length, 4);
});
