import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';

const AUTH = { authorization: 'Bearer secret' };

describe('edge: PURGE', () => {
  let origin: Origin;
  let e: TestEdge;
  const clock = new ManualClock(CLOCK_START_MS);
  let version = 1;
  let down = false;

  before(async () => {
    origin = await startOrigin((req, res) => {
      if (down) {
        req.socket.destroy();
        return;
      }
      const url = req.url ?? '/';
      const tags = url.startsWith('/img/') ? 'images all' : 'all';
      if (req.headers['if-none-match'] === `"v${version}"`) {
        res.writeHead(304, { etag: `"v${version}"`, 'cache-control': 'max-age=100' });
        res.end();
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=100', etag: `"v${version}"`, 'surrogate-key': tags, 'cache-tag': url.includes('logo') ? 'brand' : 'misc' });
      res.end(`${url} v${version}`);
    });
    e = await startTestEdge(origin.url, { clock });
  });
  after(async () => {
    await e?.close();
    await origin?.close();
  });
  beforeEach(async () => {
    down = false;
    version = 1;
    for (const u of ['/a', '/b', '/img/logo.png', '/img/x.png']) await send(e.url, u);
    for (const u of ['/a', '/b', '/img/logo.png', '/img/x.png']) assert.equal((await send(e.url, u)).headers['x-cache'], 'HIT');
  });

  const cache = async (u: string): Promise<string> => String((await send(e.url, u)).headers['x-cache']);

  test('without the token, or with a wrong one, PURGE is refused with 401 and purges nothing', async () => {
    const none = await send(e.url, '/a', { method: 'PURGE' });
    assert.equal(none.status, 401);
    assert.equal(none.headers['x-archlab-error'], 'ARCHLAB_CDN_UNAUTHORIZED');
    const wrong = await send(e.url, '/a', { method: 'PURGE', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    assert.equal(await cache('/a'), 'HIT');
  });

  test('a node without a purge token refuses every PURGE', async () => {
    const n = await startTestEdge(origin.url, { purgeToken: undefined });
    try {
      assert.equal((await send(n.url, '/a', { method: 'PURGE', headers: AUTH })).status, 401);
    } finally {
      await n.close();
    }
  });

  test('exact URL purge (hard) removes just that URL', async () => {
    const r = await send(e.url, '/a', { method: 'PURGE', headers: AUTH });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text), { purged: 1 });
    assert.equal(await cache('/a'), 'MISS');
    assert.equal(await cache('/b'), 'HIT');
    assert.equal(origin.seen.filter((s) => s.method === 'PURGE').length, 0, 'PURGE is not forwarded');
  });

  test('prefix purge', async () => {
    const r = await send(e.url, '/img/', { method: 'PURGE', headers: { ...AUTH, 'x-purge-prefix': '1' } });
    assert.deepEqual(JSON.parse(r.text), { purged: 2 });
    assert.equal(await cache('/img/logo.png'), 'MISS');
    assert.equal(await cache('/img/x.png'), 'MISS');
    assert.equal(await cache('/a'), 'HIT');
  });

  test('tag purge by Surrogate-Key and by Cache-Tag', async () => {
    const r = await send(e.url, '/', { method: 'PURGE', headers: { ...AUTH, 'x-purge-tag': 'images' } });
    assert.deepEqual(JSON.parse(r.text), { purged: 2 });
    assert.equal(await cache('/img/x.png'), 'MISS');
    assert.equal(await cache('/img/logo.png'), 'MISS');
    assert.equal(await cache('/a'), 'HIT');
    assert.equal(await cache('/img/logo.png'), 'HIT');
    const brand = await send(e.url, '/', { method: 'PURGE', headers: { ...AUTH, 'x-purge-tag': 'brand' } });
    assert.deepEqual(JSON.parse(brand.text), { purged: 1 });
    assert.equal(await cache('/img/logo.png'), 'MISS');
  });

  test('surrogate headers are stripped before clients at an edge', async () => {
    const r = await send(e.url, '/a');
    assert.equal(r.headers['surrogate-key'], undefined);
    assert.equal(r.headers['cache-tag'], undefined);
  });

  test('soft purge marks stale: the next request revalidates (REVALIDATED) and is fresh again', async () => {
    const r = await send(e.url, '/b', { method: 'PURGE', headers: { ...AUTH, 'x-purge-mode': 'soft' } });
    assert.deepEqual(JSON.parse(r.text), { purged: 1 });
    const seen = origin.count('/b');
    const after = await send(e.url, '/b');
    assert.equal(after.headers['x-cache'], 'REVALIDATED');
    assert.equal(after.text, '/b v1');
    assert.equal(origin.seen.filter((s) => s.url === '/b').at(-1)!.headers['if-none-match'], '"v1"');
    assert.equal(origin.count('/b'), seen + 1);
    assert.equal(await cache('/b'), 'HIT');
  });

  test('soft purge keeps the object for errors: origin down -> STALE; hard purge -> 502', async () => {
    await send(e.url, '/b', { method: 'PURGE', headers: { ...AUTH, 'x-purge-mode': 'soft' } });
    await send(e.url, '/a', { method: 'PURGE', headers: AUTH });
    down = true;
    const soft = await send(e.url, '/b');
    assert.equal(soft.status, 200);
    assert.equal(soft.headers['x-cache'], 'STALE');
    assert.equal(soft.text, '/b v1');
    assert.equal((await send(e.url, '/a')).status, 502);
  });

  test('in-process purge()', async () => {
    const res = await e.edge.purge({ selector: { kind: 'tag', tag: 'all' }, mode: 'hard' });
    assert.equal(res.purged, 4);
    assert.equal(await cache('/a'), 'MISS');
    assert.ok(e.edge.stats().purges > 0);
  });

  test('a bad X-Purge-Mode is a 400', async () => {
    const r = await send(e.url, '/a', { method: 'PURGE', headers: { ...AUTH, 'x-purge-mode': 'gentle' } });
    assert.equal(r.status, 400);
    assert.equal(await cache('/a'), 'HIT');
  });
});
