import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyHeader } from './proxy-protocol.js';
import { proxyHeader } from './tcp.js';

const parsed = (b: Buffer): Record<string, unknown> => {
  const r = parseProxyHeader(b);
  assert.equal(r.kind, 'header');
  assert.equal((r as { length: number }).length, b.length);
  const { version, family, srcAddr, dstAddr, srcPort, dstPort } = r as unknown as Record<string, unknown>;
  return { version, family, srcAddr, dstAddr, srcPort, dstPort };
};

test('proxyHeader: IPv4 (and IPv4-mapped) endpoints give TCP4 / inet', () => {
  for (const v of ['v1', 'v2'] as const) {
    assert.deepEqual(parsed(proxyHeader(v, { ip: '::ffff:192.0.2.1', port: 5000 }, { ip: '198.51.100.1', port: 443 })), {
      version: v === 'v1' ? 1 : 2,
      family: 'inet',
      srcAddr: '192.0.2.1',
      dstAddr: '198.51.100.1',
      srcPort: 5000,
      dstPort: 443,
    });
  }
});

test('proxyHeader: an IPv6 side makes both IPv6, mapping the IPv4 one', () => {
  assert.deepEqual(parsed(proxyHeader('v2', { ip: '2001:db8::1', port: 1 }, { ip: '192.0.2.9', port: 2 })), {
    version: 2,
    family: 'inet6',
    srcAddr: '2001:db8::1',
    dstAddr: '::ffff:192.0.2.9',
    srcPort: 1,
    dstPort: 2,
  });
  assert.equal(parsed(proxyHeader('v1', { ip: 'fe80::1%eth0', port: 1 }, { ip: '::1', port: 2 })).srcAddr, 'fe80::1');
});

test('proxyHeader: a missing address gives UNKNOWN / unspec', () => {
  assert.equal(parsed(proxyHeader('v1', { ip: '', port: 0 }, { ip: '127.0.0.1', port: 2 })).family, 'unspec');
  assert.equal(parsed(proxyHeader('v2', { ip: '', port: 0 }, { ip: '127.0.0.1', port: 2 })).family, 'unspec');
});
