/**
 * parseClientHello against ClientHellos written by an independent client: the `openssl s_client`
 * command (Debian's openssl), not Node's TLS stack.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { parseClientHello, type ClientHelloInfo } from '../../../src/balancer/l4/sni.js';
import { findBinary, peerSkip, spawnChild, within } from './peers.js';

const OPENSSL = findBinary('openssl');
const skip = peerSkip(OPENSSL, 'openssl', 'apt-get install -y openssl');
if (process.env.CI === 'true' && skip) {
  test('openssl is installed in CI', () => assert.fail(skip));
}

/** Runs `openssl s_client` against a TCP server that only collects bytes; returns them once the hello is complete. */
async function opensslHello(t: TestContext, args: string[]): Promise<{ bytes: Buffer; hello: ClientHelloInfo }> {
  const sockets = new Set<net.Socket>();
  let onHello: (v: { bytes: Buffer; hello: ClientHelloInfo }) => void = () => {};
  let onError: (err: unknown) => void = () => {};
  const server = net.createServer((sock) => {
    sockets.add(sock);
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      try {
        const r = parseClientHello(buf);
        if (r.kind === 'hello') onHello({ bytes: buf, hello: r });
        else if (r.kind === 'not-tls') onError(new assert.AssertionError({ message: `not-tls: ${buf.toString('hex')}` }));
      } catch (err) {
        onError(err);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const { port } = server.address() as AddressInfo;
  const result = new Promise<{ bytes: Buffer; hello: ClientHelloInfo }>((resolve, reject) => {
    onHello = resolve;
    onError = reject;
  });
  // stdin stays open so s_client waits for the handshake instead of quitting; killed in t.after.
  const child = spawnChild(t, OPENSSL!, ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdin: 'pipe' });
  return within(result, 10_000, `a ClientHello from openssl s_client ${args.join(' ')}\n${child.output()}`);
}

describe('ClientHellos from openssl s_client', { skip }, () => {
  test('-servername x.test', async (t) => {
    const { bytes, hello } = await opensslHello(t, ['-servername', 'x.test']);
    assert.deepEqual(hello, { kind: 'hello', serverName: 'x.test', alpn: [], version: 0x0304 });
    // The same bytes fed one at a time: incomplete until the last one.
    for (let k = 0; k < bytes.length; k++) assert.equal(parseClientHello(bytes.subarray(0, k)).kind, 'incomplete', `prefix ${k}`);
  });

  test('-servername X.Test -alpn h2,http/1.1: lower-cased name, ALPN in order', async (t) => {
    const { bytes, hello } = await opensslHello(t, ['-servername', 'X.Test', '-alpn', 'h2,http/1.1']);
    assert.ok(bytes.includes('X.Test'), 'openssl sends the name as given');
    assert.deepEqual(hello, { kind: 'hello', serverName: 'x.test', alpn: ['h2', 'http/1.1'], version: 0x0304 });
  });

  test('-noservername: no SNI', async (t) => {
    const { hello } = await opensslHello(t, ['-noservername']);
    assert.equal(hello.serverName, undefined);
  });

  test('-tls1_2: version 0x0303', async (t) => {
    const { hello } = await opensslHello(t, ['-tls1_2', '-servername', 'legacy.x.test']);
    assert.deepEqual(hello, { kind: 'hello', serverName: 'legacy.x.test', alpn: [], version: 0x0303 });
  });
});
