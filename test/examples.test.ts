/** Every file in examples/ is loaded here, so none can rot. */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadBalancerConfig } from '../src/balancer/config.js';
import { loadCacheConfig } from '../src/cache/config.js';
import { loadCdnConfig } from '../src/cdn/config.js';
import { CertificateStore } from '../src/balancer/l7/certs.js';
import { loadUsersFile } from '../src/proxy/auth.js';
import { loadProxyConfig } from '../src/proxy/config.js';
import { loadQueueConfig } from '../src/queue/config.js';

const root = join(import.meta.dirname, '..', 'examples');

const loaders: Record<string, (file: string) => void> = {
  balancer: (file) => {
    const config = loadBalancerConfig(file);
    assert.ok(config.pools.length > 0);
    for (const l of config.listeners) if (l.tls) new CertificateStore(l.tls.certificates);
  },
  cache: (file) => {
    const config = loadCacheConfig(file);
    assert.ok(config.listeners.length > 0);
  },
  queue: (file) => assert.ok(loadQueueConfig(file).listeners.length > 0),
  cdn: (file) => {
    const config = loadCdnConfig(file);
    assert.ok(config.listeners.length > 0);
    assert.ok(config.regions.every((r) => r.edges.length > 0));
  },
  proxy: (file) => {
    const config = loadProxyConfig(file);
    assert.ok(config.listeners.length > 0);
    if (config.auth?.usersFile) assert.ok(loadUsersFile(config.auth.usersFile).size > 0);
  },
};

const dirs = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory());
test('every examples/ folder has a loader', () => {
  for (const d of dirs) assert.ok(loaders[d.name], `no loader for examples/${d.name}: add one to test/examples.test.ts`);
});

for (const d of dirs) {
  for (const f of readdirSync(join(root, d.name)).filter((n) => /\.(ya?ml|json)$/.test(n))) {
    test(`examples/${d.name}/${f} loads and validates`, () => loaders[d.name]!(join(root, d.name, f)));
  }
}
