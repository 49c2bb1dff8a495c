import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressSet, Cidr, ipv6ToGroups, specialRange } from './addresses.js';

test('specialRange: the SSRF guard refuses every special-purpose range, and passes public addresses', () => {
  const special: Array<[string, string]> = [
    ['0.0.0.0', 'this-network'],
    ['10.1.2.3', 'private'],
    ['100.64.0.1', 'shared'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.0.0.8', 'ietf'],
    ['192.0.2.1', 'documentation'],
    ['192.168.1.1', 'private'],
    ['198.18.0.1', 'benchmarking'],
    ['198.51.100.1', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['224.0.0.251', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b::a00:1', 'private'],
    ['64:ff9b:1::1', 'nat64-local'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:c0a8:101::1', 'private'],
    ['100::1', 'discard'],
    ['2001::1', 'ietf'],
    ['2001:db8::1', 'documentation'],
    ['fc00::1', 'unique-local'],
    ['fd00:ec2::254', 'unique-local'],
    ['fe80::1', 'link-local'],
    ['fec0::1', 'site-local'],
    ['ff02::1', 'multicast'],
    ['::1.2.3.4', 'reserved'],
    ['4000::1', 'reserved'],
    ['not-an-ip', 'reserved'],
  ];
  for (const [ip, range] of special) assert.equal(specialRange(ip), range, ip);
  for (const ip of ['8.8.8.8', '1.1.1.1', '93.184.215.14', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '2a00:1450:4001::200e', '64:ff9b::808:808', '::ffff:8.8.8.8', '2002:808:808::1']) {
    assert.equal(specialRange(ip), undefined, ip);
  }
});

test('Cidr and AddressSet', () => {
  assert.ok(Cidr.parse('10.0.0.0/8')!.contains('10.255.0.1'));
  assert.ok(!Cidr.parse('10.0.0.0/8')!.contains('11.0.0.1'));
  assert.ok(Cidr.parse('0.0.0.0/0')!.contains('1.2.3.4'));
  assert.ok(Cidr.parse('127.0.0.1')!.contains('127.0.0.1'));
  assert.ok(!Cidr.parse('127.0.0.1')!.contains('127.0.0.2'));
  assert.ok(!Cidr.parse('10.0.0.0/8')!.contains('::ffff:10.0.0.1'), 'families do not mix; the proxy unmaps first');
  assert.ok(Cidr.parse('2001:db8::/33')!.contains('2001:db8:7fff::1'));
  assert.ok(!Cidr.parse('2001:db8::/33')!.contains('2001:db8:8000::1'));
  for (const bad of ['10.0.0.0/33', '::/129', 'example.com', '10.0.0/8', 'fe80::1%eth0', '10.0.0.0/', '']) assert.equal(Cidr.parse(bad), undefined, bad);
  const set = new AddressSet(['127.0.0.1', 'fd00::/8']);
  assert.ok(set.has('127.0.0.1') && set.has('fd12::1') && !set.has('127.0.0.2'));
  assert.deepEqual(ipv6ToGroups('1:2:3:4:5:6:1.2.3.4'), [1, 2, 3, 4, 5, 6, 0x102, 0x304]);
  assert.deepEqual(ipv6ToGroups('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(ipv6ToGroups('1::'), [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(ipv6ToGroups('1.2.3.4'), undefined);
});
