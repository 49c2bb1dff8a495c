import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, truncateSync, appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { ManualClock } from '../../core/clock.js';
import { isArchlabError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { CdnError, isCdnError } from '../errors.js';
import type { StoredObject } from '../types.js';
import { bodyStreamReady, createStorage, type StorageOptions, type TieredStorage } from './index.js';
import { body, meta, put, readBody, tempDir } from './test-helpers.js';

/** Files under objects/ (every subdirectory). */
function objectFiles(dir: string): string[] {
  const root = join(dir, 'objects');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((sub) => readdirSync(join(root, sub)).map((f) => join(root, sub, f)));
}

/** Runs `fn` with a storage on a fresh temp dir; closes it and removes the dir even on failure. */
async function withDisk(opts: Partial<StorageOptions> & { diskMaxBytes?: number }, fn: (s: TieredStorage, dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = tempDir();
  const { diskMaxBytes, ...rest } = opts;
  let s: TieredStorage;
  try {
    s = await createStorage({
      memoryBytes: 64 * 1024,
      memoryObjectMaxBytes: 4096,
      ...rest,
      disk: { maxBytes: diskMaxBytes ?? 1 << 20, ...rest.disk, dir: join(dir, 'cache') },
    });
  } catch (err) {
    cleanup();
    throw err;
  }
  try {
    await fn(s, join(dir, 'cache'));
  } finally {
    await s.close();
    cleanup();
  }
}

/** The path of a disk object's file (DiskObject keeps it). */
function pathOf(obj: StoredObject): string {
  return (obj as unknown as { path: string }).path;
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  return { logger: createLogger({ destination, level: 'warn', pretty: false }), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('disk: an object above memoryObjectMaxBytes goes straight to disk and reads back, whole and in ranges', async () => {
  await withDisk({}, async (s, dir) => {
    const data = body(200_000, 4);
    assert.equal(await put(s, meta('big', { tags: ['t'] }), data, { chunks: 13 }), true);
    const obj = s.get('big')!;
    assert.equal(obj.body, undefined);
    assert.equal(typeof obj.open, 'function');
    assert.equal(obj.meta.bodyBytes, 200_000);
    assert.ok((await readBody(obj)).equals(data));
    for (const [start, end] of [
      [0, 0],
      [0, 99],
      [65_530, 65_545],
      [199_999, 199_999],
      [1000, 199_999],
    ] as const) {
      assert.ok((await readBody(obj, { start, end })).equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
    }
    // open is bound: it works detached from its object
    const open = obj.open!;
    assert.ok((await readBody({ meta: obj.meta, open })).equals(data));
    assert.throws(() => obj.open!({ start: 10, end: 200_000 }), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    assert.throws(() => obj.open!({ start: 10, end: 9 }), (err) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
    const st = s.stats();
    assert.equal(st.diskObjects, 1);
    assert.equal(st.diskBytes, 200_000);
    assert.equal(st.memoryObjects, 0);
    assert.equal(st.objects, 1);
    assert.deepEqual(s.find({ kind: 'tag', tag: 't' }), ['big']);
    assert.equal(objectFiles(dir).length, 1);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  });
});

test('disk: an object of unknown size spills from memory to disk when it grows past memoryObjectMaxBytes', async () => {
  await withDisk({}, async (s) => {
    const data = body(50_000, 2);
    await put(s, meta('grown'), data, { known: false, chunks: 50 });
    const obj = s.get('grown')!;
    assert.equal(obj.body, undefined);
    assert.ok((await readBody(obj)).equals(data));
    assert.equal(s.stats().writingBytes, 0);
    // small unknown-size objects stay in memory
    await put(s, meta('small'), body(100), { known: false });
    assert.ok(s.get('small')!.body);
  });
});

test('disk: an empty body is stored and read back', async () => {
  await withDisk({ memoryBytes: 2000, memoryObjectMaxBytes: 1000 }, async (s) => {
    await put(s, meta('empty'), Buffer.alloc(0));
    assert.equal(s.get('empty')!.body!.length, 0);
    // push it to disk by filling memory
    for (let i = 0; i < 4; i++) await put(s, meta(`f${i}`), body(900));
    await s.idle();
    const obj = s.peek('empty')!;
    assert.equal(obj.body, undefined);
    assert.equal((await readBody(obj)).length, 0);
  });
});

test('disk: objects evicted from memory move to disk and stay visible through the move', async () => {
  await withDisk({ memoryBytes: 4000, memoryObjectMaxBytes: 1000 }, async (s, dir) => {
    const bodies = new Map<string, Buffer>();
    for (let i = 0; i < 10; i++) {
      const data = body(900, i);
      bodies.set(`https://a.test/${i}#`, data);
      await put(s, meta(`https://a.test/${i}#`, { tags: [`t${i % 2}`] }), data);
      // every key stays findable whatever tier it is in, during the move too
      for (const k of bodies.keys()) assert.ok(s.get(k), `${k} after storing ${i}`);
    }
    await s.idle();
    const st = s.stats();
    assert.equal(st.objects, 10);
    assert.ok(st.demotions >= 6);
    assert.equal(st.evictions, 0);
    assert.equal(st.memoryObjects + st.diskObjects, 10);
    assert.ok(st.memoryBytes <= 4000);
    assert.equal(objectFiles(dir).length, st.diskObjects);
    for (const [k, data] of bodies) assert.ok((await readBody(s.get(k)!)).equals(data), k);
    assert.ok(s.get('https://a.test/0#')!.open, 'the oldest is on disk');
    assert.equal(s.find({ kind: 'prefix', prefix: 'https://a.test/' }).length, 10);
    assert.equal(s.find({ kind: 'tag', tag: 't0' }).length, 5);
    assert.equal(s.variants('https://a.test/0').length, 1);
  });
});

test('disk: the disk tier is bounded by bytes, LRU; evicted files are removed and unindexed', async () => {
  await withDisk({ memoryBytes: 64 * 1024, memoryObjectMaxBytes: 1000, diskMaxBytes: 30_000 }, async (s, dir) => {
    for (let i = 0; i < 3; i++) await put(s, meta(`d${i}`, { tags: ['disk'] }), body(10_000, i));
    assert.equal(s.stats().diskBytes, 30_000);
    s.get('d0'); // d0 becomes the most recent on disk
    await put(s, meta('d3', { tags: ['disk'] }), body(10_000, 3));
    await s.idle();
    assert.equal(s.get('d1'), undefined);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'disk' }).sort(), ['d0', 'd2', 'd3']);
    const st = s.stats();
    assert.equal(st.evictions, 1);
    assert.equal(st.diskBytes, 30_000);
    assert.equal(objectFiles(dir).length, 3);
    // larger than the whole disk: refused up front
    assert.equal(s.begin(meta('huge'), 30_001), undefined);
  });
});

test('disk: updateMeta replaces the head of a disk object and keeps its file', async () => {
  await withDisk({}, async (s) => {
    const data = body(10_000, 8);
    await put(s, meta('k', { tags: ['a'] }), data);
    const before = s.get('k')!;
    s.updateMeta('k', { storedAt: 5, tags: ['b'], headers: { etag: '"2"' } });
    const after = s.get('k')!;
    assert.equal(after.meta.storedAt, 5);
    assert.equal(after.meta.headers.etag, '"2"');
    assert.equal(pathOf(after), pathOf(before));
    assert.ok((await readBody(after)).equals(data));
    assert.deepEqual(s.find({ kind: 'tag', tag: 'b' }), ['k']);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'a' }), []);
  });
});

test('disk: delete and replace remove the old file; an object moves between tiers when replaced', async () => {
  await withDisk({}, async (s, dir) => {
    await put(s, meta('k'), body(10_000, 1));
    assert.equal(objectFiles(dir).length, 1);
    await put(s, meta('k'), body(100, 2)); // now small: memory
    await s.idle();
    assert.equal(objectFiles(dir).length, 0);
    assert.ok(s.get('k')!.body!.equals(body(100, 2)));
    await put(s, meta('k'), body(20_000, 3)); // large again: disk
    assert.equal(s.get('k')!.body, undefined);
    assert.equal(s.stats().memoryObjects, 0);
    assert.equal(s.delete('k'), true);
    await s.idle();
    assert.equal(objectFiles(dir).length, 0);
    assert.equal(s.stats().objects, 0);
  });
});

test('disk: a truncated, grown or missing file is dropped, never served short', async () => {
  const { logger, lines } = capture();
  await withDisk({ logger }, async (s) => {
    const data = body(100_000, 6);
    const cases: [string, (path: string) => void][] = [
      ['truncated', (p) => truncateSync(p, 50_000)],
      ['grown', (p) => appendFileSync(p, 'xx')],
      ['missing', (p) => rmSync(p)],
    ];
    for (const [name, damage] of cases) {
      await put(s, meta(name, { tags: ['t'] }), data);
      const obj = s.get(name)!;
      damage(pathOf(obj));
      const stream = obj.open!();
      let got = 0;
      stream.on('data', (c: Buffer) => (got += c.length));
      const err = await new Promise<unknown>((resolve) => {
        stream.on('error', resolve);
        stream.on('end', () => resolve(undefined));
      });
      assert.ok(isCdnError(err, 'ARCHLAB_CDN_STORAGE'), `${name}: ${String(err)}`);
      assert.equal(got, 0, `${name}: no byte served`);
      assert.equal(s.get(name), undefined, `${name}: dropped`);
    }
    assert.deepEqual(s.find({ kind: 'tag', tag: 't' }), []);
    const st = s.stats();
    assert.equal(st.diskReadErrors, 3);
    assert.equal(st.objects, 0);
    assert.equal(st.diskObjects, 0);
    assert.equal(lines().filter((l) => l.msg === 'cdn storage: disk object unreadable; dropped').length, 3);
  });
});

test('disk: a file that shrinks after it was opened fails the read instead of ending early', async () => {
  await withDisk({}, async (s) => {
    const data = body(300_000, 7);
    await put(s, meta('k'), data);
    const obj = s.get('k')!;
    const stream = obj.open!() as NodeJS.ReadableStream & { once(e: 'ready', f: () => void): void };
    await new Promise<void>((r) => stream.once('ready', r)); // open and size check passed
    truncateSync(pathOf(obj), 1000);
    const chunks: Buffer[] = [];
    await assert.rejects(
      (async () => {
        for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
      })(),
      (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'),
    );
    assert.ok(Buffer.concat(chunks).length < 300_000);
    assert.equal(s.get('k'), undefined);
  });
});

test('disk: a reader that stops early (client gone) does not drop the object', async () => {
  await withDisk({}, async (s) => {
    const data = body(300_000, 1);
    await put(s, meta('k'), data);
    const stream = s.get('k')!.open!() as NodeJS.ReadableStream & { destroy(err?: Error): void };
    await new Promise<void>((r) => stream.once('data', () => r()));
    stream.on('error', () => undefined);
    // what a pipeline passes on when the socket it writes to fails: a system error
    stream.destroy(Object.assign(new RangeError('write EPIPE'), { code: 'EPIPE', syscall: 'write', errno: -32 }));
    await new Promise((r) => setImmediate(r));
    assert.ok(s.get('k'));
    assert.equal(s.stats().diskReadErrors, 0);
  });
});

test('disk: purges reach a disk writer in flight, during its writes and during its commit', async () => {
  await withDisk({}, async (s, dir) => {
    const a = s.begin(meta('a'), 20_000)!;
    a.write(body(10_000));
    assert.deepEqual(s.find({ kind: 'url', primaryKey: 'a' }), ['a']);
    assert.equal(s.delete('a'), true);
    a.write(body(10_000));
    await a.commit();
    assert.equal(s.get('a'), undefined);

    const b = s.begin(meta('b'), 20_000)!;
    b.write(body(20_000));
    const committing = b.commit();
    assert.equal(s.delete('b'), true);
    await committing;
    await s.idle();
    assert.equal(s.get('b'), undefined);
    assert.deepEqual(objectFiles(dir), []);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
    assert.equal(s.stats().writers, 0);
    assert.equal(s.stats().writingBytes, 0);
  });
});

test('disk: a write error pauses the disk tier for errorBackoffMs on the injected clock', async () => {
  const clock = new ManualClock(0);
  const { logger, lines } = capture();
  await withDisk({ clock, logger, memoryBytes: 3000, memoryObjectMaxBytes: 1000, disk: { dir: '', maxBytes: 1 << 20, errorBackoffMs: 5000 } }, async (s, dir) => {
    rmSync(join(dir, 'tmp'), { recursive: true }); // every new file now fails to open
    // One writer fails while writing, the other while committing.
    const writing = s.begin(meta('big'), 10_000)!;
    const committing = s.begin(meta('big2'), 10_000)!;
    writing.write(body(10_000));
    committing.write(body(10_000));
    await committing.commit();
    for (let i = 0; i < 1000 && s.stats().writers > 0; i++) await new Promise((r) => setImmediate(r));
    await writing.commit();
    assert.equal(s.get('big'), undefined);
    assert.equal(s.get('big2'), undefined);
    assert.equal(s.stats().writers, 0);
    assert.equal(s.stats().writingBytes, 0);
    assert.equal(s.stats().diskWriteErrors, 2);
    assert.equal(clock.pending(), 1);
    assert.equal(lines().filter((l) => l.msg === 'cdn storage: disk write failed; disk tier paused').length, 2);
    // Paused: large objects are refused, evictions are dropped rather than written.
    assert.equal(s.begin(meta('big'), 10_000), undefined);
    for (let i = 0; i < 5; i++) await put(s, meta(`m${i}`), body(900));
    await s.idle();
    assert.equal(s.stats().demotions, 0);
    assert.ok(s.stats().evictions > 0);
    assert.equal(s.stats().diskWriteErrors, 2);
    // After the backoff, the disk takes objects again.
    mkdirSync(join(dir, 'tmp'));
    clock.advance(5000);
    assert.equal(clock.pending(), 0);
    assert.equal(await put(s, meta('big'), body(10_000)), true);
    assert.ok(s.get('big')!.open);
  });
});

test('disk: close cancels the backoff timer, aborts writers and demotions, and removes the directory it made', async () => {
  const clock = new ManualClock(0);
  const { dir, cleanup } = tempDir();
  try {
    const cache = join(dir, 'cache');
    const s = await createStorage({ clock, memoryBytes: 3000, memoryObjectMaxBytes: 1000, disk: { dir: cache, maxBytes: 1 << 20 } });
    const w = s.begin(meta('w'), 50_000)!;
    w.write(body(25_000));
    for (let i = 0; i < 6; i++) await put(s, meta(`m${i}`), body(900)); // demotions in flight
    s['disk']!.failed(new CdnError('ARCHLAB_CDN_STORAGE', 'simulated'), 'test'); // a backoff timer pending
    assert.equal(clock.pending(), 1);
    await s.close();
    assert.equal(clock.pending(), 0);
    assert.equal(existsSync(cache), false);
    await w.commit();
    assert.equal(s.get('w'), undefined);
  } finally {
    cleanup();
  }
});

test('disk: opening wipes an earlier disk tier, refuses a foreign directory and one in use', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // Left by an earlier storage that died: marker, files, a lock of a dead process.
    const old = join(dir, 'old');
    mkdirSync(join(old, 'objects', '00'), { recursive: true });
    mkdirSync(join(old, 'tmp'));
    writeFileSync(join(old, 'ARCHLAB-CDN-STORAGE'), '');
    writeFileSync(join(old, 'objects', '00', '1'), 'stale');
    writeFileSync(join(old, 'tmp', '2'), 'partial');
    writeFileSync(join(old, 'lock'), '2147483646');
    const s = await createStorage({ memoryBytes: 4096, disk: { dir: old, maxBytes: 1 << 20 } });
    try {
      assert.deepEqual(objectFiles(old), []);
      assert.deepEqual(readdirSync(join(old, 'tmp')), []);
      assert.equal(s.stats().objects, 0);
      // the same directory twice in one process
      await assert.rejects(createStorage({ memoryBytes: 4096, disk: { dir: old, maxBytes: 1 << 20 } }), (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'));
    } finally {
      await s.close();
    }
    // close empties a directory it did not create, and leaves it
    assert.deepEqual(readdirSync(old), []);

    // Not ours: refused, untouched.
    const foreign = join(dir, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'precious.txt'), 'keep me');
    await assert.rejects(createStorage({ memoryBytes: 4096, disk: { dir: foreign, maxBytes: 1 << 20 } }), (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'));
    assert.deepEqual(readdirSync(foreign), ['precious.txt']);

    // Locked by a live process (our parent).
    const busy = join(dir, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'ARCHLAB-CDN-STORAGE'), '');
    writeFileSync(join(busy, 'lock'), String(process.ppid));
    await assert.rejects(createStorage({ memoryBytes: 4096, disk: { dir: busy, maxBytes: 1 << 20 } }), (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'));
    assert.equal(existsSync(join(busy, 'lock')), true);
  } finally {
    cleanup();
  }
});

test('disk: an object being moved to disk can be updated, replaced or deleted meanwhile', async () => {
  await withDisk({ memoryBytes: 3000, memoryObjectMaxBytes: 1000 }, async (s, dir) => {
    // Memory holds two of these (about 1.2 kB each with heads): the first three are in flight to disk
    // now, still served from memory.
    for (const k of ['upd', 'rep', 'del', 'keep1', 'keep2']) await put(s, meta(k, { tags: ['old'] }), body(900, 1));
    assert.equal(s.stats().demotions, 3);
    assert.equal(s.stats().memoryObjects, 5);
    assert.equal(s.stats().diskObjects, 0);
    s.updateMeta('upd', { tags: ['new'], storedAt: 9 });
    assert.equal(s.get('upd')!.meta.storedAt, 9);
    await put(s, meta('rep'), body(50, 2));
    assert.equal(s.delete('del'), true);
    await s.idle();
    const upd = s.get('upd')!;
    assert.equal(upd.meta.storedAt, 9);
    assert.deepEqual(s.find({ kind: 'tag', tag: 'new' }), ['upd']);
    assert.ok((await readBody(upd)).equals(body(900, 1)));
    assert.ok(s.get('rep')!.body!.equals(body(50, 2)));
    assert.equal(s.get('del'), undefined);
    assert.equal(objectFiles(dir).length, s.stats().diskObjects);
    assert.equal(s.stats().objects, 4);
    assert.equal(s.stats().diskObjects, 1);
  });
});

test('disk: a failed move to disk drops the object and pauses the disk tier', async () => {
  await withDisk({ memoryBytes: 3000, memoryObjectMaxBytes: 1000 }, async (s, dir) => {
    rmSync(join(dir, 'tmp'), { recursive: true });
    for (let i = 0; i < 4; i++) await put(s, meta(`m${i}`, { tags: ['t'] }), body(900, i));
    await s.idle();
    const st = s.stats();
    assert.ok(st.demotions >= 1);
    assert.equal(st.diskWriteErrors, st.demotions);
    assert.equal(st.evictions, st.demotions);
    assert.equal(st.objects, st.memoryObjects);
    assert.equal(s.find({ kind: 'tag', tag: 't' }).length, st.objects);
    assert.equal(s['disk']!.available(), false);
  });
});

test('disk: a head update too large for memory drops the object rather than keep it wrong', async () => {
  await withDisk({ memoryBytes: 3000, memoryObjectMaxBytes: 1000 }, async (s) => {
    await put(s, meta('k', { tags: ['t'] }), body(900));
    s.updateMeta('k', { headers: { huge: 'x'.repeat(3000) } });
    assert.equal(s.get('k'), undefined);
    assert.deepEqual(s.find({ kind: 'tag', tag: 't' }), []);
    assert.equal(s.stats().objects, 0);
  });
});

test('disk: evictions past disk.writeQueueBytes are dropped instead of queued for disk', async () => {
  await withDisk({ memoryBytes: 3000, memoryObjectMaxBytes: 1000, disk: { dir: '', maxBytes: 1 << 20, writeQueueBytes: 1000 } }, async (s) => {
    await put(s, meta('a'), body(900));
    await put(s, meta('b'), body(900));
    // c evicts a, queued for disk (900 <= 1000); d evicts b while a is still being written (no I/O
    // has run in between): 900 + 900 > 1000, so b is dropped
    await put(s, meta('c'), body(1000));
    await put(s, meta('d'), body(1000));
    const st = s.stats();
    assert.equal(st.demotions, 1);
    assert.equal(st.evictions, 1);
    assert.ok(st.memoryBytes <= 3000 + 1000);
    await s.idle();
    assert.ok(s.get('a')!.open);
    assert.equal(s.get('b'), undefined);
  });
});

test('disk: bodyStreamReady resolves once a body stream passed its checks, rejects when its file is bad', async () => {
  await withDisk({}, async (s) => {
    const data = body(20_000, 3);
    await put(s, meta('good'), data);
    await put(s, meta('bad'), data);
    const good = s.get('good')!.open!({ start: 5, end: 9 });
    await bodyStreamReady(good);
    await bodyStreamReady(good); // already open: at once
    assert.ok((await readBody({ meta: s.get('good')!.meta, open: () => good })).equals(data.subarray(5, 10)));
    truncateSync(pathOf(s.get('bad')!), 10);
    const bad = s.get('bad')!.open!();
    await assert.rejects(bodyStreamReady(bad), (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'));
    await assert.rejects(bodyStreamReady(bad), (err) => isCdnError(err, 'ARCHLAB_CDN_STORAGE'));
    assert.equal(s.get('bad'), undefined);
    // memory bodies and other streams: nothing to wait for
    await bodyStreamReady(Readable.from([Buffer.from('x')]));
  });
});
