/** The admin API of `archlab cdn`: purge fan-out with acks, tokens, stats, topology, metrics. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCdnError } from '../../src/cdn/errors.js';
import { client, purgeVia, testConfig, withCdn, TEST_TOKEN } from '../../src/cdn/network/test-helpers.js';

const REGIONS = ['eu', 'us', 'ap'] as const;

/** Fetches `path` once from every region, so it is stored on one node per region and on the shield. */
async function warm(get: ReturnType<typeof client>, base: string, path: string): Promise<void> {
  for (const region of REGIONS) {
    const r = await get(`${base}${path}`, { headers: { 'x-client-region': region } });
    assert.equal(r.status, 200, `${path} from ${region}`);
  }
}

test('purge by url, prefix and tag reaches every node (3 regions\' edges and the shield) with an ack from each', async (t) => {
  const cdn = await withCdn(t, testConfig());
  const get = client(t);
  const origin = cdn.origin.demo!;
  const allNodes = ['eu-1', 'eu-2', 'us-1', 'ap-1', 'shield'];

  await warm(get, cdn.url, '/img/logo.png');
  assert.equal(origin.requestsFor('/img/logo.png'), 1);
  const byUrl = await purgeVia(get, cdn, { url: '/img/logo.png' });
  assert.equal(byUrl.status, 200, byUrl.body);
  const report = JSON.parse(byUrl.body) as { purged: number; propagationMs: number; nodes: Array<{ name: string; region: string; purged: number; ms: number; acked: boolean }> };
  assert.deepEqual(report.nodes.map((n) => n.name).sort(), [...allNodes].sort(), 'every node was asked');
  assert.ok(report.nodes.every((n) => n.acked && n.ms >= 0));
  assert.equal(report.purged, 4, 'one copy per region plus the shield\'s');
  assert.equal(report.nodes.find((n) => n.name === 'shield')!.purged, 1);
  assert.ok(report.propagationMs >= Math.max(...report.nodes.map((n) => n.ms)));
  await warm(get, cdn.url, '/img/logo.png');
  assert.equal(origin.requestsFor('/img/logo.png'), 2, 'after the purge the origin is asked again, once (through the shield)');

  for (let i = 0; i < 3; i++) await warm(get, cdn.url, `/objects/p${i}`);
  await warm(get, cdn.url, '/js/app.js');
  const byPrefix = await purgeVia(get, cdn, { prefix: '/objects/' });
  assert.equal(byPrefix.status, 200, byPrefix.body);
  assert.equal(JSON.parse(byPrefix.body).purged, 3 * 4, 'three objects on one node per region and the shield');
  const js = await get(`${cdn.url}/js/app.js`, { headers: { 'x-client-region': 'eu' } });
  assert.match(js.headers['x-cache'] ?? '', /HIT$/, 'the prefix purge left other paths alone');

  await warm(get, cdn.url, '/css/site.css');
  const byTag = await purgeVia(get, cdn, { tag: 'assets' });
  assert.equal(byTag.status, 200, byTag.body);
  // assets = /img/logo.png, /js/app.js, /css/site.css: stored on one node per region + the shield.
  assert.equal(JSON.parse(byTag.body).purged, 3 * 4);
  const css = await get(`${cdn.url}/css/site.css`, { headers: { 'x-client-region': 'us' } });
  assert.match(css.headers['x-cache'] ?? '', /MISS$/, 'purged by tag: a miss again');
  assert.equal(origin.requestsFor('/css/site.css'), 2, 'and the shield missed too');

  const stats = cdn.stats();
  assert.equal(stats.purge.count, 3);
  assert.equal(stats.purge.incomplete, 0);
  assert.ok(stats.purge.p50Ms !== null && stats.purge.p99Ms !== null && stats.purge.p99Ms >= stats.purge.p50Ms);
});

test('soft purge keeps the object for revalidation: the next request asks the origin conditionally', async (t) => {
  const cdn = await withCdn(t, testConfig({ regions: [{ name: 'eu', edges: 1, storage: { memory: '4MiB' } }] }));
  const get = client(t);
  const origin = cdn.origin.demo!;
  assert.equal((await get(`${cdn.url}/css/site.css`)).status, 200);
  const before = origin.stats().notModified;
  const soft = await purgeVia(get, cdn, { url: '/css/site.css', mode: 'soft' });
  assert.equal(soft.status, 200, soft.body);
  assert.equal(JSON.parse(soft.body).purged, 2, 'the edge and the shield marked it');
  const after = await get(`${cdn.url}/css/site.css`);
  assert.equal(after.status, 200);
  assert.equal(after.body.length, 8 * 1024);
  assert.ok(origin.stats().notModified > before, 'revalidated with a conditional request, answered 304');
  assert.equal(origin.requestsFor('/css/site.css'), 2);
});

test('purge without the token is a 401; a bad purge body is a 400', async (t) => {
  const cdn = await withCdn(t, testConfig());
  const get = client(t);
  const none = await purgeVia(get, cdn, { url: '/' }, null);
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="archlab-admin"');
  assert.equal((await purgeVia(get, cdn, { url: '/' }, 'wrong-token-xxxxxxxx')).status, 401);
  assert.equal((await get(`${cdn.admin!.url}/stats`)).status, 401, 'stats need the token too');
  const bad = await purgeVia(get, cdn, { url: '/', tag: 'x' });
  assert.equal(bad.status, 400);
  assert.equal(JSON.parse(bad.body).error.code, 'ARCHLAB_CDN_BAD_REQUEST');
  // A node asked directly refuses PURGE without the token as well.
  const direct = await get(`${cdn.edges[0]!.url}/`, { method: 'PURGE' });
  assert.equal(direct.status, 401);
  assert.equal(cdn.stats().purge.count, 0, 'nothing was purged');
});

test('a node that is down makes the purge incomplete: 504 with the partial result naming it', async (t) => {
  const cdn = await withCdn(t, testConfig());
  const get = client(t);
  await warm(get, cdn.url, '/img/logo.png');
  await cdn.edges.find((e) => e.name === 'us-1')!.close();
  const r = await purgeVia(get, cdn, { url: '/img/logo.png' });
  assert.equal(r.status, 504, r.body);
  const body = JSON.parse(r.body) as { error: { code: string; missing: string[]; message: string }; purged: number; nodes: Array<{ name: string; acked: boolean; error?: string }> };
  assert.equal(body.error.code, 'ARCHLAB_CDN_PURGE_INCOMPLETE');
  assert.deepEqual(body.error.missing, ['us-1']);
  assert.match(body.error.message, /us-1/);
  assert.equal(body.nodes.length, 5);
  assert.deepEqual(body.nodes.filter((n) => !n.acked).map((n) => n.name), ['us-1']);
  assert.ok(body.nodes.find((n) => n.name === 'us-1')!.error);
  assert.equal(body.purged, 3, 'the other nodes still purged theirs');
  // In-process, the same as a typed error.
  await assert.rejects(cdn.purge({ url: '/img/logo.png' }), (err) => isCdnError(err, 'ARCHLAB_CDN_PURGE_INCOMPLETE') && (err.details?.missing as string[])[0] === 'us-1' && err.retryable);
  assert.equal(cdn.stats().purge.incomplete, 2);
});

test('admin: /stats per node and region with ratios, /topology with ports and the matrix, /metrics in Prometheus text', async (t) => {
  const cdn = await withCdn(t, testConfig());
  const get = client(t);
  const auth = { authorization: `Bearer ${TEST_TOKEN}` };
  await warm(get, cdn.url, '/js/app.js');
  await warm(get, cdn.url, '/js/app.js');
  assert.equal((await purgeVia(get, cdn, { tag: 'nothing-has-this' })).status, 200);

  const stats = JSON.parse((await get(`${cdn.admin!.url}/stats`, { headers: auth })).body);
  assert.deepEqual(stats.regions.map((r: { region: string }) => r.region), ['eu', 'us', 'ap']);
  for (const r of stats.regions) {
    assert.equal(r.requests, 2 + r.nodes, `${r.region}: two GETs, and the PURGE on each node`);
    assert.equal(r.purges, r.nodes);
    assert.equal(r.hits, 1);
    assert.equal(r.hitRatio, 0.5);
    assert.equal(r.byteHitRatio, 0.5, 'half the body bytes came from store');
  }
  assert.equal(stats.origin.requests, 1, 'the shield fetched once');
  assert.equal(stats.shield.name, 'shield');
  assert.ok(Math.abs(stats.offload.requests - (1 - 1 / 6)) < 1e-9, 'the origin saw one of six edge requests');
  assert.equal(stats.router.requests, 6);
  assert.equal(stats.nodes.length, 5);

  const topo = JSON.parse((await get(`${cdn.admin!.url}/topology`, { headers: auth })).body);
  assert.deepEqual(topo.regions, [
    { name: 'eu', edges: ['eu-1', 'eu-2'] },
    { name: 'us', edges: ['us-1'] },
    { name: 'ap', edges: ['ap-1'] },
  ]);
  assert.equal(topo.shield.url, cdn.shield!.url);
  assert.equal(topo.edges.length, 4);
  assert.ok(topo.edges.every((e: { url: string; upstream: string }) => /^http:\/\/127\.0\.0\.1:\d+$/.test(e.url) && e.upstream === cdn.shield!.url));
  assert.equal(topo.origin.url, cdn.origin.url);
  assert.deepEqual(topo.routers, [cdn.url]);

  const metrics = (await get(`${cdn.admin!.url}/metrics`)).body;
  assert.match(metrics, /archlab_cdn_hits_total\{node="eu-\d",region="eu",tier="edge",server="cdn"\} 1/);
  assert.match(metrics, /archlab_cdn_origin_requests_total\{server="cdn"\} 1/);
  assert.match(metrics, /archlab_cdn_stored_objects\{node="shield",region="shield",tier="shield",server="cdn"\} 1/);
  assert.match(metrics, /archlab_cdn_region_byte_hit_ratio\{region="us",server="cdn"\} 0\.5/);
  assert.match(metrics, /archlab_cdn_purge_propagation_seconds_count\{server="cdn"\} 1/);
  assert.match(metrics, /archlab_cdn_purge_propagation_recent_seconds\{quantile="0\.99",server="cdn"\} 0\.\d+/);
  assert.match(metrics, /archlab_cdn_origin_requests_per_second\{server="cdn"\} \d/);
  assert.match(metrics, /archlab_cdn_request_duration_seconds_count\{(?=[^}]*client_region="ap")(?=[^}]*edge_region="ap")[^}]*\} 2\n/);
  assert.equal((await get(`${cdn.admin!.url}/healthz`)).status, 200);
});
