/** The router: client region by header or address, nearest region, consistent hashing inside a region, failover. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, testConfig, withCdn } from '../../src/cdn/network/test-helpers.js';

test('routing: X-Client-Region picks the region, else the source address through the CIDR map; unknown regions are a 400', async (t) => {
  const cdn = await withCdn(t, testConfig({ routing: { addressMap: [{ cidr: '127.0.0.0/8', region: 'us' }, { cidr: '::1/128', region: 'us' }] } }));
  const get = client(t);
  const byHeader = await get(`${cdn.url}/img/logo.png`, { headers: { 'x-client-region': 'ap' } });
  assert.equal(byHeader.status, 200);
  assert.equal(byHeader.headers['x-served-by'], 'ap-1');
  assert.equal(byHeader.headers['x-client-region'], 'ap');
  assert.equal(byHeader.body.length, 32 * 1024, 'the demo origin\'s object, whole');
  const byAddress = await get(`${cdn.url}/img/logo.png`);
  assert.equal(byAddress.headers['x-served-by'], 'us-1', 'loopback is mapped to us');
  assert.equal(byAddress.headers['x-client-region'], 'us');
  const unknown = await get(`${cdn.url}/img/logo.png`, { headers: { 'x-client-region': 'mars' } });
  assert.equal(unknown.status, 400);
  assert.equal(JSON.parse(unknown.body).error.code, 'ARCHLAB_CDN_BAD_REQUEST');
  assert.match(unknown.body, /unknown client region/);
  assert.deepEqual(cdn.stats().router.byClientRegion, { eu: 0, us: 1, ap: 1 });
});

test('routing: a region\'s URLs spread over its nodes by consistent hashing, the same URL always on the same node, cached once per region', async (t) => {
  const cdn = await withCdn(t, testConfig({ routing: { defaultRegion: 'eu' } }));
  const get = client(t);
  const urls = Array.from({ length: 24 }, (_, i) => `/objects/${i}`);
  const owner = new Map<string, string>();
  for (const u of urls) {
    const r = await get(`${cdn.url}${u}`);
    assert.equal(r.status, 200);
    const servedBy = r.headers['x-served-by']!;
    assert.match(servedBy, /^eu-[12]$/);
    assert.equal(servedBy, cdn.route('eu', u).edge, 'the router agrees with route()');
    owner.set(u, servedBy);
  }
  assert.deepEqual(new Set(owner.values()), new Set(['eu-1', 'eu-2']), 'both eu nodes own some URLs');
  for (const u of urls) {
    const again = await get(`${cdn.url}${u}`);
    assert.equal(again.headers['x-served-by'], owner.get(u), `${u} lands on the same node`);
    assert.match(again.headers['x-cache'] ?? '', /HIT$/, `${u} is a hit the second time`);
  }
  const eu = cdn.edges.filter((e) => e.region === 'eu');
  const stored = eu.map((e) => e.stats().storage.objects);
  assert.equal(stored[0]! + stored[1]!, urls.length, 'each object is stored on one eu node, not both');
  assert.equal(cdn.origin.demo!.stats().requests, urls.length, 'one origin request per URL');
});

test('routing: a GET whose edge is down goes to the next node of the region', async (t) => {
  const cdn = await withCdn(t, testConfig());
  const get = client(t);
  const eu1 = cdn.edges.find((e) => e.name === 'eu-1')!;
  const url = Array.from({ length: 50 }, (_, i) => `/objects/f${i}`).find((u) => cdn.route('eu', u).edge === 'eu-1')!;
  await eu1.close();
  const r = await get(`${cdn.url}${url}`, { headers: { 'x-client-region': 'eu' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-served-by'], 'eu-2');
  assert.equal(cdn.stats().router.failovers, 1);
});

test('routing: a target that cannot be keyed safely is a 400 at the router, a body over the limit a 413; unsafe methods stream their bodies through to the origin', async (t) => {
  const cdn = await withCdn(t, testConfig({ limits: { maxBody: '1KiB' } }));
  const get = client(t);
  const nul = await get(`${cdn.url}/a%00b`);
  assert.equal(nul.status, 400);
  assert.equal(JSON.parse(nul.body).error.code, 'ARCHLAB_CDN_BAD_REQUEST');

  const big = await get(`${cdn.url}/objects/doc`, { method: 'PUT', body: 'x'.repeat(2048) });
  assert.equal(big.status, 413);
  assert.equal(JSON.parse(big.body).error.code, 'ARCHLAB_BODY_TOO_LARGE');
  assert.equal(cdn.origin.demo!.requestsFor('/objects/doc'), 0, 'refused before any edge saw it');
  const first = await get(`${cdn.url}/objects/doc`, { headers: { 'x-client-region': 'us' } });
  assert.equal(first.body.length, 16 * 1024);
  const put = await get(`${cdn.url}/objects/doc`, { method: 'PUT', headers: { 'x-client-region': 'us', 'content-type': 'text/plain' }, body: 'version two' });
  assert.equal(put.status, 204, put.body);
  const after = await get(`${cdn.url}/objects/doc`, { headers: { 'x-client-region': 'us' } });
  assert.equal(after.body, 'version two', 'the PUT invalidated the copies on its way (edge and shield)');
  assert.equal(after.headers['content-type'], 'text/plain');

  // Set-Cookie + private: never stored, a fresh answer every time.
  const p1 = await get(`${cdn.url}/private`);
  const p2 = await get(`${cdn.url}/private`);
  assert.notEqual(p1.body, p2.body);
  assert.match(p2.headers['set-cookie'] ?? '', /^session=\d+/);
  assert.equal(cdn.origin.demo!.requestsFor('/private'), 2);
});
