import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isArchlabError } from './errors.js';
import { formatHostPort, isLoopbackHost, parseHostPort, parsePort } from './net.js';

describe('formatHostPort', () => {
  test('brackets IPv6, leaves names and IPv4 alone', () => {
    assert.equal(formatHostPort('127.0.0.1', 80), '127.0.0.1:80');
    assert.equal(formatHostPort('example.com', 443), 'example.com:443');
    assert.equal(formatHostPort('::1', 8080), '[::1]:8080');
    assert.equal(formatHostPort('[::1]', 8080), '[::1]:8080');
    assert.equal(formatHostPort('fe80::1%eth0', 1), '[fe80::1%eth0]:1');
  });
});

describe('parseHostPort', () => {
  test('parses host:port and [v6]:port, round-tripping formatHostPort', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseHostPort('localhost:0'), { host: 'localhost', port: 0 });
    assert.deepEqual(parseHostPort('[::1]:9000'), { host: '::1', port: 9000 });
    assert.deepEqual(parseHostPort(' db.internal:5432 '), { host: 'db.internal', port: 5432 });
    for (const [h, p] of [
      ['::ffff:10.0.0.1', 1],
      ['10.1.2.3', 65535],
    ] as const) {
      assert.deepEqual(parseHostPort(formatHostPort(h, p)), { host: h, port: p });
    }
  });

  const bad: Array<[string, RegExp]> = [
    ['localhost', /missing ":port"/],
    ['::1:80', /IPv6 address needs brackets/],
    ['[::1]80', /missing ":port" after "]"/],
    ['[::1:80', /missing "]"/],
    ['[example.com]:80', /not an IPv6 address/],
    [':80', /empty host/],
    ['host:', /empty port/],
    ['host:http', /not a number/],
    ['host:65536', /over 65535/],
    ['host:-1', /not a number/],
    ['my host:1', /whitespace/],
  ];
  for (const [input, why] of bad) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseHostPort(input),
        (e: unknown) => {
          assert.ok(isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
          assert.ok(e.message.includes(JSON.stringify(input)), e.message);
          assert.match(e.message, why);
          assert.match(e.message, /\[ipv6\]:port/);
          return true;
        },
      );
    });
  }
});

describe('parsePort', () => {
  test('accepts 0..65535 as number or digits, refuses the rest', () => {
    assert.equal(parsePort(0), 0);
    assert.equal(parsePort('65535'), 65535);
    for (const bad of [-1, 65536, 1.5, NaN, '', '80a', '0x50']) {
      assert.throws(() => parsePort(bad), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'), String(bad));
    }
  });
});

describe('isLoopbackHost', () => {
  test('loopback names and addresses only', () => {
    for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1', 'localhost.example.com']) {
      assert.equal(isLoopbackHost(h), false, h);
    }
  });
});
