import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { isArchlabError } from '../../core/errors.js';
import {
  HOP_BY_HOP,
  MAX_REQUEST_ID_LENGTH,
  type ForwardInfo,
  type HeaderMap,
  forwardedHeaders,
  responseHeaders,
  stripHopByHop,
  TrustedProxies,
  unmapIPv4,
  upgradeHeaders,
  upgradeProtocol,
  upgradeResponseHeaders,
} from './headers.js';

/** Compare own entries only. */
const plain = (h: HeaderMap): Record<string, string | string[]> => ({ ...h });

describe('stripHopByHop', () => {
  test('removes the fixed hop-by-hop set, Proxy-* included, and keeps end-to-end fields', () => {
    const incoming: IncomingHttpHeaders = {
      host: 'example.com',
      connection: 'keep-alive',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      trailer: 'x-checksum',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      'proxy-connection': 'keep-alive',
      'proxy-authenticate': 'Basic',
      'proxy-authorization': 'Basic c2VjcmV0',
      authorization: 'Bearer t',
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
    };
    const out = stripHopByHop(incoming);
    assert.deepEqual(plain(out), { host: 'example.com', authorization: 'Bearer t', 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
    for (const name of HOP_BY_HOP) assert.equal(out[name], undefined, name);
  });

  test('removes every field the Connection header names, case-insensitively, across list items', () => {
    const out = stripHopByHop({ connection: 'close, X-Secret ,x-other,,', 'x-secret': '1', 'x-other': '2', 'x-kept': '3' });
    assert.deepEqual(plain(out), { 'x-kept': '3' });
    const arr = stripHopByHop({ Connection: ['X-A', 'x-b'], 'X-A': '1', 'x-B': '2', 'X-C': 3 });
    assert.deepEqual(plain(arr), { 'x-c': '3' });
  });

  test('lowercases names, stringifies numbers, drops undefined and HTTP/2 pseudo-headers', () => {
    const out = stripHopByHop({ 'Content-Length': 12, 'X-Mixed': 'a', 'x-mixed': 'b', 'X-Undef': undefined, ':path': '/x', ':authority': 'h' });
    assert.deepEqual(plain(out), { 'content-length': '12', 'x-mixed': ['a', 'b'] });
  });

  test('returns a new object and leaves the input alone', () => {
    const incoming: IncomingHttpHeaders = { connection: 'x-a', 'x-a': '1', 'x-b': '2' };
    const copy = structuredClone(incoming);
    const out = stripHopByHop(incoming);
    assert.notEqual(out, incoming);
    assert.deepEqual(incoming, copy);
  });

  test('headers named like Object.prototype members are ordinary headers', () => {
    const incoming = JSON.parse('{"__proto__": ["polluted"], "tostring": "a", "constructor": "b", "connection": "hasownproperty", "hasownproperty": "c"}') as IncomingHttpHeaders;
    const out = stripHopByHop(incoming);
    assert.deepEqual(Object.keys(out).sort(), ['__proto__', 'constructor', 'tostring']);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, ['polluted']);
    assert.equal(out.constructor, 'b');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // Nothing inherited: an absent name reads undefined.
    assert.equal(stripHopByHop({}).toString, undefined);
    assert.equal(forwardedHeaders({}, { peerIp: '192.0.2.1', proto: 'http', host: undefined, trusted: new TrustedProxies([]), via: 'v', requestId: () => 'r' }).headers.hasOwnProperty, undefined);
  });
});

describe('TrustedProxies', () => {
  const t = new TrustedProxies(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1', ' 198.51.100.0/24 ', '::ffff:203.0.113.9']);
  const cases: Array<[string, boolean]> = [
    ['10.1.2.3', true],
    ['11.1.2.3', false],
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['198.51.100.200', true],
    ['2001:db8::1', true],
    ['2001:DB8:0:0::ff', true],
    ['2001:db9::1', false],
    ['::1', true],
    ['::2', false],
    // IPv4-mapped IPv6 is the IPv4 address, both ways.
    ['::ffff:10.9.9.9', true],
    ['::ffff:192.0.2.7', true],
    ['::ffff:11.0.0.1', false],
    ['203.0.113.9', true],
    ['::ffff:203.0.113.9', true],
    // Not addresses.
    ['', false],
    ['unknown', false],
    ['10.0.0.1:80', false],
    ['[::1]', false],
    ['localhost', false],
  ];
  for (const [ip, expected] of cases) {
    test(`has(${JSON.stringify(ip)}) is ${expected}`, () => {
      assert.equal(t.has(ip), expected);
      assert.equal(t.has(ip), expected); // memoised answer agrees
    });
  }

  test('an empty list trusts nobody', () => {
    const none = new TrustedProxies([]);
    assert.equal(none.has('127.0.0.1'), false);
    assert.equal(none.has('::1'), false);
  });

  const bad = ['localhost', '10.0.0.0/33', '2001:db8::/129', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/8/8', '10.0.0', '', 'fe80::1%eth0', '1.2.3.4/abc'];
  for (const entry of bad) {
    test(`refuses ${JSON.stringify(entry)}, naming it`, () => {
      assert.throws(
        () => new TrustedProxies(['10.0.0.1', entry]),
        (err: unknown) => isArchlabError(err, 'ARCHLAB_BALANCER_CONFIG') && err.message.includes(JSON.stringify(entry)) && err.details?.entry === entry,
      );
    });
  }
});

describe('unmapIPv4', () => {
  test('turns IPv4-mapped IPv6 into dotted IPv4 and leaves the rest alone', () => {
    assert.equal(unmapIPv4('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(unmapIPv4('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(unmapIPv4('0:0:0:0:0:ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(unmapIPv4('192.0.2.1'), '192.0.2.1');
    assert.equal(unmapIPv4('2001:db8::1'), '2001:db8::1');
    assert.equal(unmapIPv4('::1'), '::1');
    assert.equal(unmapIPv4('::ffff:999.0.0.1'), '::ffff:999.0.0.1');
  });
});

describe('forwardedHeaders', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', 'fd00::/8']);
  let ids = 0;
  const info = (peerIp: string, over: Partial<ForwardInfo> = {}): ForwardInfo => ({
    peerIp,
    proto: 'https',
    host: 'shop.example.com',
    trusted,
    via: '1.1 archlab',
    requestId: () => `gen-${++ids}`,
    ...over,
  });
  const spoofed: IncomingHttpHeaders = {
    host: 'shop.example.com',
    'x-forwarded-for': '1.2.3.4, 10.0.0.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'evil.example',
    forwarded: 'for=1.2.3.4;proto=http',
    via: '1.0 front',
  };

  test('untrusted peer: spoofed X-Forwarded-*, Forwarded are replaced by this hop; clientIp is the peer', () => {
    const r = forwardedHeaders(spoofed, info('203.0.113.5'));
    assert.equal(r.clientIp, '203.0.113.5');
    assert.deepEqual(plain(r.headers), {
      host: 'shop.example.com',
      'x-forwarded-for': '203.0.113.5',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example.com',
      forwarded: 'for=203.0.113.5;proto=https;host=shop.example.com',
      via: '1.0 front, 1.1 archlab',
      'x-request-id': r.requestId,
    });
    assert.match(r.requestId, /^gen-\d+$/);
  });

  test('trusted peer: the chain is extended, proto and host kept, clientIp walks past trusted hops', () => {
    const r = forwardedHeaders(
      { ...spoofed, 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 10.0.0.5', forwarded: 'for=203.0.113.7;proto=http' },
      info('10.0.0.9'),
    );
    // 10.0.0.9 (peer) and 10.0.0.5 are trusted; 203.0.113.7 is the first untrusted hop, so 198.51.100.1 (which it wrote) is not believed.
    assert.equal(r.clientIp, '203.0.113.7');
    assert.equal(r.headers['x-forwarded-for'], '198.51.100.1, 203.0.113.7, 10.0.0.5, 10.0.0.9');
    assert.equal(r.headers['x-forwarded-proto'], 'http');
    assert.equal(r.headers['x-forwarded-host'], 'evil.example');
    assert.equal(r.headers.forwarded, 'for=203.0.113.7;proto=http, for=10.0.0.9;proto=https;host=shop.example.com');
  });

  test('trusted peer without forwarding headers: this hop fills them in', () => {
    const r = forwardedHeaders({ host: 'a.example' }, info('10.0.0.9', { proto: 'http', host: 'a.example' }));
    assert.equal(r.clientIp, '10.0.0.9');
    assert.equal(r.headers['x-forwarded-for'], '10.0.0.9');
    assert.equal(r.headers['x-forwarded-proto'], 'http');
    assert.equal(r.headers['x-forwarded-host'], 'a.example');
    assert.equal(r.headers.forwarded, 'for=10.0.0.9;proto=http;host=a.example');
  });

  test('trusted peer: a chain of only trusted hops gives the left-most one', () => {
    const r = forwardedHeaders({ 'x-forwarded-for': '10.0.0.1,10.0.0.2' }, info('10.0.0.3'));
    assert.equal(r.clientIp, '10.0.0.1');
  });

  test('trusted peer: entries with ports, brackets and spaces are understood; a malformed one stops the walk', () => {
    assert.equal(forwardedHeaders({ 'x-forwarded-for': ' 203.0.113.7:5555 ,10.0.0.2' }, info('10.0.0.3')).clientIp, '203.0.113.7');
    assert.equal(forwardedHeaders({ 'x-forwarded-for': '[2001:db8::7]:443, [fd00::2]' }, info('10.0.0.3')).clientIp, '2001:db8::7');
    assert.equal(forwardedHeaders({ 'x-forwarded-for': '2001:db8::8' }, info('fd00::1')).clientIp, '2001:db8::8');
    assert.equal(forwardedHeaders({ 'x-forwarded-for': '::ffff:203.0.113.9' }, info('10.0.0.3')).clientIp, '203.0.113.9');
    // "unknown" is not an address: the last good one (the trusted 10.0.0.2) is as far as the chain can be believed.
    assert.equal(forwardedHeaders({ 'x-forwarded-for': '203.0.113.7, unknown, 10.0.0.2' }, info('10.0.0.3')).clientIp, '10.0.0.2');
    assert.equal(forwardedHeaders({ 'x-forwarded-for': 'garbage' }, info('10.0.0.3')).clientIp, '10.0.0.3');
  });

  test('untrusted peer cannot become trusted by claiming a trusted address', () => {
    const r = forwardedHeaders({ 'x-forwarded-for': '10.0.0.1' }, info('203.0.113.5'));
    assert.equal(r.clientIp, '203.0.113.5');
    assert.equal(r.headers['x-forwarded-for'], '203.0.113.5');
  });

  test('IPv6 peers: Forwarded quotes and brackets them, X-Forwarded-For does not', () => {
    const untrusted = forwardedHeaders({ 'x-forwarded-for': '1.2.3.4' }, info('2001:db8::1'));
    assert.equal(untrusted.clientIp, '2001:db8::1');
    assert.equal(untrusted.headers['x-forwarded-for'], '2001:db8::1');
    assert.equal(untrusted.headers.forwarded, 'for="[2001:db8::1]";proto=https;host=shop.example.com');
    const viaProxy = forwardedHeaders({ 'x-forwarded-for': '2001:db8::2', forwarded: 'for="[2001:db8::2]"' }, info('fd00::5'));
    assert.equal(viaProxy.clientIp, '2001:db8::2');
    assert.equal(viaProxy.headers['x-forwarded-for'], '2001:db8::2, fd00::5');
    assert.equal(viaProxy.headers.forwarded, 'for="[2001:db8::2]", for="[fd00::5]";proto=https;host=shop.example.com');
  });

  test('IPv4-mapped peers are written and trusted as IPv4', () => {
    const r = forwardedHeaders({ 'x-forwarded-for': '203.0.113.7' }, info('::ffff:10.0.0.9'));
    assert.equal(r.clientIp, '203.0.113.7');
    assert.equal(r.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.9');
    assert.match(r.headers.forwarded as string, /for=10\.0\.0\.9;/);
    assert.equal(forwardedHeaders({}, info('::ffff:203.0.113.5')).clientIp, '203.0.113.5');
  });

  test('Forwarded host is quoted when it is not a token, so a Host cannot inject elements', () => {
    assert.equal(forwardedHeaders({}, info('203.0.113.5', { host: 'example.com:8443' })).headers.forwarded, 'for=203.0.113.5;proto=https;host="example.com:8443"');
    assert.equal(forwardedHeaders({}, info('203.0.113.5', { host: '[::1]:80' })).headers.forwarded, 'for=203.0.113.5;proto=https;host="[::1]:80"');
    const evil = forwardedHeaders({}, info('203.0.113.5', { host: 'a", for=10.0.0.1;x="\\' })).headers.forwarded;
    assert.equal(evil, 'for=203.0.113.5;proto=https;host="a\\", for=10.0.0.1;x=\\"\\\\"');
  });

  test('without a Host: no X-Forwarded-Host (an untrusted one is dropped) and no host= in Forwarded', () => {
    const r = forwardedHeaders({ 'x-forwarded-host': 'evil.example' }, info('203.0.113.5', { host: undefined }));
    assert.equal(r.headers['x-forwarded-host'], undefined);
    assert.equal(r.headers.forwarded, 'for=203.0.113.5;proto=https');
  });

  test('X-Request-Id is kept when sane, else generated', () => {
    const max = 'r'.repeat(MAX_REQUEST_ID_LENGTH);
    for (const id of ['abc-123', max, '!~']) {
      const r = forwardedHeaders({ 'x-request-id': id }, info('203.0.113.5'));
      assert.equal(r.requestId, id);
      assert.equal(r.headers['x-request-id'], id);
    }
    for (const id of ['', `${max}r`, 'has space', 'tab\there', 'caf\u00e9', 'ctl\u0001']) {
      const r = forwardedHeaders({ 'x-request-id': id }, info('203.0.113.5'));
      assert.match(r.requestId, /^gen-\d+$/, JSON.stringify(id));
      assert.equal(r.headers['x-request-id'], r.requestId);
    }
    const none = forwardedHeaders({}, info('203.0.113.5'));
    assert.match(none.requestId, /^gen-\d+$/);
  });

  test('strips hop-by-hop fields, keeps Host as received, leaves the input alone', () => {
    const incoming: IncomingHttpHeaders = { host: 'Shop.Example.com:8443', connection: 'keep-alive, x-debug', 'x-debug': '1', 'keep-alive': 'timeout=5', 'proxy-authorization': 'Basic x', te: 'trailers', accept: '*/*' };
    const copy = structuredClone(incoming);
    const r = forwardedHeaders(incoming, info('203.0.113.5'));
    assert.equal(r.headers.host, 'Shop.Example.com:8443');
    assert.equal(r.headers.accept, '*/*');
    for (const gone of ['connection', 'x-debug', 'keep-alive', 'proxy-authorization', 'te']) assert.equal(r.headers[gone], undefined, gone);
    assert.deepEqual(incoming, copy);
  });

  test('naming X-Forwarded-For in Connection does not erase a trusted chain (hop-by-hop abuse)', () => {
    const r = forwardedHeaders({ connection: 'close, X-Forwarded-For, Forwarded, X-Request-Id', 'x-forwarded-for': '203.0.113.7', forwarded: 'for=203.0.113.7', 'x-request-id': 'keep-me' }, info('10.0.0.9'));
    assert.equal(r.clientIp, '203.0.113.7');
    assert.equal(r.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.9');
    assert.equal(r.headers.forwarded, 'for=203.0.113.7, for=10.0.0.9;proto=https;host=shop.example.com');
    assert.equal(r.requestId, 'keep-me');
  });

  test('a peer without an address is "unknown" in the headers', () => {
    const r = forwardedHeaders({ 'x-forwarded-for': '1.2.3.4' }, info(''));
    assert.equal(r.clientIp, '');
    assert.equal(r.headers['x-forwarded-for'], 'unknown');
    assert.equal(r.headers.forwarded, 'for=unknown;proto=https;host=shop.example.com');
  });

  test('no Via yet: just this hop', () => {
    assert.equal(forwardedHeaders({}, info('203.0.113.5')).headers.via, '1.1 archlab');
  });
});

describe('responseHeaders', () => {
  test('strips hop-by-hop fields, keeps Set-Cookie lists, appends Via', () => {
    const out = responseHeaders(
      { 'content-type': 'text/html', connection: 'keep-alive, x-internal', 'x-internal': 'secret', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'proxy-authenticate': 'Basic', 'set-cookie': ['a=1', 'b=2'], via: '1.1 backend' },
      '1.1 archlab',
    );
    assert.deepEqual(plain(out), { 'content-type': 'text/html', 'set-cookie': ['a=1', 'b=2'], via: '1.1 backend, 1.1 archlab' });
    assert.equal(responseHeaders({}, '1.1 archlab').via, '1.1 archlab');
  });
});

describe('upgrades', () => {
  const trusted = new TrustedProxies([]);
  const base = { peerIp: '203.0.113.5', proto: 'http' as const, host: 'ws.example', trusted, via: '1.1 archlab', requestId: () => 'id' };

  test('a WebSocket upgrade keeps connection: upgrade and Upgrade, on top of the forwarded headers', () => {
    const incoming: IncomingHttpHeaders = { host: 'ws.example', connection: 'keep-alive, Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'k', 'sec-websocket-version': '13', 'x-forwarded-for': '6.6.6.6' };
    assert.equal(upgradeProtocol(incoming), 'websocket');
    const fwd = forwardedHeaders(incoming, base);
    const before = plain(fwd.headers);
    const h = upgradeHeaders(incoming, fwd.headers);
    assert.equal(h.connection, 'upgrade');
    assert.equal(h.upgrade, 'websocket');
    assert.equal(h['sec-websocket-key'], 'k');
    assert.equal(h['x-forwarded-for'], '203.0.113.5');
    assert.equal(h.via, '1.1 archlab');
    assert.deepEqual(plain(fwd.headers), before, 'forwarded headers are not modified');
    assert.equal(upgradeProtocol({ connection: 'Upgrade', upgrade: 'WebSocket/13' }), 'WebSocket/13');
  });

  test('h2c, unknown protocols and half-asked upgrades carry no upgrade fields', () => {
    const cases: IncomingHttpHeaders[] = [
      { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAA' },
      { connection: 'upgrade', upgrade: 'websocket, h2c' },
      { connection: 'upgrade', upgrade: 'TLS/1.2' },
      { connection: 'keep-alive', upgrade: 'websocket' },
      { connection: 'upgrade' },
      { upgrade: 'websocket' },
    ];
    for (const incoming of cases) {
      assert.equal(upgradeProtocol(incoming), undefined, JSON.stringify(incoming));
      const h = upgradeHeaders(incoming, forwardedHeaders(incoming, base).headers);
      assert.equal(h.connection, undefined, JSON.stringify(incoming));
      assert.equal(h.upgrade, undefined, JSON.stringify(incoming));
      assert.equal(h['http2-settings'], undefined);
    }
  });

  test('a 101 response keeps connection: upgrade and Upgrade', () => {
    const out = upgradeResponseHeaders({ connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-accept': 'acc', 'keep-alive': 'x' }, '1.1 archlab');
    assert.deepEqual(plain(out), { 'sec-websocket-accept': 'acc', via: '1.1 archlab', connection: 'upgrade', upgrade: 'websocket' });
  });
});
