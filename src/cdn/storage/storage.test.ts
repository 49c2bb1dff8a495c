import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { createStorage } from './index.js';
import { estimateHeadBytes } from './head-bytes.js';
import { body, meta, put, readBody } from './test-helpers.js';

/** Memory bytes that hold exactly `n` objects of `bodyBytes` under keys like meta('k1'). */
function roomFor(n: number, bodyBytes: number, key = 'k1'): number {
  return n * (estimateHeadBytes(meta(key)) + bodyBytes);
}

test('storage: memory LRU by bytes evicts the least recent object; get makes an object recent', async () => {
  const s = await createStorage({ memoryBytes: roomFor(3, 100) });
  try {
    for (const k of ['k1', 'k2', 'k3']) assert.equal(await put(s, meta(k), body(100)), true);
    assert.equal(s.stats().objects, 3);
    assert.ok(s.get('k1')); // k1 becomes most recent: k2 is now the least
    await put(s, meta('k4'), body(100));
    assert.equal(s.get('k2'), undefined);
    assert.ok(s.get('k1'));
    assert.ok(s.get('k3'));
    assert.ok(s.get('k4'));
    const st = s.stats();
    assert.equal(st.evictions, 1);
    assert.equal(st.objects, 3);
    assert.equal(st.memoryObjects, 3);
    assert.equal(st.memoryBytes, roomFor(3, 100));
    assert.equal(st.bytes, st.memoryBytes);
    assert.equal(st.diskObjects, 0);
    // A larger object evicts as many least-recent objects as it needs: k3, k1 (k4 was stored last).
    s.get('k4');
    await put(s, meta('k5'), body(250));
    assert.equal(s.get('k3'), undefined);
    assert.equal(s.get('k1'), undefined);
    assert.ok(s.get('k4'));
    assert.ok(s.get('k5'));
    assert.equal(s.stats().evictions, 3);
    assert.ok(s.stats().memoryBytes <= roomFor(3, 100));
  } finally {
    await s.close();
  }
});

test('storage: get returns the stored head and the whole body from memory', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const data = body(5000, 3);
    await put(s, meta('https://a.test/x#', { tags: ['t1'], headers: { 'content-type': 'image/png', 'set-cookie': ['a=1', 'b=2'] } }), data, { chunks: 7 });
    const obj = s.get('https://a.test/x#');
    assert.ok(obj);
    assert.equal(obj.meta.bodyBytes, 5000);
    assert.equal(obj.meta.primaryKey, 'https://a.test/x');
    assert.deepEqual(obj.meta.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(obj.open, undefined);
    assert.ok(obj.body?.equals(data));
    // the stored body is one right-sized buffer, not a view of a pooled slab
    assert.equal(obj.body!.byteOffset, 0);
    assert.equal(obj.body!.buffer.byteLength, 5000);
    // The same object (no copy) on every hit.
    assert.equal(s.get('https://a.test/x#'), obj);
    assert.equal(s.get('nope'), undefined);
  } finally {
    await s.close();
  }
});

test('storage: the caller changing the meta it passed to begin does not change the stored head', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const m = meta('k1', { tags: ['t1'], headers: { a: '1' } });
    const w = s.begin(m, 3)!;
    m.headers.a = 'changed';
    m.tags.push('t2');
    w.write(Buffer.from('abc'));
    await w.commit();
    assert.equal(s.get('k1')!.meta.headers.a, '1');
    assert.deepEqual(s.get('k1')!.meta.tags, ['t1']);
    assert.deepEqual(s.find({ kind: 'tag', tag: 't2' }), []);
  } finally {
    await s.close();
  }
});

test('storage: an object over maxObjectBytes is never stored, known size or not', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20, maxObjectBytes: 1000 });
  try {
    // Known size: refused up front.
    assert.equal(s.begin(meta('big'), 1001), undefined);
    assert.ok(s.begin(meta('ok'), 1000));
    // Unknown size growing past the limit: the writer aborts itself; writes and commit after it are
    // accepted silently (the edge keeps streaming to its client) and nothing is stored.
    const w = s.begin(meta('grows'))!;
    assert.ok(w);
    w.write(body(600));
    assert.equal(s.stats().writingBytes, 600);
    w.write(body(600));
    assert.equal(s.stats().writingBytes, 0);
    w.write(body(10));
    await w.commit();
    assert.equal(s.get('grows'), undefined);
    assert.deepEqual(s.find({ kind: 'url', primaryKey: 'grows' }), []);
    const st = s.stats();
    assert.equal(st.objects, 0);
    assert.equal(st.refused, 1);
    assert.equal(st.writerAborts, 1);
    // The same key stored within the limit works.
    assert.equal(await put(s, meta('grows'), body(1000), { known: false, chunks: 4 }), true);
    assert.equal(s.get('grows')!.meta.bodyBytes, 1000);
  } finally {
    await s.close();
  }
});

test('storage: without a disk, an object larger than memory is refused; the options cap maxObjectBytes', async () => {
  const s = await createStorage({ memoryBytes: 2000 });
  try {
    assert.equal(s.options.maxObjectBytes, 2000);
    assert.equal(s.begin(meta('k'), 2001), undefined);
    // fits the body limit but not with its head
    assert.equal(s.begin(meta('k'), 1990), undefined);
    const w = s.begin(meta('k'))!;
    w.write(body(1990));
    await w.commit();
    assert.equal(s.get('k'), undefined);
  } finally {
    await s.close();
  }
});

test('storage: a body shorter or longer than expectedBytes is not stored', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const short = s.begin(meta('short'), 100)!;
    short.write(body(60));
    await short.commit();
    assert.equal(s.get('short'), undefined);
    const long = s.begin(meta('long'), 100)!;
    long.write(body(60));
    long.write(body(60));
    await long.commit();
    assert.equal(s.get('long'), undefined);
    assert.equal(s.stats().writerAborts, 2);
    assert.equal(s.stats().writers, 0);
  } finally {
    await s.close();
  }
});

test('storage: a concurrent get sees nothing while an object is written, then the whole object', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const data = body(3000, 1);
    const w = s.begin(meta('k'), data.length)!;
    for (let off = 0; off < data.length; off += 500) {
      w.write(data.subarray(off, off + 500));
      assert.equal(s.get('k'), undefined);
      assert.deepEqual(s.variants('k'), []);
      await new Promise((r) => setImmediate(r));
    }
    const committing = w.commit();
    await committing;
    assert.ok(s.get('k')!.body!.equals(data));
    assert.equal(s.variants('k').length, 1);
  } finally {
    await s.close();
  }
});

test('storage: committing replaces the object under the same key; readers see old or new whole', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const v1 = body(1000, 1);
    const v2 = body(1500, 2);
    await put(s, meta('k', { tags: ['old'] }), v1);
    const held = s.get('k')!;
    const w = s.begin(meta('k', { tags: ['new'] }), v2.length)!;
    w.write(v2.subarray(0, 700));
    assert.ok(s.get('k')!.body!.equals(v1)); // still the old one, whole
    w.write(v2.subarray(700));
    await w.commit();
    assert.ok(s.get('k')!.body!.equals(v2));
    assert.ok(held.body!.equals(v1)); // a reader holding the old object keeps it whole
    assert.deepEqual(s.find({ kind: 'tag', tag: 'old' }), []);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'new' }), ['k']);
    const st = s.stats();
    assert.equal(st.objects, 1);
    assert.equal(st.evictions, 0);
    assert.equal(st.memoryBytes, estimateHeadBytes(meta('k', { tags: ['new'] })) + 1500);
  } finally {
    await s.close();
  }
});

test('storage: two writers for one key: the last commit wins', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const a = s.begin(meta('k'), 3)!;
    const b = s.begin(meta('k'), 3)!;
    a.write(Buffer.from('aaa'));
    b.write(Buffer.from('bbb'));
    await b.commit();
    await a.commit();
    assert.equal(s.get('k')!.body!.toString(), 'aaa');
    assert.equal(s.stats().objects, 1);
  } finally {
    await s.close();
  }
});

test('storage: variants by primary key, find by url, prefix and tag', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    await put(s, meta('https://a.test/x#gzip', { tags: ['t1', 'all'] }), body(10));
    await put(s, meta('https://a.test/x#br', { tags: ['t2', 'all'] }), body(10));
    await put(s, meta('https://a.test/y#', { tags: ['all'] }), body(10));
    await put(s, meta('https://b.test/x#', { tags: ['t1'] }), body(10));
    const v = s.variants('https://a.test/x');
    assert.deepEqual(v.map((m) => m.key).sort(), ['https://a.test/x#br', 'https://a.test/x#gzip']);
    assert.ok(Object.isFrozen(v));
    // Unchanged: the same array again (no allocation on a lookup).
    assert.equal(s.variants('https://a.test/x'), v);
    assert.deepEqual(s.variants('https://a.test/none'), []);
    assert.deepEqual(s.find({ kind: 'url', primaryKey: 'https://a.test/x' }).sort(), ['https://a.test/x#br', 'https://a.test/x#gzip']);
    assert.deepEqual(s.find({ kind: 'prefix', prefix: 'https://a.test/' }).sort(), ['https://a.test/x#br', 'https://a.test/x#gzip', 'https://a.test/y#']);
    assert.deepEqual(s.find({ kind: 'prefix', prefix: 'https://' }).length, 4);
    assert.deepEqual(s.find({ kind: 'prefix', prefix: 'http://' }), []);
    assert.deepEqual(s.find({ kind: 'tag', tag: 't1' }).sort(), ['https://a.test/x#gzip', 'https://b.test/x#']);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'nope' }), []);
    // A delete updates every index and the variants.
    assert.equal(s.delete('https://a.test/x#gzip'), true);
    assert.equal(s.delete('https://a.test/x#gzip'), false);
    const v2 = s.variants('https://a.test/x');
    assert.notEqual(v2, v);
    assert.deepEqual(v2.map((m) => m.key), ['https://a.test/x#br']);
    assert.deepEqual(s.find({ kind: 'tag', tag: 't1' }), ['https://b.test/x#']);
    assert.equal(s.stats().tags, 3);
  } finally {
    await s.close();
  }
});

test('storage: updateMeta replaces head fields and keeps the body; a soft purge can be cleared', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const data = body(2000, 5);
    await put(s, meta('k', { tags: ['a'], headers: { etag: '"1"' } }), data);
    const before = s.get('k')!;
    const v = s.variants('k');
    s.updateMeta('k', { headers: { etag: '"1"', 'cache-control': 'max-age=60' }, storedAt: 42, policy: { v: 2 }, tags: ['b'] });
    const after = s.get('k')!;
    assert.notEqual(after, before);
    assert.equal(after.body, before.body);
    assert.equal(after.meta.storedAt, 42);
    assert.deepEqual(after.meta.policy, { v: 2 });
    assert.equal(after.meta.headers['cache-control'], 'max-age=60');
    assert.equal(after.meta.bodyBytes, 2000);
    assert.equal(before.meta.storedAt, 1_700_000_000_000); // the old head is not changed in place
    assert.notEqual(s.variants('k'), v);
    assert.equal(s.variants('k')[0]!.storedAt, 42);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'a' }), []);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'b' }), ['k']);
    assert.equal(s.stats().memoryBytes, estimateHeadBytes(after.meta) + 2000);
    s.updateMeta('k', { softPurgedAt: 99 });
    assert.equal(s.get('k')!.meta.softPurgedAt, 99);
    assert.equal(s.get('k')!.meta.storedAt, 42);
    s.updateMeta('k', { softPurgedAt: undefined });
    assert.equal('softPurgedAt' in s.get('k')!.meta, false);
    s.updateMeta('absent', { storedAt: 1 }); // a no-op
    assert.equal(s.get('absent'), undefined);
  } finally {
    await s.close();
  }
});

test('storage: purges reach writers in flight: find lists them, delete aborts them, soft purge marks them', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const hard = s.begin(meta('https://a.test/x#', { tags: ['t'] }), 4)!;
    const soft = s.begin(meta('https://a.test/y#', { tags: ['t'] }), 4)!;
    hard.write(Buffer.from('ab'));
    soft.write(Buffer.from('ab'));
    assert.deepEqual(s.find({ kind: 'tag', tag: 't' }).sort(), ['https://a.test/x#', 'https://a.test/y#']);
    assert.deepEqual(s.find({ kind: 'prefix', prefix: 'https://a.test/x' }), ['https://a.test/x#']);
    assert.deepEqual(s.find({ kind: 'url', primaryKey: 'https://a.test/y' }), ['https://a.test/y#']);
    assert.equal(s.delete('https://a.test/x#'), true);
    s.updateMeta('https://a.test/y#', { softPurgedAt: 7 });
    hard.write(Buffer.from('cd'));
    soft.write(Buffer.from('cd'));
    await hard.commit();
    await soft.commit();
    assert.equal(s.get('https://a.test/x#'), undefined);
    assert.equal(s.get('https://a.test/y#')!.meta.softPurgedAt, 7);
    assert.equal(s.stats().writers, 0);
    // An object stored and being rewritten is listed once.
    const again = s.begin(meta('https://a.test/y#', { tags: ['t'] }), 1)!;
    assert.deepEqual(s.find({ kind: 'tag', tag: 't' }), ['https://a.test/y#']);
    again.abort();
    assert.equal(s.stats().writers, 0);
    assert.equal(s.stats().writerAborts, 0); // caller aborts and purges are not counted as failures
  } finally {
    await s.close();
  }
});

test('storage: maxObjects bounds distinct keys; the least recent goes', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20, maxObjects: 3 });
  try {
    for (const k of ['a', 'b', 'c']) await put(s, meta(k), body(10));
    s.get('a');
    await put(s, meta('d'), body(10));
    assert.equal(s.get('b'), undefined);
    assert.equal(s.stats().objects, 3);
    assert.equal(s.stats().evictions, 1);
    // Replacing a stored key does not evict anything.
    await put(s, meta('d'), body(20));
    assert.equal(s.stats().objects, 3);
    assert.equal(s.stats().evictions, 1);
  } finally {
    await s.close();
  }
});

test('storage: writers are bounded by count and by bytes held', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20, maxObjectBytes: 1000, maxWriters: 2, maxWritingBytes: 1500 });
  try {
    const a = s.begin(meta('a'))!;
    const b = s.begin(meta('b'))!;
    assert.equal(s.begin(meta('c')), undefined);
    a.write(body(900));
    b.write(body(500));
    assert.equal(s.stats().writingBytes, 1400);
    b.write(body(200)); // 1600 > 1500: b aborts, a is untouched
    assert.equal(s.stats().writingBytes, 900);
    await b.commit();
    await a.commit();
    assert.equal(s.get('b'), undefined);
    assert.equal(s.get('a')!.meta.bodyBytes, 900);
    assert.equal(s.stats().writingBytes, 0);
    assert.ok(s.begin(meta('c')));
  } finally {
    await s.close();
  }
});

test('storage: write after commit is a programming error; commit and abort twice are harmless', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const w = s.begin(meta('k'))!;
    w.write(Buffer.from('x'));
    await w.commit();
    await w.commit();
    w.abort();
    assert.equal(s.get('k')!.body!.toString(), 'x');
    assert.throws(() => w.write(Buffer.from('y')), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    assert.equal(s.get('k')!.body!.toString(), 'x');
    // after an abort, writes and commit are accepted and do nothing
    const a = s.begin(meta('a'))!;
    a.abort();
    a.write(Buffer.from('z'));
    await a.commit();
    assert.equal(s.get('a'), undefined);
  } finally {
    await s.close();
  }
});

test('storage: options are validated at construction', async () => {
  const bad = [
    { memoryBytes: 0 },
    { memoryBytes: -1 },
    { memoryBytes: 1.5 },
    { memoryBytes: 1000, maxObjectBytes: 0 },
    { memoryBytes: 1000, maxObjects: 0 },
    { memoryBytes: 1000, disk: { dir: '', maxBytes: 10 } },
    { memoryBytes: 1000, disk: { dir: '/tmp/x', maxBytes: 0 } },
    { memoryBytes: 1000, memoryObjectMaxBytes: 2000, disk: { dir: '/tmp/x', maxBytes: 10 } },
  ];
  for (const opts of bad) {
    await assert.rejects(createStorage(opts), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(opts));
  }
  await assert.rejects(createStorage({} as never), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  const s = await createStorage({ memoryBytes: 1000 });
  assert.throws(() => s.begin(meta('k'), -1), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  await s.close();
});

test('storage: close aborts writers, drops everything, sets no timers; later calls are harmless', async () => {
  const clock = new ManualClock(0);
  const s = await createStorage({ memoryBytes: 1 << 20, clock });
  await put(s, meta('k', { tags: ['t'] }), body(10));
  const w = s.begin(meta('w'))!;
  w.write(body(10));
  await s.close();
  await s.close();
  assert.equal(clock.pending(), 0);
  assert.equal(s.get('k'), undefined);
  assert.deepEqual(s.variants('k'), []);
  assert.deepEqual(s.find({ kind: 'tag', tag: 't' }), []);
  assert.equal(s.begin(meta('x'), 1), undefined);
  await w.commit();
  assert.equal(s.get('w'), undefined);
  assert.equal(s.delete('k'), false);
  s.updateMeta('k', { storedAt: 1 });
  assert.deepEqual(
    { objects: s.stats().objects, bytes: s.stats().bytes, writers: s.stats().writers, writingBytes: s.stats().writingBytes },
    { objects: 0, bytes: 0, writers: 0, writingBytes: 0 },
  );
});

test('storage: a read of a stored body through the helper matches what was written (memory ranges)', async () => {
  const s = await createStorage({ memoryBytes: 1 << 20 });
  try {
    const data = body(100, 9);
    await put(s, meta('k'), data);
    assert.ok((await readBody(s.get('k')!, { start: 10, end: 19 })).equals(data.subarray(10, 20)));
  } finally {
    await s.close();
  }
});
