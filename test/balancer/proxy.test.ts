import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backend, balancer, request } from './helpers.js';

test('round robin over two backends; forwarded headers added, hop-by-hop removed', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const lb = await balancer(t, { pools: [{ name: 'app', backends: [{ address: a.address }, { address: b.address }] }] });
  const bodies: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await request(lb.url, { path: `/x?i=${i}`, headers: { connection: 'x-secret, keep-alive', 'x-secret': 'hop', 'x-forwarded-for': '6.6.6.6' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.via, '1.1 archlab');
    bodies.push(r.body);
  }
  assert.deepEqual(bodies.filter((x) => x === 'a').length, 3);
  assert.deepEqual(bodies.filter((x) => x === 'b').length, 3);
  const h = a.seen[0]!.headers;
  assert.equal(h['x-secret'], undefined, 'a header named by Connection is hop-by-hop');
  assert.equal(h['x-forwarded-for'], '127.0.0.1', 'an untrusted client cannot forge its address');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.match(String(h.forwarded), /for=127\.0\.0\.1/);
  assert.match(String(h['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.match(String(h.via), /archlab/);
  assert.equal(a.seen[0]!.url, '/x?i=0');
});

test('textbook routing: /api/video -> video, /api/user -> user (prefix stripped), else default', async (t) => {
  const video = await backend(t, 'video');
  const user = await backend(t, 'user');
  const web = await backend(t, 'web');
  const lb = await balancer(t, {
    pools: [
      { name: 'video', backends: [{ address: video.address }] },
      { name: 'user', backends: [{ address: user.address }] },
      { name: 'web', backends: [{ address: web.address }] },
    ],
    routes: [
      { match: { pathPrefix: '/api/video' }, pool: 'video' },
      { match: { pathPrefix: '/api/user' }, pool: 'user', stripPrefix: true },
    ],
    defaultPool: 'web',
  });
  assert.equal((await request(lb.url, { path: '/api/video/42' })).body, 'video');
  assert.equal((await request(lb.url, { path: '/api/user/7?x=1' })).body, 'user');
  assert.equal(user.seen[0]!.url, '/7?x=1');
  assert.equal((await request(lb.url, { path: '/api/videos' })).body, 'web');
  assert.equal((await request(lb.url, { path: '/' })).body, 'web');
});
