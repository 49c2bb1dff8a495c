import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { CLOCK_START_MS, send, startOrigin, startTestEdge, type Origin, type TestEdge } from '../../src/cdn/edge/test-helpers.js';

const BODY = 'hello from the origin';

describe('edge: hits, misses and what a hit looks like', () => {
  let origin: Origin;
  let e: TestEdge;
  const clock = new ManualClock(CLOCK_START_MS);

  before(async () => {
    origin = await startOrigin((req, res) => {
      const url = req.url ?? '/';
      if (url.startsWith('/vary')) {
        const enc = req.headers['accept-encoding'] ?? 'none';
        res.writeHead(200, { 'cache-control': 'max-age=100', vary: 'Accept-Encoding', 'content-type': 'text/plain' });
        res.end(`body for ${enc}`);
        return;
      }
      if (url.startsWith('/star')) {
        res.writeHead(200, { 'cache-control': 'max-age=100', vary: '*' });
        res.end('star');
        return;
      }
      if (url.startsWith('/big')) {
        res.writeHead(200, { 'cache-control': 'max-age=100' });
        res.end(Buffer.alloc(100 * 1024, 'b'));
        return;
      }
      if (req.method === 'POST') {
        req.resume();
        req.on('end', () => {
          res.writeHead(201, { location: '/other', 'content-type': 'text/plain' });
          res.end('created');
        });
        return;
      }
      res.writeHead(200, {
        'cache-control': 'max-age=100',
        'content-type': 'text/plain',
        etag: '"v1"',
        'last-modified': 'Tue, 14 Nov 2023 22:00:00 GMT',
        'server-timing': 'origin;dur=3',
      });
      res.end(`${BODY} ${url}`);
    });
    e = await startTestEdge(origin.url, { clock, storageOptions: { maxObjectBytes: 64 * 1024 } });
  });
  after(async () => {
    await e?.close();
    await origin?.close();
  });

  test('a miss goes to the origin, the next request is a hit with the right Age', async () => {
    const a = await send(e.url, '/a');
    assert.equal(a.status, 200);
    assert.equal(a.text, `${BODY} /a`);
    assert.equal(a.headers['x-cache'], 'MISS');
    assert.match(String(a.headers['server-timing']), /^origin;dur=3, edge;dur=[\d.]+;desc="e1 MISS"$/);
    clock.advance(7000);
    const b = await send(e.url, '/a');
    assert.equal(b.status, 200);
    assert.equal(b.text, `${BODY} /a`);
    assert.equal(b.headers['x-cache'], 'HIT');
    assert.equal(b.headers.age, '7');
    assert.equal(b.headers['content-length'], String(Buffer.byteLength(`${BODY} /a`)));
    assert.match(String(b.headers['server-timing']), /^edge;dur=[\d.]+;desc="e1 HIT"$/);
    assert.match(String(b.headers.via), /1\.1 e1$/);
    assert.equal(origin.count('/a'), 1);
    const s = e.edge.stats();
    assert.equal(s.hits, 1);
    assert.equal(s.misses, 1);
    assert.ok(s.bytesFromCache > 0 && s.bytesFromUpstream > 0);
  });

  test('HEAD is answered from a stored GET; a HEAD miss fills with GET', async () => {
    await send(e.url, '/h');
    const h = await send(e.url, '/h', { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.headers['x-cache'], 'HIT');
    assert.equal(h.body.length, 0);
    assert.equal(h.headers['content-length'], String(Buffer.byteLength(`${BODY} /h`)));
    const h2 = await send(e.url, '/h2', { method: 'HEAD' });
    assert.equal(h2.headers['x-cache'], 'MISS');
    assert.equal(h2.body.length, 0);
    const g = await send(e.url, '/h2');
    assert.equal(g.headers['x-cache'], 'HIT');
    assert.equal(g.text, `${BODY} /h2`);
    assert.deepEqual(
      origin.seen.filter((s) => s.url.startsWith('/h')).map((s) => s.method),
      ['GET', 'GET'],
    );
  });

  test('Range: the miss fetches the whole object without Range, ranges are cut from it (206), unsatisfiable is 416', async () => {
    const full = `${BODY} /r`;
    const first = await send(e.url, '/r', { headers: { range: 'bytes=0-4' } });
    assert.equal(first.status, 206);
    assert.equal(first.text, full.slice(0, 5));
    assert.equal(first.headers['content-range'], `bytes 0-4/${full.length}`);
    assert.equal(origin.seen.find((s) => s.url === '/r')?.headers.range, undefined);
    const suffix = await send(e.url, '/r', { headers: { range: 'bytes=-3' } });
    assert.equal(suffix.status, 206);
    assert.equal(suffix.text, full.slice(-3));
    assert.equal(suffix.headers['x-cache'], 'HIT');
    const bad = await send(e.url, '/r', { headers: { range: 'bytes=9999-' } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers['content-range'], `bytes */${full.length}`);
    const ifRangeOld = await send(e.url, '/r', { headers: { range: 'bytes=0-1', 'if-range': '"old"' } });
    assert.equal(ifRangeOld.status, 200);
    assert.equal(ifRangeOld.text, full);
    assert.equal(origin.count('/r'), 1);
  });

  test('conditional requests are answered 304 from the stored object', async () => {
    await send(e.url, '/c');
    const inm = await send(e.url, '/c', { headers: { 'if-none-match': 'W/"v1"' } });
    assert.equal(inm.status, 304);
    assert.equal(inm.body.length, 0);
    assert.equal(inm.headers.etag, '"v1"');
    const ims = await send(e.url, '/c', { headers: { 'if-modified-since': 'Wed, 15 Nov 2023 00:00:00 GMT' } });
    assert.equal(ims.status, 304);
    const changed = await send(e.url, '/c', { headers: { 'if-none-match': '"v0"' } });
    assert.equal(changed.status, 200);
    assert.equal(origin.count('/c'), 1);
  });

  test('Vary: one variant per Accept-Encoding, each served to its own requests', async () => {
    const gz = await send(e.url, '/vary', { headers: { 'accept-encoding': 'gzip' } });
    const br = await send(e.url, '/vary', { headers: { 'accept-encoding': 'br' } });
    assert.equal(gz.text, 'body for gzip');
    assert.equal(br.text, 'body for br');
    const gz2 = await send(e.url, '/vary', { headers: { 'accept-encoding': 'gzip' } });
    const br2 = await send(e.url, '/vary', { headers: { 'accept-encoding': ' br ' } });
    assert.equal(gz2.headers['x-cache'], 'HIT');
    assert.equal(gz2.text, 'body for gzip');
    assert.equal(br2.headers['x-cache'], 'HIT');
    assert.equal(br2.text, 'body for br');
    assert.equal(origin.count('/vary'), 2);
  });

  test('Vary: * is never served from cache', async () => {
    await send(e.url, '/star');
    const b = await send(e.url, '/star');
    assert.notEqual(b.headers['x-cache'], 'HIT');
    assert.equal(origin.count('/star'), 2);
  });

  test('an object over the storage maxObjectBytes is passed uncached (and then hit-for-pass)', async () => {
    const a = await send(e.url, '/big');
    const b = await send(e.url, '/big');
    assert.equal(a.body.length, 100 * 1024);
    assert.equal(b.body.length, 100 * 1024);
    assert.equal(a.headers['x-cache'], 'MISS');
    assert.equal(b.headers['x-cache'], 'PASS');
    assert.equal(origin.count('/big'), 2);
    assert.equal(e.storage.variants('http://example.test/big').length, 0);
    // Known too large: a Range is now forwarded instead of fetching the whole object.
    await send(e.url, '/big', { headers: { range: 'bytes=0-9' } });
    assert.equal(origin.seen.at(-1)!.headers.range, 'bytes=0-9');
  });

  test('an unsafe method passes through and invalidates the URL and its Location', async () => {
    await send(e.url, '/p');
    await send(e.url, '/other');
    assert.equal((await send(e.url, '/p')).headers['x-cache'], 'HIT');
    const post = await send(e.url, '/p', { method: 'POST', body: 'x=1', headers: { 'content-type': 'text/plain' } });
    assert.equal(post.status, 201);
    assert.equal(post.text, 'created');
    assert.equal(post.headers['x-cache'], 'PASS');
    assert.equal((await send(e.url, '/p')).headers['x-cache'], 'MISS');
    assert.equal((await send(e.url, '/other')).headers['x-cache'], 'MISS');
    assert.equal(origin.seen.filter((s) => s.method === 'POST').length, 1);
  });
});
