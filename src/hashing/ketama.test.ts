import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { KetamaHasher, pointCount } from './ketama.js';
import { ketamaHash, md5Bytes } from './hash.js';

test('js-md5 agrees with node:crypto md5 on strings (UTF-8) and bytes', () => {
  for (const k of ['', 'a', 'user:42', 'é', '日本語', '🚀'.repeat(40), 'x'.repeat(1000)]) {
    assert.deepEqual(md5Bytes(k), [...createHash('md5').update(k, 'utf8').digest()], k);
    assert.deepEqual(md5Bytes(Buffer.from(k)), [...createHash('md5').update(k, 'utf8').digest()], k);
  }
  assert.equal(ketamaHash('foo'), createHash('md5').update('foo').digest().readUInt32LE(0));
});

test('point counts follow libmemcached\u2019s float arithmetic', () => {
  // Equal weights: 160 each at 7 servers, where doubles would give 156 (1/7 * 40 * 7 = 39.99999999999999);
  // and 156 at 25, where float rounding falls below 40 in C too (test/hashing/ketama-compat checks both against libmemcached).
  assert.equal(pointCount(1, 7, 7, 160), 160);
  assert.equal(pointCount(1, 25, 25, 160), 156);
  assert.equal(pointCount(1, 10, 10, 160), 160);
  // Weighted: 600/300/200/350 of 1450 over 4 servers.
  assert.deepEqual([600, 300, 200, 350].map((w) => pointCount(w, 1450, 4, 160)), [264, 132, 88, 152]);
  const h = new KetamaHasher();
  for (let i = 0; i < 7; i++) h.add(`10.0.0.${i}:11211`);
  assert.equal(h.pointCount, 7 * 160);
  assert.equal(h.pointsOf('10.0.0.3:11211'), 160);
});

test('default port is left out of point names (libmemcached); null keeps it (twemproxy naming)', () => {
  const withPort = new KetamaHasher({ defaultPort: null });
  const stripped = new KetamaHasher();
  const hostOnly = new KetamaHasher();
  for (const h of [withPort, stripped]) ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'].forEach((n) => h.add(n));
  ['10.0.0.1', '10.0.0.2', '10.0.0.3'].forEach((n) => hostOnly.add(n));
  const keys = Array.from({ length: 2000 }, (_, i) => `k${i}`);
  // Stripped names hash like bare hosts: same arcs, so the same owner index for every key.
  const idx = (h: KetamaHasher, k: string) => h.nodes().findIndex((n) => n.node === h.get(k));
  assert.deepEqual(keys.map((k) => idx(stripped, k)), keys.map((k) => idx(hostOnly, k)));
  assert.notDeepEqual(keys.map((k) => idx(withPort, k)), keys.map((k) => idx(stripped, k)));
  const otherPort = new KetamaHasher({ defaultPort: 11211 });
  otherPort.add('10.0.0.1:22122');
  assert.equal(otherPort.pointCount, 160);
});

test('points are sorted and keys go to the first point at or after their hash, wrapping', () => {
  const h = new KetamaHasher();
  ['a:1', 'b:1', 'c:1'].forEach((n) => h.add(n));
  for (let i = 1; i < h.pointCount; i++) assert.ok(h.pointAt(i - 1) <= h.pointAt(i));
  let wrapped = 0;
  for (let i = 0; i < 20_000; i++) {
    const k = `key${i}`;
    const hv = ketamaHash(k);
    const at = h.find(hv);
    if (hv > h.pointAt(h.pointCount - 1)) {
      wrapped++;
      assert.equal(at, 0);
    } else {
      assert.ok(h.pointAt(at) >= hv && (at === 0 || h.pointAt(at - 1) < hv));
    }
    assert.equal(h.get(k), h.ownerAt(at));
  }
  assert.ok(wrapped > 0, 'some keys hash past the last point');
});

test('pointsPerServer must be a positive multiple of 4', () => {
  for (const bad of [0, 6, -4, 1.5]) assert.throws(() => new KetamaHasher({ pointsPerServer: bad }), /multiple of 4/);
  const h = new KetamaHasher({ pointsPerServer: 40 });
  h.add('x:1');
  assert.equal(h.pointCount, 40);
});
