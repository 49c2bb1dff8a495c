import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isQueueError } from '../../errors.js';
import { MAX_COMMIT_RECORD_BYTES, OffsetStore, type OffsetStoreOptions } from './store.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-offsets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a store that is closed when the test ends, even when it fails. */
async function open(t: TestContext, opts: OffsetStoreOptions): Promise<OffsetStore> {
  const store = await OffsetStore.open(opts);
  t.after(() => store.close());
  return store;
}

test('commits come back after close and open, the latest per partition, with metadata and commit time', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: true });
  await a.commit('g1', 1000, [
    { topic: 'orders', partition: 0, offset: 10, metadata: 'host=a ✓' },
    { topic: 'orders', partition: 1, offset: 20 },
  ]);
  await a.commit('g1', 2000, [{ topic: 'orders', partition: 0, offset: 15 }]);
  await a.commit('g2', 1500, [{ topic: 'audit', partition: 3, offset: 7 }]);
  assert.deepEqual(a.get('g1', 'orders', 0), { offset: 15, metadata: '' });
  assert.equal(a.stats().syncs, 3);
  await a.close();
  assert.equal(existsSync(join(dir, 'offsets.lock')), false, 'close releases the lock');

  const b = await open(t, { dir, fsync: true });
  assert.deepEqual(b.list('g1'), [
    { topic: 'orders', partition: 0, offset: 15, metadata: '' },
    { topic: 'orders', partition: 1, offset: 20, metadata: '' },
  ]);
  assert.deepEqual(b.get('g2', 'audit', 3), { offset: 7, metadata: '' });
  assert.equal(b.get('g2', 'audit', 0), undefined);
  assert.equal(b.lastCommitMs('g1'), 2000);
  assert.deepEqual(b.groups().sort(), ['g1', 'g2']);
  assert.equal(b.stats().truncatedBytes, 0);
});

test('metadata survives a reopen', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: false });
  await a.commit('g', 1, [{ topic: 't', partition: 0, offset: 1, metadata: 'ключ=значение' }]);
  await a.close();
  const b = await open(t, { dir, fsync: false });
  assert.deepEqual(b.get('g', 't', 0), { offset: 1, metadata: 'ключ=значение' });
});

test('a torn tail is cut off at open; the commits before it stay', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: true });
  await a.commit('g', 1, [{ topic: 't', partition: 0, offset: 5 }]);
  const goodBytes = a.stats().bytes;
  await a.commit('g', 2, [{ topic: 't', partition: 0, offset: 6 }]);
  await a.close();
  const path = join(dir, 'offsets.log');
  const full = readFileSync(path);
  for (const cut of [goodBytes + 3, full.length - 1]) {
    writeFileSync(path, full.subarray(0, cut));
    const b = await OffsetStore.open({ dir, fsync: true });
    try {
      assert.deepEqual(b.get('g', 't', 0), { offset: 5, metadata: '' }, `cut at ${cut}`);
      assert.equal(b.stats().truncatedBytes, cut - goodBytes);
      assert.equal(statSync(path).size, goodBytes, 'the torn bytes are gone from the file');
      await b.commit('g', 3, [{ topic: 't', partition: 0, offset: 8 }]);
    } finally {
      await b.close();
    }
    const c = await OffsetStore.open({ dir, fsync: true });
    assert.deepEqual(c.get('g', 't', 0), { offset: 8, metadata: '' }, 'appends after a truncation are read back');
    await c.close();
  }
});

test('damage followed by a valid record is corruption: open refuses rather than drop commits', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: true });
  await a.commit('g', 1, [{ topic: 't', partition: 0, offset: 5 }]);
  await a.commit('g', 2, [{ topic: 't', partition: 1, offset: 6 }]);
  await a.close();
  const path = join(dir, 'offsets.log');
  const bytes = readFileSync(path);
  bytes[12] = bytes[12]! ^ 0xff; // inside the first record's payload
  writeFileSync(path, bytes);
  await assert.rejects(OffsetStore.open({ dir, fsync: true }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_CORRUPT'));
  // The failed open released the lock.
  assert.equal(existsSync(join(dir, 'offsets.lock')), false);
});

test('compaction keeps the file bounded and the latest offsets intact across a reopen', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: false, compactMinBytes: 4096 });
  for (let i = 0; i < 600; i++) {
    await a.commit(`g${i % 3}`, i, [
      { topic: 'orders', partition: i % 4, offset: i },
      { topic: 'audit', partition: 0, offset: i * 2, metadata: `m${i}` },
    ]);
    assert.ok(a.stats().bytes <= 4096 + 200, `file stays near compactMinBytes (at ${a.stats().bytes} after ${i + 1})`);
  }
  await a.deleteGroup('g2');
  assert.ok(a.stats().compactions > 5, `compacted ${a.stats().compactions} times`);
  const expected = { g0: a.list('g0'), g1: a.list('g1') };
  assert.equal(expected.g0.length, 5);
  await a.close();
  assert.equal(existsSync(join(dir, 'offsets.log.compact')), false);
  const b = await open(t, { dir, fsync: false, compactMinBytes: 4096 });
  assert.deepEqual({ g0: b.list('g0'), g1: b.list('g1') }, expected);
  assert.equal(b.hasGroup('g2'), false);
  assert.deepEqual(b.get('g1', 'audit', 0), { offset: 1196, metadata: 'm598' }, 'i = 598 was g1\'s last commit');
});

test('deleting a group or a topic is durable; a group with nothing left is gone', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: true });
  await a.commit('g1', 1, [
    { topic: 'x', partition: 0, offset: 1 },
    { topic: 'y', partition: 0, offset: 2 },
  ]);
  await a.commit('g2', 1, [{ topic: 'x', partition: 1, offset: 3 }]);
  await a.commit('g3', 1, [{ topic: 'z', partition: 0, offset: 4 }]);
  await a.deleteTopic('x');
  await a.deleteGroup('g3');
  await a.deleteGroup('nobody');
  assert.deepEqual(a.groups(), ['g1']);
  await a.close();
  const b = await open(t, { dir, fsync: true });
  assert.deepEqual(b.groups(), ['g1']);
  assert.deepEqual(b.list('g1'), [{ topic: 'y', partition: 0, offset: 2, metadata: '' }]);
});

test('one owner at a time: a second open in this process fails, a lock left by a dead process is taken over', async (t) => {
  const dir = tempDir(t);
  const a = await open(t, { dir, fsync: true });
  await assert.rejects(OffsetStore.open({ dir, fsync: true }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_STORAGE'));
  await a.close();
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  assert.ok(dead !== undefined);
  writeFileSync(join(dir, 'offsets.lock'), String(dead));
  const b = await open(t, { dir, fsync: true });
  assert.equal(readFileSync(join(dir, 'offsets.lock'), 'utf8'), String(process.pid));
  await b.close();
});

test('limits: a commit record over the maximum is refused; closed stores refuse commits; bad options are refused', async (t) => {
  const dir = tempDir(t);
  const a = await OffsetStore.open({ dir, fsync: false });
  const huge = Array.from({ length: 5000 }, (_, p) => ({ topic: 't', partition: p, offset: 1, metadata: 'x'.repeat(4000) }));
  await assert.rejects(a.commit('g', 1, huge), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE') && (err as { details?: { maxBytes?: number } }).details?.maxBytes === MAX_COMMIT_RECORD_BYTES);
  assert.equal(a.hasGroup('g'), false);
  await a.close();
  await assert.rejects(a.commit('g', 1, [{ topic: 't', partition: 0, offset: 1 }]), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_CLOSED'));
  await assert.rejects(OffsetStore.open({ dir, fsync: false, compactMinBytes: 10 }), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('concurrent commits share fsyncs (group commit) and all land', async (t) => {
  const dir = tempDir(t);
  const a = await open(t, { dir, fsync: true });
  await Promise.all(Array.from({ length: 50 }, (_, i) => a.commit('g', i, [{ topic: 't', partition: i, offset: i + 1 }])));
  assert.equal(a.list('g').length, 50);
  assert.ok(a.stats().syncs < 50, `${a.stats().syncs} fsyncs for 50 commits`);
});
