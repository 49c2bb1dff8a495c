/** The shield and the simulated geography: a miss storm across regions, injected latency. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, testConfig, withCdn } from '../../src/cdn/network/test-helpers.js';

const REGIONS = ['eu', 'us', 'ap'] as const;

async function missStorm(t: Parameters<typeof withCdn>[0], shield: boolean): Promise<number> {
  const cdn = await withCdn(
    t,
    testConfig({
      shield: { enabled: shield, storage: { memory: '8MiB' } },
      // Some distance on every link, so the 30 requests overlap at every tier.
      latency: {
        clients: { eu: { eu: '4ms', us: '80ms', ap: '150ms' }, us: { eu: '80ms', us: '4ms', ap: '120ms' }, ap: { eu: '150ms', us: '120ms', ap: '4ms' } },
        shield: { eu: '10ms', us: '30ms', ap: '50ms' },
        origin: '20ms',
      },
    }),
  );
  const get = client(t);
  const path = '/objects/storm';
  const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => get(`${cdn.url}${path}`, { headers: { 'x-client-region': REGIONS[i % 3]! } })));
  for (const r of replies) {
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 16 * 1024);
  }
  assert.deepEqual(new Set(replies.map((r) => r.headers['x-client-region'])), new Set(REGIONS));
  const servedBy = new Set(replies.map((r) => r.headers['x-served-by']));
  assert.equal(servedBy.size, 3, 'one node per region took the URL');
  return cdn.origin.demo!.requestsFor(path);
}

test('miss storm: 30 concurrent requests for one URL from 3 regions reach the origin once through the shield', async (t) => {
  assert.equal(await missStorm(t, true), 1);
});

test('miss storm: without the shield each region\'s edge goes to the origin itself: 3 requests', async (t) => {
  assert.equal(await missStorm(t, false), 3);
});

test('latency: a far region pays its round trip on every request, and a miss pays edge -> shield -> origin too', async (t) => {
  const cdn = await withCdn(
    t,
    testConfig({
      regions: [{ name: 'eu', edges: 1, storage: { memory: '4MiB' } }],
      latency: { clients: { eu: { eu: '2ms' }, ap: { eu: '120ms' } }, shield: { eu: '40ms' }, origin: '30ms' },
    }),
  );
  const get = client(t);
  // Timers may fire up to a millisecond early; lower bounds only.
  const miss = await get(`${cdn.url}/css/site.css`, { headers: { 'x-client-region': 'ap' } });
  assert.equal(miss.status, 200);
  assert.ok(miss.ms >= 120 + 40 + 30 - 3, `a miss from ap took ${miss.ms.toFixed(1)} ms, below 190 ms`);
  assert.match(miss.headers['server-timing'] ?? '', /geo;dur=120;desc="ap->eu"/);
  const hit = await get(`${cdn.url}/css/site.css`, { headers: { 'x-client-region': 'ap' } });
  assert.match(hit.headers['x-cache'] ?? '', /HIT$/);
  assert.ok(hit.ms >= 120 - 2, `a hit from ap took ${hit.ms.toFixed(1)} ms, below its 120 ms round trip`);
  const near = await get(`${cdn.url}/css/site.css`, { headers: { 'x-client-region': 'eu' } });
  assert.equal(near.headers['x-served-by'], 'eu-1');
  assert.match(near.headers['server-timing'] ?? '', /geo;dur=2;desc="eu->eu"/);
  assert.deepEqual(cdn.topology().latency.nearest, { eu: ['eu'], ap: ['eu'] });
});

test('storage: a region\'s disk tier gets a directory per node; a large object is served from disk on the next hit', async (t) => {
  const { mkdtempSync, readdirSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cdn-disk-'));
  const cdn = await withCdn(
    t,
    testConfig({
      origin: { demo: { port: 0, objects: [{ path: '/big', size: '2MiB', cacheControl: 'public, max-age=600' }] } },
      regions: [{ name: 'eu', edges: 1, storage: { memory: '1MiB', disk: { dir, max: '16MiB' } } }],
    }),
  );
  // close() is idempotent: close here so the stores are shut before their directory goes.
  t.after(async () => {
    await cdn.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const get = client(t);
  assert.equal((await get(`${cdn.url}/big`)).body.length, 2 * 1024 * 1024);
  const hit = await get(`${cdn.url}/big`);
  assert.equal(hit.body.length, 2 * 1024 * 1024);
  assert.match(hit.headers['x-cache'] ?? '', /HIT$/);
  assert.deepEqual(readdirSync(dir), ['eu-1']);
  assert.equal(cdn.edges[0]!.stats().storage.diskObjects, 1);
});
