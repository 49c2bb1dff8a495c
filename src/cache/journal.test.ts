import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { isArchlabError } from '../core/errors.js';
import { Journal, type JournalOptions, type JournalWrite } from './journal.js';
import type { Codec, SourceWrite } from './types.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a journal that the test closes on the way out, even when it fails. */
async function open<V>(t: TestContext, opts: JournalOptions) {
  const r = await Journal.open<V>(opts);
  t.after(() => r.journal.close());
  return r;
}

async function put<V>(j: Journal<V>, seq: number, key: string, value: V): Promise<void> {
  await j.append(j.encode({ op: 'put', key, value }), seq);
}

async function del<V>(j: Journal<V>, seq: number, key: string): Promise<void> {
  await j.append(j.encode({ op: 'delete', key }), seq);
}

/** The journal at `path` as a crash would leave it: copied bytes, opened under a new name. */
async function reopenCopy<V>(t: TestContext, path: string, bytes: Buffer, opts: Partial<JournalOptions> = {}) {
  writeFileSync(path, bytes);
  return open<V>(t, { path, fsync: 'always', ...opts });
}

test('appended writes come back at open, in seq order, last write per key, Buffers and Dates intact', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'wb.journal');
  const { journal, replay } = await Journal.open<unknown>({ path, fsync: 'always' });
  assert.deepEqual(replay, { writes: [], lastSeq: 0, checkpointSeq: 0, truncatedBytes: 0 });
  await put(journal, 1, 'a', { n: 1 });
  await put(journal, 2, 'b', { bin: Buffer.from([0, 1, 255]), at: new Date(86_400_000) });
  await put(journal, 3, 'a', { n: 3 });
  await del(journal, 4, 'c');
  await put(journal, 5, 'ключ', 'unicode key');
  await journal.close();
  assert.equal(existsSync(`${path}.lock`), false, 'close releases the lock');

  const again = await open<unknown>(t, { path, fsync: 'always' });
  assert.deepEqual(again.replay.writes, [
    { seq: 2, op: 'put', key: 'b', value: { bin: Buffer.from([0, 1, 255]), at: new Date(86_400_000) } },
    { seq: 3, op: 'put', key: 'a', value: { n: 3 } },
    { seq: 4, op: 'delete', key: 'c' },
    { seq: 5, op: 'put', key: 'ключ', value: 'unicode key' },
  ]);
  assert.equal(again.replay.lastSeq, 5);
  await assert.rejects(put(again.journal, 5, 'x', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), 'seqs must keep increasing');
  await put(again.journal, 6, 'x', 1);
});

test('a checkpoint hides what it covers; a key written after it keeps only its last write', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'j');
  const { journal } = await open<number>(t, { path, fsync: 'always' });
  for (let seq = 1; seq <= 6; seq++) await put(journal, seq, `k${seq % 4}`, seq);
  // k1@1, k2@2, k3@3, k0@4, k1@5, k2@6; flushed through 4.
  await journal.checkpoint(4);
  await journal.checkpoint(2); // an older checkpoint changes nothing
  await put(journal, 7, 'k3', 7);
  const copy = await reopenCopy<number>(t, join(dir, 'copy'), readFileSync(path));
  assert.deepEqual(
    copy.replay.writes.map((w: JournalWrite<number>) => [w.seq, w.key]),
    [
      [5, 'k1'],
      [6, 'k2'],
      [7, 'k3'],
    ],
  );
  assert.equal(copy.replay.checkpointSeq, 4);
  assert.equal(copy.replay.lastSeq, 7);
});

test('a torn tail (the last record cut at every byte offset) is truncated; everything before it survives', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'full');
  const { journal } = await Journal.open<unknown>({ path, fsync: 'always' });
  await put(journal, 1, 'a', 'first');
  await put(journal, 2, 'b', { second: [1, 2, 3] });
  const lastStart = statSync(path).size;
  await put(journal, 3, 'c', 'the record that will be torn');
  await journal.close();
  const bytes = readFileSync(path);
  assert.ok(bytes.length - lastStart > 20);
  for (let cut = lastStart; cut < bytes.length; cut++) {
    const p = join(dir, `torn-${cut}`);
    writeFileSync(p, bytes.subarray(0, cut));
    const { journal: j, replay } = await Journal.open<unknown>({ path: p, fsync: 'always' });
    try {
      assert.deepEqual(
        replay.writes.map((w) => w.key),
        ['a', 'b'],
        `cut at ${cut}`,
      );
      assert.equal(replay.truncatedBytes, cut - lastStart);
      assert.equal(statSync(p).size, lastStart, 'the file is cut back to the last whole record');
      // The journal goes on from there.
      await put(j, 4, 'd', 'after');
    } finally {
      await j.close();
    }
    const { journal: j2, replay: r2 } = await Journal.open<unknown>({ path: p, fsync: 'always' });
    await j2.close();
    assert.deepEqual(r2.writes.map((w) => w.key), ['a', 'b', 'd']);
    assert.equal(r2.truncatedBytes, 0);
  }
});

test('zeros after the last record (a file extended but never written) are a torn tail', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'z');
  const { journal } = await Journal.open<number>({ path, fsync: 'always' });
  await put(journal, 1, 'a', 1);
  await journal.close();
  const size = statSync(path).size;
  appendFileSync(path, Buffer.alloc(4096));
  const { replay } = await open<number>(t, { path, fsync: 'always' });
  assert.deepEqual(replay.writes, [{ seq: 1, op: 'put', key: 'a', value: 1 }]);
  assert.equal(replay.truncatedBytes, 4096);
  assert.equal(statSync(path).size, size);
});

test('a CRC flip in the last record is a torn tail; in a middle record it fails with ARCHLAB_CACHE_JOURNAL and the offset', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'crc');
  const { journal } = await Journal.open<string>({ path, fsync: 'always' });
  const offsets: number[] = [];
  for (let seq = 1; seq <= 4; seq++) {
    offsets.push(statSync(path).size);
    await put(journal, seq, `k${seq}`, `value ${seq}`);
  }
  await journal.close();
  const bytes = readFileSync(path);

  // Each byte of the last record's payload, flipped: dropped as torn.
  for (let i = offsets[3]! + 8; i < bytes.length; i++) {
    const bad = Buffer.from(bytes);
    bad[i]! ^= 0x01;
    const p = join(dir, `tail-${i}`);
    writeFileSync(p, bad);
    const { journal: j, replay } = await Journal.open<string>({ path: p, fsync: 'always' });
    await j.close();
    assert.deepEqual(replay.writes.map((w) => w.key), ['k1', 'k2', 'k3'], `flip at ${i}`);
  }

  // A flipped payload byte, CRC byte or length byte of record 2 (of 4): valid records follow, so it is corruption.
  for (const at of [offsets[1]! + 12, offsets[1]! + 5, offsets[1]!]) {
    const bad = Buffer.from(bytes);
    bad[at]! ^= 0x40;
    const p = join(dir, `mid-${at}`);
    writeFileSync(p, bad);
    await assert.rejects(Journal.open<string>({ path: p, fsync: 'always' }), (err: unknown) => {
      assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_JOURNAL'), String(err));
      assert.equal(err.details?.offset, offsets[1]);
      assert.match(err.message, /corrupt at offset/);
      return true;
    });
    assert.equal(readFileSync(p).length, bytes.length, 'a corrupt journal is left as it is');
    assert.equal(existsSync(`${p}.lock`), false, 'and its lock released');
  }
});

test("fsync 'always' group-commits: many concurrent appends share few fdatasyncs, each resolved only after one", async (t) => {
  const dir = tempDir(t);
  const { journal } = await open<number>(t, { path: join(dir, 'g'), fsync: 'always' });
  const n = 200;
  await Promise.all(Array.from({ length: n }, (_, i) => put(journal, i + 1, `k${i}`, i)));
  const s = journal.stats();
  assert.equal(s.appends, n);
  assert.ok(s.syncs >= 1 && s.syncs <= n / 10, `syncs ${s.syncs} for ${n} concurrent appends`);
  // Sequential appends each wait for their own sync.
  for (let i = 0; i < 5; i++) await put(journal, n + 1 + i, 'seq', i);
  assert.equal(journal.stats().syncs, s.syncs + 5);
});

test('fsync { everyMs } resolves appends after write() and syncs on the clock', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock(0);
  const path = join(dir, 'e');
  const { journal } = await open<number>(t, { path, fsync: { everyMs: 50 }, clock });
  await put(journal, 1, 'a', 1);
  await put(journal, 2, 'b', 2);
  assert.equal(journal.stats().syncs, 0, 'not synced yet');
  assert.equal(clock.pending(), 1, 'one timer for the pending sync');
  // The bytes are in the file (page cache) already: a reader sees them.
  const copy = await reopenCopy<number>(t, join(dir, 'copy'), readFileSync(path));
  assert.equal(copy.replay.writes.length, 2);
  clock.advance(50);
  for (let i = 0; i < 200 && journal.stats().syncs === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(journal.stats().syncs, 1);
  assert.equal(clock.pending(), 0, 'no timer while nothing is dirty');
});

test('compaction keeps the file under maxBytes and keeps every unflushed write', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c');
  const maxBytes = 16 * 1024;
  const { journal } = await open<string>(t, { path, fsync: 'always', maxBytes });
  const value = 'x'.repeat(200);
  let seq = 0;
  // 1000 writes (~230 KB) over 20 keys, flushed through all but the last 30 writes each round.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 50; i++) {
      seq++;
      await put(journal, seq, `k${i % 20}`, `${value}${seq}`);
      assert.ok(journal.bytes <= maxBytes, `bytes ${journal.bytes} at seq ${seq}`);
    }
    await journal.checkpoint(seq - 30);
  }
  assert.ok(journal.stats().compactions > 5, `compactions: ${journal.stats().compactions}`);
  const copy = await reopenCopy<string>(t, join(dir, 'copy'), readFileSync(path));
  // Writes with seq > 970: the last write of each of the 20 keys, all of them from the last 30.
  assert.deepEqual(
    copy.replay.writes.map((w) => w.seq),
    Array.from({ length: 20 }, (_, i) => seq - 19 + i),
  );
  assert.equal((copy.replay.writes.at(-1) as { value: string }).value, `${value}${seq}`);
  assert.equal(copy.replay.checkpointSeq, seq - 30);
  assert.equal(existsSync(`${path}.compact`), false);
});

test('when unflushed writes fill the journal, appends fail with ARCHLAB_CACHE_BACKPRESSURE until a checkpoint frees room', async (t) => {
  const dir = tempDir(t);
  const maxBytes = 4096;
  const { journal } = await open<string>(t, { path: join(dir, 'bp'), fsync: 'always', maxBytes });
  const rec = (key: string) => journal.encode({ op: 'put', key, value: 'y'.repeat(100) });
  let seq = 0;
  while (journal.hasRoom(rec('k').buf.length)) await journal.append(rec(`k${seq}`), ++seq);
  assert.ok(seq > 10 && journal.bytes <= maxBytes);
  assert.equal(journal.reserve(rec('k').buf.length), false);
  await assert.rejects(journal.append(rec('over'), seq + 1), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_BACKPRESSURE'));
    assert.equal(err.retryable, true);
    return true;
  });
  await journal.checkpoint(seq);
  assert.ok(journal.reserve(rec('k').buf.length), 'room after everything is flushed');
  await journal.append(rec('after'), seq + 2, true);
  assert.ok(journal.stats().compactions >= 1);
  assert.ok(journal.bytes < maxBytes / 2);
});

test('opening with a smaller maxBytes compacts the file at once', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'shrink');
  const { journal } = await Journal.open<string>({ path, fsync: 'always', maxBytes: 1 << 20 });
  for (let seq = 1; seq <= 100; seq++) await put(journal, seq, `k${seq}`, 'z'.repeat(100));
  await journal.checkpoint(98);
  await journal.close();
  assert.ok(statSync(path).size > 8192);
  const { journal: j, replay } = await open<string>(t, { path, fsync: 'always', maxBytes: 8192 });
  assert.deepEqual(replay.writes.map((w) => w.seq), [99, 100]);
  assert.ok(j.bytes <= 8192 && statSync(path).size === j.bytes);
});

test('one owner at a time: a second open in this process or a live process holding the lock fails; a dead owner is taken over', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'lock');
  const { journal } = await Journal.open<number>({ path, fsync: 'always' });
  await assert.rejects(Journal.open<number>({ path, fsync: 'always' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_JOURNAL') && /already open/.test(err.message));
  await journal.close();

  writeFileSync(`${path}.lock`, String(process.ppid));
  await assert.rejects(Journal.open<number>({ path, fsync: 'always' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_JOURNAL') && err.details?.pid === process.ppid);
  assert.equal(readFileSync(`${path}.lock`, 'utf8'), String(process.ppid), "another process's lock is left alone");

  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  writeFileSync(`${path}.lock`, dead);
  const { journal: j } = await open<number>(t, { path, fsync: 'always' });
  assert.equal(readFileSync(`${path}.lock`, 'utf8'), String(process.pid));
  await put(j, 1, 'a', 1);
});

test('bad writes are refused before they reach the file: codec failures name the key, oversized records are typed', async (t) => {
  const dir = tempDir(t);
  const { journal } = await open<unknown>(t, { path: join(dir, 'bad'), fsync: 'always', maxBytes: 4096 });
  assert.throws(() => journal.encode({ op: 'put', key: 'big-int', value: { n: 1n } }), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_CODEC'));
    assert.equal(err.details?.key, 'big-int');
    return true;
  });
  assert.throws(() => journal.encode({ op: 'put', key: 'huge', value: 'h'.repeat(2000) }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_VALUE_TOO_LARGE'));
  assert.throws(() => journal.encode({ op: 'delete', key: '' } as SourceWrite<unknown>), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_BAD_KEY'));
  assert.equal(journal.bytes, 0);
  await assert.rejects(Journal.open({ path: join(dir, 'x'), fsync: { everyMs: 0 } }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
  await assert.rejects(Journal.open({ path: join(dir, 'y'), fsync: 'always', maxBytes: 100 }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('a journal written with one codec and read with another fails with ARCHLAB_CACHE_JOURNAL, not a silent truncation', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'codec');
  const { journal } = await Journal.open<unknown>({ path, fsync: 'always' });
  await put(journal, 1, 'a', { ok: true });
  await journal.close();
  const strict: Codec = {
    name: 'strict',
    encode: (v) => String(v),
    decode: () => {
      throw new TypeError('not my format');
    },
  };
  await assert.rejects(Journal.open({ path, fsync: 'always', codec: strict }), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_JOURNAL') && err.details?.offset === 0);
  assert.ok(statSync(path).size > 0);
});

test('after close(), appends fail with ARCHLAB_CACHE_CLOSED', async (t) => {
  const dir = tempDir(t);
  const { journal } = await Journal.open<number>({ path: join(dir, 'closed'), fsync: { everyMs: 1000 } });
  await put(journal, 1, 'a', 1);
  await journal.close();
  await journal.close();
  await assert.rejects(put(journal, 2, 'b', 2), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
});
