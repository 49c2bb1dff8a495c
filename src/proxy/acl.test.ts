import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Acl, globToRegExp, type AclOptions } from './acl.js';
import { parseAbsoluteTarget, parseConnectTarget, type Target } from './target.js';

const base: AclOptions = {
  connectPorts: [[443, 443]],
  httpPorts: [[80, 80], [1024, 65535]],
  allow: [],
  deny: [],
  ssrfGuard: { enabled: true, exceptions: [] },
};

function connect(authority: string): Target {
  const r = parseConnectTarget(authority);
  assert.ok(r.ok, authority);
  return r.target;
}

function http(url: string): Target {
  const r = parseAbsoluteTarget(url);
  assert.ok(r.ok, url);
  return r.target;
}

test('port policy: CONNECT only to connectPorts, HTTP only to httpPorts', () => {
  const acl = new Acl(base);
  assert.equal(acl.checkTarget(connect('example.com:443'), 'connect'), undefined);
  assert.equal(acl.checkTarget(connect('example.com:22'), 'connect')?.reason, 'port');
  assert.equal(acl.checkTarget(connect('example.com:80'), 'connect')?.reason, 'port');
  assert.equal(acl.checkTarget(http('http://example.com/'), 'http'), undefined);
  assert.equal(acl.checkTarget(http('http://example.com:8080/'), 'http'), undefined);
  assert.equal(acl.checkTarget(http('http://example.com:25/'), 'http')?.reason, 'port');
});

test('deny rules: glob, domain suffix, cidr, ports; checked on the canonical host', () => {
  const acl = new Acl({ ...base, deny: [{ host: '*.internal' }, { domain: 'evil.example' }, { cidr: '8.8.4.0/24' }, { ports: [[8443, 8443]] }] });
  const denied = (t: Target, kind: 'http' | 'connect' = 'connect') => acl.checkTarget(t, kind)?.reason;
  assert.equal(denied(connect('db.internal:443')), 'acl-deny');
  assert.equal(denied(connect('DB.Internal.:443')), 'acl-deny');
  assert.equal(denied(connect('evil.example:443')), 'acl-deny');
  assert.equal(denied(connect('a.b.evil.example:443')), 'acl-deny');
  assert.equal(denied(connect('notevil.example:443')), undefined, 'domain matches at a label boundary');
  assert.equal(denied(connect('8.8.4.4:443')), 'acl-deny', 'an IP literal is judged by cidr before DNS');
  assert.equal(denied(http('http://example.com:8443/'), 'http'), 'acl-deny');
  // A name's cidr rule can only be judged on its addresses.
  const t = connect('dns.example:443');
  assert.equal(acl.checkTarget(t, 'connect'), undefined);
  assert.equal(acl.checkAddress(t, '8.8.4.4')?.reason, 'acl-deny');
  assert.equal(acl.checkAddress(t, '8.8.8.8'), undefined);
});

test('allow rules: when present, one must match; cidr allow rules wait for DNS', () => {
  const acl = new Acl({ ...base, allow: [{ domain: 'allowed.example' }, { cidr: '93.184.0.0/16' }] });
  assert.equal(acl.checkTarget(connect('allowed.example:443'), 'connect'), undefined);
  assert.equal(acl.checkTarget(connect('www.allowed.example:443'), 'connect'), undefined);
  const other = connect('other.example:443');
  assert.equal(acl.checkTarget(other, 'connect'), undefined, 'might still resolve into the allowed block');
  assert.equal(acl.checkAddress(other, '93.184.215.14'), undefined);
  assert.equal(acl.checkAddress(other, '1.1.1.1')?.reason, 'acl-not-allowed');
  assert.equal(acl.checkTarget(connect('1.1.1.1:443'), 'connect')?.reason, 'acl-not-allowed');
  // userinfo tricks never get this far, and the host a client would use is what is judged.
  assert.equal(new Acl({ ...base, allow: [{ domain: 'allowed.example' }] }).checkTarget(connect('evil.example:443'), 'connect')?.reason, 'acl-not-allowed');
});

test('SSRF guard: special addresses refused in every spelling, exceptions honoured, off when disabled', () => {
  const acl = new Acl(base);
  for (const a of ['127.0.0.1:443', '2130706433:443', '0x7f.1:443', '[::1]:443', '[::ffff:127.0.0.1]:443', '169.254.169.254:443', '10.0.0.1:443', '[fd00::1]:443']) {
    const d = acl.checkTarget(connect(a), 'connect');
    assert.equal(d?.reason, 'ssrf', a);
  }
  assert.equal(acl.checkTarget(http('http://2130706433/'), 'http')?.range, 'loopback');
  // A name is judged on what it resolves to.
  const t = connect('rebind.example:443');
  assert.equal(acl.checkTarget(t, 'connect'), undefined);
  assert.equal(acl.checkAddress(t, '127.0.0.1')?.reason, 'ssrf');
  const except = new Acl({ ...base, ssrfGuard: { enabled: true, exceptions: ['127.0.0.1'] } });
  assert.equal(except.checkTarget(connect('127.0.0.1:443'), 'connect'), undefined);
  assert.equal(except.checkTarget(connect('127.0.0.2:443'), 'connect')?.reason, 'ssrf');
  const off = new Acl({ ...base, ssrfGuard: { enabled: false, exceptions: [] } });
  assert.equal(off.checkTarget(connect('127.0.0.1:443'), 'connect'), undefined);
  // Deny rules still apply with the guard off.
  const offDeny = new Acl({ ...base, deny: [{ cidr: '127.0.0.0/8' }], ssrfGuard: { enabled: false, exceptions: [] } });
  assert.equal(offDeny.checkTarget(connect('0x7f.1:443'), 'connect')?.reason, 'acl-deny');
});

test('globToRegExp', () => {
  assert.ok(globToRegExp('*.example.com').test('a.b.example.com'));
  assert.ok(!globToRegExp('*.example.com').test('example.com'));
  assert.ok(globToRegExp('api-?.example.com').test('api-1.example.com'));
  assert.ok(!globToRegExp('api-?.example.com').test('api-12.example.com'));
  assert.ok(globToRegExp('EXAMPLE.com.').test('example.com'));
  assert.ok(!globToRegExp('example.com').test('exampleXcom'), 'dots are literal');
  assert.ok(globToRegExp('[::1]').test('::1'));
});
