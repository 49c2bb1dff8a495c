/**
 * Interoperability of src/balancer/l4/proxy-protocol.ts with a real, independent implementation:
 * HAProxy (Debian's `haproxy`). Both directions:
 *
 * - HAProxy receives: a frontend with `accept-proxy` must believe the headers encodeV1/encodeV2
 *   write, so the backend it forwards to sees our fake client address (and our TLVs).
 * - HAProxy sends: `send-proxy` / `send-proxy-v2` towards a raw server of ours, where
 *   parseProxyHeader must report the real client connection HAProxy accepted.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { isArchlabError } from '../../../src/core/errors.js';
import { PP2_TYPE, encodeV1, encodeV2, parseProxyHeader, type ProxyHeader } from '../../../src/balancer/l4/proxy-protocol.js';
import { exchange, findBinary, freePort, haveIPv6Loopback, peerSkip, spawnChild, tempFile, waitForPort, within } from './peers.js';

const HAPROXY = findBinary('haproxy');
const skip = peerSkip(HAPROXY, 'haproxy', 'apt-get install -y haproxy');
if (process.env.CI === 'true' && skip) {
  test('haproxy is installed in CI', () => assert.fail(skip));
}

const DEFAULTS = `global
    maxconn 200

defaults
    timeout connect 2s
    timeout client 5s
    timeout server 5s
`;

async function startHaproxy(t: TestContext, config: string, ports: [string, number][]): Promise<void> {
  const cfg = tempFile(t, 'haproxy.cfg', config);
  const child = spawnChild(t, HAPROXY!, ['-f', cfg, '-db']);
  for (const [host, port] of ports) await waitForPort(child, host, port);
}

/** A Node HTTP backend answering every request with the request's headers as JSON. */
async function echoBackend(t: TestContext): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.setHeader('content-type', 'application/json');
    res.setHeader('connection', 'close');
    res.end(JSON.stringify(req.headers));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, hits: () => hits };
}

const REQUEST = Buffer.from('GET /who HTTP/1.1\r\nHost: archlab.test\r\nConnection: close\r\n\r\n');

/** Sends header + request through HAProxy and returns the headers the backend saw. */
async function seenThrough(port: number, header: Buffer): Promise<{ headers: Record<string, string>; localPort: number }> {
  const { reply, localPort } = await exchange('127.0.0.1', port, Buffer.concat([header, REQUEST]));
  const text = reply.toString();
  assert.match(text, /^HTTP\/1\.1 200/, `HAProxy answered:\n${text}`);
  return { headers: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, string>, localPort };
}

describe('HAProxy accept-proxy believes our headers', { skip }, () => {
  test('v1 and v2, IPv4 and IPv6, TLVs, LOCAL and UNKNOWN', async (t) => {
    const backend = await echoBackend(t);
    const port = await freePort();
    await startHaproxy(
      t,
      `${DEFAULTS}
frontend fe_accept
    mode http
    bind 127.0.0.1:${port} accept-proxy
    http-request set-header X-Src %[src]
    http-request set-header X-Src-Port %[src_port]
    http-request set-header X-Dst %[dst]
    http-request set-header X-Dst-Port %[dst_port]
    http-request set-header X-Authority %[fc_pp_authority]
    http-request set-header X-Unique-Id %[fc_pp_unique_id]
    default_backend be_node

backend be_node
    mode http
    server s1 127.0.0.1:${backend.port}
`,
      [['127.0.0.1', port]],
    );

    const v4 = { srcAddr: '203.0.113.7', dstAddr: '198.51.100.1', srcPort: 4242, dstPort: 443 };
    const v6 = { srcAddr: '2001:db8::7', dstAddr: '2001:db8:0:1::443', srcPort: 4243, dstPort: 8443 };
    const cases: [string, Buffer, typeof v4][] = [
      ['v2 TCP4', encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', ...v4 }), v4],
      ['v1 TCP4', encodeV1({ family: 'TCP4', ...v4 }), v4],
      ['v2 TCP6', encodeV2({ command: 'PROXY', family: 'inet6', protocol: 'stream', ...v6 }), v6],
      ['v1 TCP6', encodeV1({ family: 'TCP6', ...v6 }), v6],
    ];
    for (const [name, header, expected] of cases) {
      const { headers } = await seenThrough(port, header);
      assert.equal(headers['x-src'], expected.srcAddr, name);
      assert.equal(headers['x-src-port'], String(expected.srcPort), name);
      assert.equal(headers['x-dst'], expected.dstAddr, name);
      assert.equal(headers['x-dst-port'], String(expected.dstPort), name);
    }

    // TLVs: HAProxy exposes the authority and unique-id TLVs it parsed from our header.
    const withTlvs = encodeV2({
      command: 'PROXY',
      family: 'inet',
      protocol: 'stream',
      ...v4,
      tlvs: [
        { type: PP2_TYPE.NOOP, value: Buffer.alloc(5) },
        { type: PP2_TYPE.AUTHORITY, value: Buffer.from('example.test') },
        { type: PP2_TYPE.UNIQUE_ID, value: Buffer.from('req-0042') },
      ],
    });
    const tlvSeen = await seenThrough(port, withTlvs);
    assert.equal(tlvSeen.headers['x-src'], '203.0.113.7');
    assert.equal(tlvSeen.headers['x-authority'], 'example.test');
    assert.equal(tlvSeen.headers['x-unique-id'], 'req-0042');

    // LOCAL and UNKNOWN: HAProxy must fall back to the real connection (us, on loopback).
    for (const [name, header] of [
      ['v2 LOCAL', encodeV2({ command: 'LOCAL', family: 'unspec' })],
      ['v1 UNKNOWN', encodeV1({ family: 'UNKNOWN' })],
    ] as const) {
      const { headers, localPort } = await seenThrough(port, header);
      assert.equal(headers['x-src'], '127.0.0.1', name);
      assert.equal(headers['x-src-port'], String(localPort), name);
    }
  });

  test('HAProxy refuses what parseProxyHeader refuses', async (t) => {
    const backend = await echoBackend(t);
    const port = await freePort();
    await startHaproxy(
      t,
      `${DEFAULTS}
frontend fe_accept
    mode http
    bind 127.0.0.1:${port} accept-proxy
    default_backend be_node

backend be_node
    mode http
    server s1 127.0.0.1:${backend.port}
`,
      [['127.0.0.1', port]],
    );
    const good = encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '203.0.113.7', dstAddr: '198.51.100.1', srcPort: 1, dstPort: 2 });
    const badVersion = Buffer.from(good);
    badVersion[12] = 0x11;
    const badCommand = Buffer.from(good);
    badCommand[12] = 0x22;
    const shortBlock = Buffer.from(good.subarray(0, 20));
    shortBlock.writeUInt16BE(4, 14);
    const malformed: [string, Buffer][] = [
      ['v2 version 1', badVersion],
      ['v2 command 2', badCommand],
      ['v2 inet with a 4-byte block', shortBlock],
      ['v1 protocol TCP5', Buffer.from('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n')],
      // Not listed: 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2' — HAProxy 2.6 accepts a port over 65535
      // (the spec says [0..65535]); parseProxyHeader follows the spec and refuses it.
      ['v1 bare LF', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')],
    ];
    for (const [name, bytes] of malformed) {
      assert.throws(() => parseProxyHeader(bytes), (e: unknown) => isArchlabError(e, 'ARCHLAB_PROXY_PROTOCOL_INVALID'), name);
      const { reply } = await exchange('127.0.0.1', port, Buffer.concat([bytes, REQUEST]));
      assert.doesNotMatch(reply.toString(), /^HTTP\/1\.1 200/, `${name}: HAProxy accepted it`);
    }
    assert.equal(backend.hits(), 0, 'no malformed header reached the backend');
  });
});

interface Received {
  header: ProxyHeader;
  /** The bytes after the header so far. */
  rest: Buffer;
}

/** A raw TCP server that parses the PROXY header of every connection and keeps what follows it. */
async function rawReceiver(t: TestContext): Promise<{ port: number; next: (match: (r: Received) => boolean, what: string) => Promise<Received> }> {
  const got: Received[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    let buf = Buffer.alloc(0);
    let entry: Received | undefined;
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (entry === undefined) {
        const r = parseProxyHeader(buf);
        if (r.kind !== 'header') return;
        entry = { header: r, rest: Buffer.alloc(0) };
        got.push(entry);
      }
      entry.rest = buf.subarray(entry.header.length);
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const sock of sockets) sock.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const next = (match: (r: Received) => boolean, what: string): Promise<Received> => {
    let check: () => void = () => {};
    return within(
      new Promise<Received>((resolve) => {
        check = (): void => {
          const hit = got.find(match);
          if (hit) resolve(hit);
        };
        waiters.add(check);
        check();
      }),
      5000,
      what,
    ).finally(() => waiters.delete(check));
  };
  return { port: (server.address() as AddressInfo).port, next };
}

/** Connects to HAProxy, sends `hello`, keeps the connection open until the test ends. */
async function clientVia(t: TestContext, host: string, port: number): Promise<net.Socket> {
  const sock = await within(
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, host, () => resolve(s));
      s.on('error', reject);
    }),
    5000,
    `a connection to HAProxy on ${host}:${port}`,
  );
  sock.on('error', () => {});
  sock.write('hello');
  t.after(() => sock.destroy());
  return sock;
}

describe('parseProxyHeader reads what HAProxy sends', { skip }, () => {
  test('send-proxy-v2 (with a unique-id TLV) and send-proxy, from IPv4 and IPv6 clients', async (t) => {
    const raw = await rawReceiver(t);
    const v6 = await haveIPv6Loopback();
    const [p2, p1, p2six, p1six] = [await freePort(), await freePort(), v6 ? await freePort('::1') : 0, v6 ? await freePort('::1') : 0];
    await startHaproxy(
      t,
      `${DEFAULTS}
frontend fe_v2
    mode tcp
    bind 127.0.0.1:${p2}
${v6 ? `    bind [::1]:${p2six}\n` : ''}    unique-id-format id-%[src_port]
    default_backend be_v2

backend be_v2
    mode tcp
    server s1 127.0.0.1:${raw.port} send-proxy-v2 proxy-v2-options unique-id

frontend fe_v1
    mode tcp
    bind 127.0.0.1:${p1}
${v6 ? `    bind [::1]:${p1six}\n` : ''}    default_backend be_v1

backend be_v1
    mode tcp
    server s1 127.0.0.1:${raw.port} send-proxy
`,
      [['127.0.0.1', p2], ['127.0.0.1', p1], ...(v6 ? ([['::1', p2six], ['::1', p1six]] as [string, number][]) : [])],
    );

    const cases: [string, string, number, 1 | 2][] = [
      ['v2 from 127.0.0.1', '127.0.0.1', p2, 2],
      ['v1 from 127.0.0.1', '127.0.0.1', p1, 1],
    ];
    if (v6) cases.push(['v2 from ::1', '::1', p2six, 2], ['v1 from ::1', '::1', p1six, 1]);
    else t.diagnostic('no IPv6 loopback: the IPv6 cases were not run');
    for (const [name, host, port, version] of cases) {
      const client = await clientVia(t, host, port);
      const { header, rest } = await raw.next(
        (r) => r.header.version === version && r.header.srcPort === client.localPort && r.rest.length >= 5,
        `${name}: a PROXY header for client port ${client.localPort}, then the client's bytes`,
      );
      assert.equal(header.command, 'PROXY', name);
      assert.equal(header.family, host === '::1' ? 'inet6' : 'inet', name);
      assert.equal(header.protocol, 'stream', name);
      // The addresses are exactly what Node reports for the client side of the same connection.
      assert.equal(header.srcAddr, client.localAddress, name);
      assert.equal(header.srcPort, client.localPort, name);
      assert.equal(header.dstAddr, client.remoteAddress, name);
      assert.equal(header.dstPort, port, name);
      if (version === 2) {
        const id = header.tlvs.find((tlv) => tlv.type === PP2_TYPE.UNIQUE_ID);
        assert.equal(id?.value.toString(), `id-${client.localPort}`, `${name}: unique-id TLV`);
      } else {
        assert.equal(header.tlvs.length, 0);
      }
      // The stream's own bytes follow the header untouched: `length` pointed at the right byte.
      assert.equal(rest.toString(), 'hello', name);
    }
  });

  test('health checks with check-send-proxy: LOCAL (v2) and the real check connection (v1) parse', async (t) => {
    const raw = await rawReceiver(t);
    const port = await freePort();
    await startHaproxy(
      t,
      `${DEFAULTS}
frontend fe
    mode tcp
    bind 127.0.0.1:${port}
    default_backend be_checks

backend be_checks
    mode tcp
    server v2 127.0.0.1:${raw.port} send-proxy-v2 check check-send-proxy inter 200ms
    server v1 127.0.0.1:${raw.port} send-proxy check check-send-proxy inter 200ms
`,
      [['127.0.0.1', port]],
    );
    const v2 = await raw.next((r) => r.header.version === 2, 'a v2 health check');
    t.diagnostic(`v2 check header: ${JSON.stringify({ ...v2.header, tlvs: v2.header.tlvs.length })}`);
    assert.equal(v2.header.command, 'LOCAL');
    assert.equal(v2.header.srcAddr, undefined);
    const v1 = await raw.next((r) => r.header.version === 1, 'a v1 health check');
    t.diagnostic(`v1 check header: ${JSON.stringify({ ...v1.header, tlvs: v1.header.tlvs.length })}`);
    assert.equal(v1.header.command, 'PROXY');
    if (v1.header.family !== 'unspec') {
      assert.equal(v1.header.family, 'inet');
      assert.equal(v1.header.dstAddr, '127.0.0.1');
      assert.equal(v1.header.dstPort, raw.port);
    }
  });
});
