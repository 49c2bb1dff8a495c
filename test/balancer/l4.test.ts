/**
 * L4 load balancing end to end on loopback: `mode: tcp` (round robin by connection, retries,
 * half-close, backpressure, idle timeout, connection limits, TCP health checks, PROXY protocol
 * send and accept, SNI passthrough) and `mode: udp` (flows, affinity, expiry, replies from the
 * listener's address), plus the admin API and metrics they share with the L7 balancer.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { ArchlabError } from '../../src/core/errors.js';
import { balancerConfig, type BalancerConfigInput } from '../../src/balancer/index.js';
import { parseProxyHeader, encodeV1, encodeV2, type ProxyHeader } from '../../src/balancer/l4/proxy-protocol.js';
import { balancer, deadPort, liveBackend, request, sleep, waitFor } from './helpers.js';

const CERTS = join(import.meta.dirname, '..', '..', 'examples', 'balancer', 'certs');

class L4TestError extends ArchlabError {
  constructor(message: string) {
    super('ARCHLAB_TEST_L4', message);
  }
}

/** Rejects after `ms` naming what was awaited. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new L4TestError(`timed out after ${ms} ms waiting for ${what}`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

interface TcpBackend {
  name: string;
  port: number;
  address: string;
  /** Connections accepted so far. */
  accepted: number;
  sockets: Set<net.Socket>;
  server: net.Server;
}

/** A TCP server on loopback, closed (with its connections) in t.after. */
async function tcpBackend(t: TestContext, name: string, onConnection: (s: net.Socket, be: TcpBackend) => void, opts: net.ServerOpts = {}): Promise<TcpBackend> {
  const server = net.createServer(opts);
  const be: TcpBackend = { name, port: 0, address: '', accepted: 0, sockets: new Set(), server };
  server.on('connection', (s) => {
    be.accepted++;
    be.sockets.add(s);
    s.on('close', () => be.sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s, be);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  be.port = (server.address() as AddressInfo).port;
  be.address = `127.0.0.1:${be.port}`;
  t.after(async () => {
    for (const s of be.sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return be;
}

/** Greets with "<name>\n", then echoes every byte. */
function echo(s: net.Socket, be: TcpBackend): void {
  s.write(`${be.name}\n`);
  s.pipe(s);
}

interface Client {
  socket: net.Socket;
  /** Everything received so far. */
  data(): Buffer;
  /** Resolves once the received bytes satisfy `cond`. */
  until(cond: (b: Buffer) => boolean, what: string, ms?: number): Promise<Buffer>;
  /** Resolves once the socket is closed. */
  closed: Promise<void>;
}

function connect(t: TestContext, port: number, opts: { allowHalfOpen?: boolean; first?: Buffer } = {}): Promise<Client> {
  return within(
    new Promise<Client>((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? false });
      t.after(() => socket.destroy());
      let buf = Buffer.alloc(0);
      const waiters: (() => void)[] = [];
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (const w of waiters.splice(0)) w();
      });
      socket.on('error', () => undefined);
      const closed = new Promise<void>((r) => socket.once('close', () => r()));
      void closed.then(() => {
        for (const w of waiters.splice(0)) w();
      });
      let isClosed = false;
      void closed.then(() => (isClosed = true));
      const until = (cond: (b: Buffer) => boolean, what: string, ms = 3000): Promise<Buffer> =>
        within(
          new Promise<Buffer>((res, rej) => {
            const check = (): void => {
              if (cond(buf)) res(buf);
              else if (isClosed) rej(new L4TestError(`closed before ${what}; got ${JSON.stringify(buf.toString('latin1', 0, 200))}`));
              else waiters.push(check);
            };
            check();
          }),
          ms,
          what,
        );
      socket.once('connect', () => {
        if (opts.first) socket.write(opts.first);
        resolve({ socket, data: () => buf, until, closed });
      });
      socket.once('error', reject);
    }),
    3000,
    `a connection to port ${port}`,
  );
}

const line = (b: Buffer): boolean => b.includes(0x0a);
const firstLine = (b: Buffer): string => b.toString('latin1', 0, b.indexOf(0x0a));

function l4(config: Partial<BalancerConfigInput>): Omit<BalancerConfigInput, 'listeners'> & { listeners: BalancerConfigInput['listeners'] } {
  return config as Omit<BalancerConfigInput, 'listeners'> & { listeners: BalancerConfigInput['listeners'] };
}

test('tcp: round robin by connection across two echo backends, bytes echoed', async (t) => {
  const a = await tcpBackend(t, 'a', echo);
  const b = await tcpBackend(t, 'b', echo);
  const lb = await balancer(t, l4({ listeners: [{ mode: 'tcp', port: 0, pool: 'p' }], pools: [{ name: 'p', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }] }] }));
  const port = lb.listeners[0]!.port;
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await connect(t, port);
    const who = firstLine(await c.until(line, 'greeting'));
    c.socket.write('hello');
    await c.until((x) => x.toString().endsWith('hello'), 'echo');
    seen.push(who);
    c.socket.end();
    await c.closed;
  }
  assert.deepEqual([...seen].sort(), ['a', 'a', 'b', 'b']);
  assert.notEqual(seen[0], seen[1]);
  assert.ok(await waitFor(() => liveBackend(lb, 'p', 'a').active === 0 && liveBackend(lb, 'p', 'b').active === 0, 2000), 'every backend released');
  assert.equal(liveBackend(lb, 'p', 'a').connections, 2);
  assert.equal(liveBackend(lb, 'p', 'a').bytesIn, 10);
});

test('tcp: a backend that refuses is retried on another, with no failure the client can see', async (t) => {
  const live = await tcpBackend(t, 'live', echo);
  const dead = await deadPort();
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'tcp', port: 0, pool: 'p' }],
      pools: [{ name: 'p', backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }, { id: 'live', address: live.address }], retries: { attempts: 1 } }],
    }),
  );
  for (let i = 0; i < 4; i++) {
    const c = await connect(t, lb.listeners[0]!.port);
    assert.equal(firstLine(await c.until(line, 'greeting')), 'live');
    c.socket.destroy();
  }
  assert.ok(liveBackend(lb, 'p', 'dead').failures >= 1, 'the refusing backend was tried and counted');
  assert.equal(liveBackend(lb, 'p', 'dead').active, 0);
});

test('tcp: half-close — the client ends its side, the backend still answers, then ends', async (t) => {
  const be = await tcpBackend(
    t,
    'counter',
    (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => {
        // The client has finished sending; our side is still open for the answer.
        setTimeout(() => s.end(`got ${n} bytes\n`), 50);
      });
    },
    { allowHalfOpen: true },
  );
  const lb = await balancer(t, l4({ listeners: [{ mode: 'tcp', port: 0, pool: 'p' }], pools: [{ name: 'p', backends: [{ address: be.address }] }] }));
  const c = await connect(t, lb.listeners[0]!.port, { allowHalfOpen: true });
  let ended = false;
  c.socket.once('end', () => (ended = true));
  c.socket.end('abcdef');
  const got = await c.until((b) => b.toString() === 'got 6 bytes\n', 'the answer after half-close');
  assert.equal(got.toString(), 'got 6 bytes\n');
  await within(c.closed, 2000, 'close after both FINs');
  assert.ok(ended, 'the backend end()ed its side and the FIN reached the client');
});

test('tcp: backpressure — 32 MiB to a slow reader arrive exact, and the backend is held back meanwhile', async (t) => {
  const TOTAL = 32 * 1024 * 1024;
  const CHUNK = 64 * 1024;
  const block = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i++) block[i] = (i * 31 + 7) & 0xff;
  const expected = createHash('sha256');
  for (let i = 0; i < TOTAL / CHUNK; i++) expected.update(block);
  let written = 0;
  let waitedForDrain = 0;
  const be = await tcpBackend(t, 'big', (s) => {
    const pump = (): void => {
      while (written < TOTAL) {
        written += CHUNK;
        if (!s.write(block)) {
          waitedForDrain++;
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
  const lb = await balancer(t, l4({ listeners: [{ mode: 'tcp', port: 0, pool: 'p' }], pools: [{ name: 'p', backends: [{ address: be.address }] }] }));
  const socket = net.connect(lb.listeners[0]!.port, '127.0.0.1');
  t.after(() => socket.destroy());
  const hash = createHash('sha256');
  let received = 0;
  let heldBack = -1;
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      received += d.length;
      // Stop reading for a while after the first MiB: the backend must stall, not race ahead.
      if (heldBack < 0 && received >= 1024 * 1024) {
        socket.pause();
        heldBack = 0;
        setTimeout(() => {
          heldBack = written;
          socket.resume();
        }, 400);
      }
    });
    socket.on('end', () => resolve());
    socket.on('error', reject);
  });
  await within(done, 15_000, '32 MiB through the balancer');
  assert.equal(received, TOTAL);
  assert.equal(hash.digest('hex'), expected.digest('hex'));
  assert.ok(waitedForDrain > 0, 'the backend saw backpressure');
  assert.ok(heldBack > 0 && heldBack < TOTAL, `while the client did not read, the backend had written ${heldBack} of ${TOTAL} bytes`);
  assert.ok(await waitFor(() => liveBackend(lb, 'p', be.address).active === 0, 2000));
  assert.equal(liveBackend(lb, 'p', be.address).bytesOut, TOTAL);
});

test('tcp: a silent connection is closed after timeouts.idle', async (t) => {
  const be = await tcpBackend(t, 'quiet', () => undefined);
  const lb = await balancer(t, l4({ listeners: [{ mode: 'tcp', port: 0, pool: 'p' }], pools: [{ name: 'p', backends: [{ address: be.address }] }], timeouts: { idle: '300ms' } }));
  const t0 = performance.now();
  const c = await connect(t, lb.listeners[0]!.port);
  await within(c.closed, 3000, 'the idle cut');
  const ms = performance.now() - t0;
  assert.ok(ms >= 250, `closed after ${ms} ms`);
  assert.ok(await waitFor(() => be.sockets.size === 0, 2000), 'the backend side was closed too');
});

test('tcp: per-backend maxConnections — refuse when the queue is off, wait in it when it is on', async (t) => {
  const be = await tcpBackend(t, 'one', echo);
  const lb = await balancer(
    t,
    l4({
      listeners: [
        { name: 'refuse', mode: 'tcp', port: 0, pool: 'refuse' },
        { name: 'queue', mode: 'tcp', port: 0, pool: 'queue' },
      ],
      pools: [
        { name: 'refuse', backends: [{ address: be.address, maxConnections: 1 }], queue: { maxWaiting: 0 } },
        { name: 'queue', backends: [{ address: be.address, maxConnections: 1 }], queue: { maxWaiting: 5, timeout: '3s' } },
      ],
    }),
  );
  const [refusePort, queuePort] = [lb.listeners[0]!.port, lb.listeners[1]!.port];
  const first = await connect(t, refusePort);
  await first.until(line, 'first greeting');
  const second = await connect(t, refusePort);
  await within(second.closed, 2000, 'the refused connection to close');
  assert.equal(second.data().length, 0, 'nothing reached the refused client');
  first.socket.destroy();
  assert.ok(await waitFor(() => liveBackend(lb, 'refuse', be.address).active === 0, 2000));
  const third = await connect(t, refusePort);
  await third.until(line, 'a greeting once the slot is free');
  third.socket.destroy();

  const q1 = await connect(t, queuePort);
  await q1.until(line, 'q1 greeting');
  const q2 = await connect(t, queuePort);
  await sleep(150);
  assert.equal(q2.data().length, 0, 'q2 waits while q1 holds the only slot');
  assert.equal(lb.state().pools.get('queue')!.pool.waiting, 1);
  q1.socket.destroy();
  assert.equal(firstLine(await q2.until(line, 'q2 served after q1 left')), 'one');
});

test('tcp health check: send/expect against a fake redis; silent -> down after fall -> no new connections', async (t) => {
  const silent = new Set<string>();
  const redis = (s: net.Socket, be: TcpBackend): void => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const cmd = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (cmd === 'PING' && !silent.has(be.name)) s.write('+PONG\r\n');
        else if (cmd === 'WHO') s.write(`+${be.name}\r\n`);
      }
    });
  };
  const a = await tcpBackend(t, 'a', redis);
  const b = await tcpBackend(t, 'b', redis);
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'tcp', port: 0, pool: 'redis' }],
      pools: [
        {
          name: 'redis',
          backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }],
          health: { tcp: { interval: '50ms', timeout: '100ms', rise: 1, fall: 2, send: 'PING\r\n', expect: '+PONG' } },
        },
      ],
    }),
  );
  assert.ok(await waitFor(() => a.accepted >= 2 && b.accepted >= 2, 2000), 'both are checked');
  assert.ok(liveBackend(lb, 'redis', 'a').healthy && liveBackend(lb, 'redis', 'b').healthy);
  silent.add('a');
  assert.ok(await waitFor(() => !liveBackend(lb, 'redis', 'a').healthy, 2000), 'a is marked down');
  assert.ok(liveBackend(lb, 'redis', 'b').healthy);
  const before = liveBackend(lb, 'redis', 'a').connections;
  for (let i = 0; i < 4; i++) {
    const c = await connect(t, lb.listeners[0]!.port, { first: Buffer.from('WHO\r\n') });
    assert.equal((await c.until((x) => x.includes('\r\n'), 'WHO answer')).toString(), '+b\r\n');
    c.socket.destroy();
  }
  assert.equal(liveBackend(lb, 'redis', 'a').connections, before, 'no relayed connection went to the down backend');
  silent.delete('a');
  assert.ok(await waitFor(() => liveBackend(lb, 'redis', 'a').healthy, 2000), 'a comes back after rise');
});

/** A backend that collects the bytes of each connection and parses the PROXY header at their start. */
async function proxyAwareBackend(t: TestContext, name: string): Promise<TcpBackend & { headers: ProxyHeader[] }> {
  const headers: ProxyHeader[] = [];
  const be = await tcpBackend(t, name, (s) => {
    let buf = Buffer.alloc(0);
    let answered = false;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (answered) return;
      const r = parseProxyHeader(buf);
      if (r.kind === 'incomplete') return;
      const payload = r.kind === 'header' ? buf.subarray(r.length) : buf;
      if (payload.length === 0) return; // the header may come alone; answer once payload follows
      answered = true;
      if (r.kind === 'header') headers.push(r);
      s.write(`${name} ${r.kind === 'header' ? `${r.srcAddr}:${r.srcPort}` : 'none'} ${payload.toString()}\n`);
    });
  });
  return Object.assign(be, { headers });
}

test('PROXY v2 send: the backend parses the header and sees the client address', async (t) => {
  const be = await proxyAwareBackend(t, 'pp');
  const lb = await balancer(t, l4({ listeners: [{ mode: 'tcp', port: 0, pool: 'p', proxyProtocol: { send: 'v2' } }], pools: [{ name: 'p', backends: [{ address: be.address }] }] }));
  const port = lb.listeners[0]!.port;
  const c = await connect(t, port, { first: Buffer.from('payload') });
  const reply = firstLine(await c.until(line, 'reply'));
  const h = be.headers[0]!;
  assert.equal(h.version, 2);
  assert.equal(h.command, 'PROXY');
  assert.equal(h.family, 'inet');
  assert.equal(h.protocol, 'stream');
  assert.equal(h.srcAddr, '127.0.0.1');
  assert.equal(h.srcPort, c.socket.localPort);
  assert.equal(h.dstPort, port);
  assert.equal(reply, `pp 127.0.0.1:${c.socket.localPort} payload`, 'the payload follows the header untouched');
});

test('PROXY accept: a v1 or v2 header sets the client for ip-hash and for send; no header or an untrusted peer is refused', async (t) => {
  const a = await proxyAwareBackend(t, 'a');
  const b = await proxyAwareBackend(t, 'b');
  const lb = await balancer(
    t,
    l4({
      listeners: [
        { name: 'any', mode: 'tcp', port: 0, pool: 'p', proxyProtocol: { accept: 'any', send: 'v1' } },
        { name: 'strict', mode: 'tcp', port: 0, pool: 'p', proxyProtocol: { accept: 'v2', acceptFrom: ['10.0.0.0/8'] } },
        { name: 'optional', mode: 'tcp', port: 0, pool: 'p', proxyProtocol: { accept: 'optional', send: 'v2' } },
      ],
      pools: [{ name: 'p', algorithm: 'ip-hash', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }] }],
    }),
  );
  const port = lb.listeners[0]!.port;
  const claim = (ip: string, version: 1 | 2): Buffer =>
    version === 1
      ? encodeV1({ family: 'TCP4', srcAddr: ip, dstAddr: '198.51.100.1', srcPort: 5555, dstPort: 443 })
      : encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: ip, dstAddr: '198.51.100.1', srcPort: 5555, dstPort: 443 });
  const whoFor = async (ip: string, version: 1 | 2): Promise<string> => {
    const c = await connect(t, port, { first: Buffer.concat([claim(ip, version), Buffer.from('hi')]) });
    const reply = firstLine(await c.until(line, `reply for ${ip}`));
    c.socket.destroy();
    const [who, seen, payload] = reply.split(' ');
    assert.equal(seen, `${ip}:5555`, 'the backend saw the claimed client, re-sent with PROXY v1');
    assert.equal(payload, 'hi');
    return who!;
  };
  const ips = ['203.0.113.7', '203.0.113.8', '198.18.0.1', '192.0.2.200', '100.64.3.4', '172.16.9.9'];
  const first = new Map<string, string>();
  for (const ip of ips) first.set(ip, await whoFor(ip, 1));
  for (const ip of ips) assert.equal(await whoFor(ip, 2), first.get(ip), `ip-hash keeps ${ip} on one backend whatever the header version`);
  assert.equal(new Set(first.values()).size, 2, 'different claimed clients spread over both backends');
  assert.ok([...a.headers, ...b.headers].every((h) => h.version === 1));

  const before = a.accepted + b.accepted;
  const bare = await connect(t, port, { first: Buffer.from('no header here') });
  await within(bare.closed, 2000, 'a connection without a header to be refused');
  const untrusted = await connect(t, lb.listeners[1]!.port, { first: claim('203.0.113.7', 2) });
  await within(untrusted.closed, 2000, 'a peer outside acceptFrom to be refused');
  assert.equal(a.accepted + b.accepted, before, 'refused connections never reached a backend');

  // accept: optional — a header is taken when present; without one the bytes pass untouched.
  const opt = lb.listeners[2]!.port;
  const withHeader = await connect(t, opt, { first: Buffer.concat([claim('192.0.2.33', 2), Buffer.from('x')]) });
  assert.match(firstLine(await withHeader.until(line, 'optional with header')), / 192\.0\.2\.33:5555 x$/);
  const without = await connect(t, opt, { first: Buffer.from('plain') });
  assert.match(firstLine(await without.until(line, 'optional without header')), new RegExp(` 127\\.0\\.0\\.1:${without.socket.localPort} plain$`));
});

test('SNI passthrough: routed by server name to TLS backends, the balancer holds no certificate', async (t) => {
  const tlsBackend = async (name: string, cert: string): Promise<{ port: number; address: string }> => {
    const server = tls.createServer({ cert: readFileSync(join(CERTS, `${cert}.crt`)), key: readFileSync(join(CERTS, `${cert}.key`)) }, (s) => {
      s.on('error', () => undefined);
      s.end(`${name}\n`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as AddressInfo).port;
    return { port, address: `127.0.0.1:${port}` };
  };
  const ex = await tlsBackend('example-backend', 'example');
  const other = await tlsBackend('other-backend', 'other');
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'tcp', port: 0, sni: { routes: [{ serverName: '*.example.test', pool: 'ex' }, { serverName: 'example.test', pool: 'ex' }, { serverName: 'Other.Test', pool: 'other' }] } }],
      pools: [
        { name: 'ex', backends: [{ address: ex.address }] },
        { name: 'other', backends: [{ address: other.address }] },
      ],
    }),
  );
  assert.equal(lb.state().config.listeners[0]!.tls, undefined);
  const port = lb.listeners[0]!.port;
  const via = (servername: string): Promise<{ cn: unknown; body: string }> =>
    within(
      new Promise((resolve, reject) => {
        const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false }, () => {
          const cn = s.getPeerCertificate().subject?.CN;
          let body = '';
          s.on('data', (d: Buffer) => (body += d.toString()));
          s.on('end', () => resolve({ cn, body }));
        });
        s.on('error', reject);
        t.after(() => s.destroy());
      }),
      3000,
      `a TLS exchange for ${servername}`,
    );
  assert.deepEqual(await via('other.test'), { cn: 'other.test', body: 'other-backend\n' });
  assert.deepEqual(await via('example.test'), { cn: 'example.test', body: 'example-backend\n' });
  assert.deepEqual(await via('api.example.test'), { cn: 'example.test', body: 'example-backend\n' });
  // No route and no default pool: closed before any backend sees it.
  await assert.rejects(via('unknown.test'));
  // Not TLS at all: closed as well.
  const plain = await connect(t, port, { first: Buffer.from('GET / HTTP/1.1\r\n\r\n') });
  await within(plain.closed, 2000, 'a plain-text client to be refused');
});

interface UdpEcho {
  name: string;
  address: string;
  port: number;
  /** Client ports (as the backend sees the balancer's upstream sockets) per datagram. */
  peers: number[];
}

async function udpEcho(t: TestContext, name: string): Promise<UdpEcho> {
  const sock = dgram.createSocket('udp4');
  const be: UdpEcho = { name, address: '', port: 0, peers: [] };
  sock.on('message', (msg, rinfo) => {
    be.peers.push(rinfo.port);
    sock.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  be.port = sock.address().port;
  be.address = `127.0.0.1:${be.port}`;
  t.after(() => new Promise<void>((r) => sock.close(() => r())));
  return be;
}

interface UdpClient {
  sock: dgram.Socket;
  ask(msg: string): Promise<{ reply: string; from: dgram.RemoteInfo }>;
}

async function udpClient(t: TestContext, port: number): Promise<UdpClient> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => sock.close(() => r())));
  const ask = (msg: string): Promise<{ reply: string; from: dgram.RemoteInfo }> =>
    within(
      new Promise((resolve) => {
        sock.once('message', (d, from) => resolve({ reply: d.toString(), from }));
        sock.send(msg, port, '127.0.0.1');
      }),
      2000,
      `a UDP reply to ${msg}`,
    );
  return { sock, ask };
}

test('udp: flow affinity, spread across client ports, expiry after flowIdle, replies from the listener address', async (t) => {
  const a = await udpEcho(t, 'a');
  const b = await udpEcho(t, 'b');
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'udp', port: 0, pool: 'dns', udp: { flowIdle: '200ms', maxDatagram: 512 } }],
      pools: [{ name: 'dns', backends: [{ id: 'a', address: a.address }, { id: 'b', address: b.address }] }],
      admin: { port: 0 },
    }),
  );
  const port = lb.listeners[0]!.port;
  const c1 = await udpClient(t, port);
  const c2 = await udpClient(t, port);
  const r1 = await c1.ask('q1');
  const who1 = r1.reply.split(':')[0]!;
  assert.equal(r1.from.port, port, 'the reply comes from the listener port');
  assert.equal(r1.from.address, '127.0.0.1');
  for (let i = 0; i < 3; i++) assert.equal((await c1.ask(`again${i}`)).reply, `${who1}:again${i}`, 'same client port, same backend');
  const r2 = await c2.ask('q2');
  const who2 = r2.reply.split(':')[0]!;
  assert.notEqual(who2, who1, 'a second client port is another flow, spread by round robin');
  assert.equal(r2.from.port, port);
  // Every datagram of a flow leaves the balancer from one upstream socket.
  const backendOf = (who: string): UdpEcho => (who === 'a' ? a : b);
  assert.equal(new Set(backendOf(who1).peers).size, 1);

  // Oversize datagrams are dropped and counted.
  c1.sock.send(Buffer.alloc(600), port, '127.0.0.1');
  await sleep(50);

  // Idle past flowIdle: both flows expire and their backends are released.
  assert.ok(await waitFor(() => liveBackend(lb, 'dns', 'a').active === 0 && liveBackend(lb, 'dns', 'b').active === 0, 2000), 'flows expired');
  const r3 = await c2.ask('after');
  assert.notEqual(r3.reply.split(':')[0], who2, 'the expired flow was picked afresh (round robin moved on)');
  assert.equal(liveBackend(lb, 'dns', 'a').connections + liveBackend(lb, 'dns', 'b').connections, 3);

  const metrics = (await request(`http://127.0.0.1:${lb.admin!.port}`, { path: '/metrics' })).body;
  assert.match(metrics, /archlab_balancer_l4_dropped_total\{listener="udp",reason="oversize"\} 1/);
  assert.match(metrics, /archlab_balancer_l4_connections_total\{listener="udp",pool="dns",backend="a"\} [12]/);
});

test('udp: past maxFlows a new flow evicts the least recently active one, which picks afresh on its next datagram', async (t) => {
  const a = await udpEcho(t, 'a');
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'udp', port: 0, pool: 'p', udp: { maxFlows: 2 } }],
      pools: [{ name: 'p', backends: [{ id: 'a', address: a.address }] }],
      admin: { port: 0 },
    }),
  );
  const port = lb.listeners[0]!.port;
  const [c1, c2, c3] = [await udpClient(t, port), await udpClient(t, port), await udpClient(t, port)];
  /** The upstream socket's port the backend saw for the last datagram: one per flow. */
  const upstream = async (c: UdpClient, msg: string): Promise<number> => {
    assert.equal((await c.ask(msg)).reply, `a:${msg}`);
    return a.peers.at(-1)!;
  };
  const p1 = await upstream(c1, 'one');
  const p2 = await upstream(c2, 'two');
  assert.notEqual(p1, p2);
  assert.equal(await upstream(c1, 'one again'), p1, 'c1 active again: c2 is now the least recently active');
  const p3 = await upstream(c3, 'three');
  assert.ok(![p1, p2].includes(p3), 'a third flow, over maxFlows');
  assert.equal(await upstream(c1, 'one kept'), p1, 'c1 kept its flow');
  const p2b = await upstream(c2, 'two back');
  assert.ok(![p1, p2, p3].includes(p2b), 'c2 was evicted: its next datagram opened a new flow');
  assert.equal(await upstream(c1, 'one still'), p1, 'that evicted c3 (older than c1), not c1');
  assert.equal(liveBackend(lb, 'p', 'a').active, 2, 'never more than maxFlows flows hold the backend');
  const metrics = (await request(`http://127.0.0.1:${lb.admin!.port}`, { path: '/metrics' })).body;
  assert.match(metrics, /archlab_balancer_l4_dropped_total\{listener="udp",reason="evicted"\} 2/);
});

test('udp: a backend port that answers ICMP unreachable closes the flow, counts a failure, the next datagram picks again', async (t) => {
  const live = await udpEcho(t, 'live');
  const dead = await deadPort();
  const lb = await balancer(
    t,
    l4({
      listeners: [{ mode: 'udp', port: 0, pool: 'p' }],
      pools: [{ name: 'p', backends: [{ id: 'dead', address: `127.0.0.1:${dead}` }, { id: 'live', address: live.address }] }],
    }),
  );
  const c = await udpClient(t, lb.listeners[0]!.port);
  c.sock.send('lost', lb.listeners[0]!.port, '127.0.0.1');
  assert.ok(await waitFor(() => liveBackend(lb, 'p', 'dead').failures === 1, 2000), 'the refusal was seen');
  assert.equal(liveBackend(lb, 'p', 'dead').active, 0, 'and the flow released');
  assert.equal((await c.ask('again')).reply, 'live:again');
});

test('admin GET /pools and /metrics show L4 connections and bytes', async (t) => {
  const be = await tcpBackend(t, 'e', echo);
  const lb = await balancer(
    t,
    l4({ listeners: [{ name: 'raw', mode: 'tcp', port: 0, pool: 'p' }], pools: [{ name: 'p', backends: [{ id: 'e', address: be.address }] }], admin: { port: 0, token: 'tok' } }),
  );
  const c = await connect(t, lb.listeners[0]!.port);
  await c.until(line, 'greeting');
  c.socket.end('12345');
  await c.closed;
  assert.ok(await waitFor(() => liveBackend(lb, 'p', 'e').active === 0, 2000));
  const admin = `http://127.0.0.1:${lb.admin!.port}`;
  const pools = JSON.parse((await request(admin, { path: '/pools', headers: { authorization: 'Bearer tok' } })).body) as {
    pools: { backends: { id: string; connections: number; bytesIn: number; bytesOut: number }[] }[];
  };
  const e = pools.pools[0]!.backends[0]!;
  assert.deepEqual({ connections: e.connections, bytesIn: e.bytesIn, bytesOut: e.bytesOut }, { connections: 1, bytesIn: 5, bytesOut: 7 });
  const metrics = (await request(admin, { path: '/metrics' })).body;
  assert.match(metrics, /archlab_balancer_l4_connections_total\{listener="raw",pool="p",backend="e"\} 1/);
  assert.match(metrics, /archlab_balancer_l4_bytes_total\{pool="p",backend="e",direction="in"\} 5/);
  assert.match(metrics, /archlab_balancer_l4_bytes_total\{pool="p",backend="e",direction="out"\} 7/);
});

test('close(): tcp stops accepting, lets relayed connections run for timeouts.drain, then cuts them; udp flows end at once', async (t) => {
  const be = await tcpBackend(t, 'd', echo);
  const u = await udpEcho(t, 'u');
  const lb = await balancer(
    t,
    l4({
      listeners: [
        { mode: 'tcp', port: 0, pool: 'p' },
        { mode: 'udp', port: 0, pool: 'u' },
      ],
      pools: [
        { name: 'p', backends: [{ id: 'd', address: be.address }] },
        { name: 'u', backends: [{ id: 'u', address: u.address }] },
      ],
      timeouts: { drain: '400ms' },
    }),
  );
  const [tcpPort, udpPort] = [lb.listeners[0]!.port, lb.listeners[1]!.port];
  const c = await connect(t, tcpPort);
  await c.until(line, 'greeting');
  const uc = await udpClient(t, udpPort);
  await uc.ask('x');
  assert.equal(liveBackend(lb, 'u', 'u').active, 1);
  const t0 = performance.now();
  const closing = lb.close();
  assert.equal(liveBackend(lb, 'u', 'u').active, 0, 'udp flows are released at once');
  await assert.rejects(connect(t, tcpPort), 'no new tcp connection is accepted');
  c.socket.write('still here');
  await c.until((b) => b.toString().endsWith('still here'), 'an echo during the drain');
  await within(closing, 3000, 'close() to finish');
  await within(c.closed, 1000, 'the drained connection to be cut');
  assert.ok(performance.now() - t0 >= 350, 'the connection was given timeouts.drain');
  assert.ok(await waitFor(() => liveBackend(lb, 'p', 'd').active === 0, 1000));
});

test('config: L4 fields are checked per mode and name existing pools', () => {
  const pools = [{ name: 'p', backends: [{ address: '127.0.0.1:1' }] }];
  const bad = (listener: Record<string, unknown>, morePools: unknown[] = [], re: RegExp): void => {
    assert.throws(() => balancerConfig({ listeners: [listener], pools: [...pools, ...morePools] } as BalancerConfigInput), (err: Error & { message: string }) => re.test(err.message));
  };
  bad({ mode: 'tcp', port: 0 }, [], /listeners\[0\]\.pool: missing \(a tcp listener needs one, or sni routes\)/);
  bad({ mode: 'udp', port: 0, pool: 'nope' }, [], /listeners\[0\]\.pool: no pool named "nope"/);
  bad({ port: 0, proxyProtocol: { send: 'v2' } }, [], /proxyProtocol: only for mode tcp listeners/);
  bad({ port: 0, pool: 'p' }, [], /listeners\[0\]\.pool: only for mode tcp or udp/);
  bad({ mode: 'udp', port: 0, pool: 'p', sni: { routes: [{ serverName: 'a.test', pool: 'p' }] } }, [], /sni: only for mode tcp/);
  bad({ mode: 'tcp', port: 0, pool: 'p', udp: {} }, [], /udp: only for mode udp/);
  bad({ mode: 'tcp', port: 0, sni: { routes: [{ serverName: 'a.test', pool: 'x' }] } }, [], /sni\.routes\[0\]\.pool: no pool named "x"/);
  bad({ mode: 'tcp', port: 0, sni: { routes: [{ serverName: 'a b', pool: 'p' }] } }, [], /serverName/);
  bad({ mode: 'tcp', port: 0, pool: 'p', proxyProtocol: { accept: 'any', acceptFrom: ['10.0.0.0/99'] } }, [], /acceptFrom\[0\]/);
  bad({ mode: 'udp', port: 0, pool: 's' }, [{ name: 's', backends: [{ address: '127.0.0.1:2', tls: true }] }], /tls: true/);
  assert.throws(
    () => balancerConfig({ listeners: [{ port: 0 }], pools: [{ name: 'p', backends: [{ address: '127.0.0.1:1' }], health: { active: {}, tcp: {} } }] }),
    /not both/,
  );
  const ok = balancerConfig({ listeners: [{ port: 0 }, { mode: 'udp', port: 0, pool: 'p' }], pools });
  assert.equal(ok.listeners[0]!.mode, 'http');
  assert.equal(ok.listeners[1]!.udp, undefined);
  const tuned = balancerConfig({ listeners: [{ mode: 'udp', port: 0, pool: 'p', udp: { flowIdle: '2s', maxDatagram: '1KiB' } }], pools });
  assert.deepEqual(tuned.listeners[0]!.udp, { maxFlows: 10_000, flowIdleMs: 2000, maxDatagramBytes: 1024 });
});
