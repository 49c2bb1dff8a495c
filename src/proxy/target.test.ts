import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAbsoluteTarget, parseConnectTarget, unmapIPv6 } from './target.js';

/** Each row: what a client sent, and where a WHATWG-conformant client would connect (or why it is refused). */
const CONNECT: Array<[string, { host: string; family: 0 | 4 | 6; port: number } | string]> = [
  ['example.com:443', { host: 'example.com', family: 0, port: 443 }],
  ['EXAMPLE.Com:443', { host: 'example.com', family: 0, port: 443 }],
  ['example.com.:443', { host: 'example.com', family: 0, port: 443 }],
  ['%65xample.com:443', { host: 'example.com', family: 0, port: 443 }],
  ['b\u00fccher.de:443', { host: 'xn--bcher-kva.de', family: 0, port: 443 }],
  ['2130706433:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['0x7f.1:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['0177.0.0.1:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['%31%32%37.0.0.1:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['127.0.0.1.:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['[::1]:443', { host: '::1', family: 6, port: 443 }],
  ['[0:0:0:0:0:0:0:1]:443', { host: '::1', family: 6, port: 443 }],
  ['[::ffff:127.0.0.1]:443', { host: '127.0.0.1', family: 4, port: 443 }],
  ['[2001:DB8::1]:8443', { host: '2001:db8::1', family: 6, port: 8443 }],
  ['example.com:0443', { host: 'example.com', family: 0, port: 443 }],
  ['example.com', 'no-port'],
  ['example.com:', 'no-port'],
  ['example.com:https', 'no-port'],
  ['example.com:0', 'no-port'],
  ['example.com:65536', 'no-port'],
  ['example.com:-1', 'no-port'],
  ['example.com:44 3', 'no-port'],
  [':443', 'bad-target'],
  ['', 'bad-target'],
  ['allowed.example@evil.example:443', 'userinfo'],
  ['user:pass@evil.example:443', 'userinfo'],
  ['::1:443', 'bad-target'],
  ['[::1:443', 'bad-target'],
  ['[::1]443', 'bad-target'],
  ['[fe80::1%25eth0]:443', 'bad-target'],
  ['[127.0.0.1]:443', 'bad-target'],
  ['exa mple.com:443', 'bad-target'],
  ['example.com/path:443', 'bad-target'],
  ['example.com?:443', 'bad-target'],
  ['evil.com\\@good.com:443', 'userinfo'],
  ['evil.com\\x:443', 'bad-target'],
  ['example..com:443', 'bad-target'],
  ['ex%00ample.com:443', 'bad-target'],
  ['ex$ample.com:443', 'bad-target'],
  ['999999999999:443', 'bad-target'],
  ['1.2.3.4.5:443', 'bad-target'],
  ['http://example.com:443', 'bad-target'],
];

test('CONNECT authority: normalized like a URL host, malformed ones refused', () => {
  for (const [input, want] of CONNECT) {
    const r = parseConnectTarget(input);
    if (typeof want === 'string') {
      assert.equal(r.ok, false, `${JSON.stringify(input)} should be refused`);
      if (!r.ok) assert.equal(r.problem, want, `${JSON.stringify(input)}: ${r.message}`);
    } else {
      assert.ok(r.ok, `${JSON.stringify(input)}: ${r.ok ? '' : r.message}`);
      assert.deepEqual(r.target, want, JSON.stringify(input));
    }
  }
});

test('absolute-form: the host a client would connect to, path and Host header to forward', () => {
  const ok = (url: string, host?: string) => {
    const r = parseAbsoluteTarget(url, host);
    assert.ok(r.ok, `${url}: ${r.ok ? '' : r.message}`);
    return r.target;
  };
  assert.deepEqual(ok('http://example.com/a?b=1', 'example.com'), {
    host: 'example.com',
    family: 0,
    port: 80,
    hostHeader: 'example.com',
    path: '/a?b=1',
    href: 'http://example.com/a?b=1',
  });
  assert.equal(ok('http://2130706433/').host, '127.0.0.1');
  assert.equal(ok('http://0x7f.1/').host, '127.0.0.1');
  assert.equal(ok('HTTP://EXAMPLE.COM./x').host, 'example.com');
  assert.equal(ok('http://%65xample.com/').host, 'example.com');
  assert.deepEqual(
    (({ host, family, port }) => ({ host, family, port }))(ok('http://[::1]:8080/')),
    { host: '::1', family: 6, port: 8080 },
  );
  assert.equal(ok('http://[::1]:8080/').hostHeader, '[::1]:8080');
  assert.equal(ok('http://example.com:8080').path, '/');
  assert.equal(ok('http://example.com/#frag').path, '/');
  assert.equal(ok('http://example.com/a/../b').path, '/b');
  // Host header: same authority after normalization, default port 80.
  ok('http://example.com/', 'EXAMPLE.com:80');
  ok('http://example.com:80/', 'example.com');
  ok('http://127.0.0.1/', '2130706433');
  ok('http://example.com./', 'example.com');
});

test('absolute-form: refusals', () => {
  const cases: Array<[string, string | undefined, string]> = [
    ['/path', 'example.com', 'not-absolute'],
    ['*', undefined, 'not-absolute'],
    ['https://example.com/', undefined, 'scheme'],
    ['ftp://example.com/', undefined, 'scheme'],
    ['http:example.com/', undefined, 'bad-target'],
    ['http:/example.com/', undefined, 'bad-target'],
    ['http://allowed.example@evil.example/', undefined, 'userinfo'],
    ['http://@evil.example/', undefined, 'userinfo'],
    ['http://user:pw@evil.example/', undefined, 'userinfo'],
    ['http://example.com:0/', undefined, 'no-port'],
    ['http://[fe80::1%25eth0]/', undefined, 'bad-target'],
    ['http://exa mple.com/', undefined, 'bad-target'],
    ['http://example..com/', undefined, 'bad-target'],
    ['http://999999999999/', undefined, 'bad-target'],
    ['http://example.com/', 'evil.example', 'host-mismatch'],
    ['http://example.com/', 'example.com:8080', 'host-mismatch'],
    ['http://example.com:8080/', 'example.com', 'host-mismatch'],
    ['http://allowed.example/', 'allowed.example@evil.example', 'host-mismatch'],
    ['http://example.com/', '', 'host-mismatch'],
  ];
  for (const [url, host, problem] of cases) {
    const r = parseAbsoluteTarget(url, host);
    assert.equal(r.ok, false, `${url} (Host ${host}) should be refused`);
    if (!r.ok) assert.equal(r.problem, problem, `${url}: ${r.message}`);
  }
  // The backslash trick: a URL parser reads "\" as "/", so the host is evil.com, not good.com.
  const tricky = parseAbsoluteTarget('http://evil.com\\@good.com/');
  assert.ok(tricky.ok);
  assert.equal(tricky.target.host, 'evil.com');
});

test('unmapIPv6', () => {
  assert.equal(unmapIPv6('::ffff:7f00:1'), '127.0.0.1');
  assert.equal(unmapIPv6('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(unmapIPv6('::1'), '::1');
  assert.equal(unmapIPv6('8.8.8.8'), '8.8.8.8');
});
