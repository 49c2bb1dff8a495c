import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { isArchlabError } from '../../core/errors.js';
import { TCP_CHECK_PASSED, tcpHealthRequest } from './tcp.js';

async function server(t: TestContext, onConnection: (s: net.Socket) => void): Promise<{ host: string; port: number; tls: boolean; address: string }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  const port = (srv.address() as AddressInfo).port;
  return { host: '127.0.0.1', port, tls: false, address: `127.0.0.1:${port}` };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('connecting passes when nothing is sent or expected', async (t) => {
  const b = await server(t, () => undefined);
  assert.equal(await tcpHealthRequest(b, { timeoutMs: 1000 }), TCP_CHECK_PASSED);
});

test('send/expect passes on an answer split over several segments', async (t) => {
  const b = await server(t, (s) =>
    s.once('data', (d: Buffer) => {
      assert.equal(d.toString(), 'PING\r\n');
      s.write('+PO');
      setTimeout(() => s.write('NG\r\n'), 20);
    }),
  );
  assert.equal(await tcpHealthRequest(b, { send: 'PING\r\n', expect: '+PONG', timeoutMs: 1000 }), TCP_CHECK_PASSED);
});

test('a wrong answer, a refused connect and silence fail with typed errors', async (t) => {
  const wrong = await server(t, (s) => s.once('data', () => s.end('-ERR no\r\n')));
  await assert.rejects(tcpHealthRequest(wrong, { send: 'PING\r\n', expect: '+PONG', timeoutMs: 1000 }), (err) => isArchlabError(err, 'ARCHLAB_HEALTH_UNEXPECTED'));
  const port = await freePort();
  await assert.rejects(tcpHealthRequest({ host: '127.0.0.1', port, tls: false, address: `127.0.0.1:${port}` }, { timeoutMs: 1000 }), (err) => isArchlabError(err, 'ARCHLAB_UPSTREAM_CONNECT'));
  const quiet = await server(t, () => undefined);
  await assert.rejects(tcpHealthRequest(quiet, { send: 'PING\r\n', expect: '+PONG', timeoutMs: 100 }), (err) => isArchlabError(err, 'ARCHLAB_UPSTREAM_TIMEOUT'));
});

test('an abort closes the connection and rejects with the reason', async (t) => {
  let closed = false;
  const b = await server(t, (s) => s.on('close', () => (closed = true)));
  const ac = new AbortController();
  const p = tcpHealthRequest(b, { expect: '+PONG', timeoutMs: 5000, signal: ac.signal });
  setTimeout(() => ac.abort('stop'), 50);
  await assert.rejects(p, (err) => err === 'stop');
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(closed);
});
