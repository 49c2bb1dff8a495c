import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isArchlabError } from '../core/errors.js';
import { loadProxyConfig, proxyConfig } from './config.js';

test('defaults: CONNECT to 443, HTTP to 80 and 1024-65535, SSRF guard on, no auth, units in names', () => {
  const c = proxyConfig({ listeners: [{ port: 3128 }] });
  assert.deepEqual(c.acl.connectPorts, [[443, 443]]);
  assert.deepEqual(c.acl.httpPorts, [[80, 80], [1024, 65535]]);
  assert.equal(c.acl.ssrfGuard.enabled, true);
  assert.equal(c.auth, undefined);
  assert.equal(c.listeners[0]!.host, '127.0.0.1');
  assert.equal(c.limits.maxBodyBytes, 64 * 1024 * 1024);
  assert.equal(c.timeouts.connectMs, 5000);
  assert.equal(c.accessLog, true);
});

test('errors name the file, the path of each bad field, and what was expected', () => {
  const yaml = [
    'listeners:',
    '  - port: 3128',
    'acl:',
    '  connectPorts: [443, "9-1", 70000]',
    '  allow:',
    '    - cidr: 10.0.0.0/33',
    '    - {}',
    '  ssrfGaurd: { enabled: false }',
    'auth:',
    '  realm: archlab',
    'limits:',
    '  maxBody: 12 parsecs',
    '',
  ].join('\n');
  assert.throws(
    () => proxyConfig(yaml, 'proxy.yaml'),
    (e: unknown) => {
      assert.ok(isArchlabError(e, 'ARCHLAB_CONFIG_INVALID'));
      const m = e.message;
      assert.match(m, /invalid config in proxy\.yaml/);
      assert.match(m, /acl\.connectPorts\[1\]: expected a port 1\.\.65535 or a range "lo-hi", received "9-1" \(line 4/);
      assert.match(m, /acl\.connectPorts\[2\]/);
      assert.match(m, /acl\.allow\[0\]\.cidr: expected an IP address or a CIDR/);
      assert.match(m, /acl\.allow\[1\]: a rule needs at least one of host, domain, cidr, ports/);
      assert.match(m, /acl\.ssrfGaurd: unknown key \(did you mean "ssrfGuard"\?\)/);
      assert.match(m, /auth: auth needs usersFile or users/);
      assert.match(m, /limits\.maxBody: invalid size "12 parsecs"/);
      return true;
    },
  );
});

test('loadProxyConfig resolves auth.usersFile against the config file, and names a bad users file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-proxy-config-'));
  try {
    const file = join(dir, 'proxy.yaml');
    writeFileSync(file, 'listeners: [{ port: 0 }]\nauth: { usersFile: users.txt }\n');
    assert.equal(loadProxyConfig(file).auth!.usersFile, join(dir, 'users.txt'));
    assert.throws(() => loadProxyConfig(join(dir, 'missing.yaml')), (e) => isArchlabError(e, 'ARCHLAB_CONFIG_UNREADABLE'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
