import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, promises as fsp, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ManualClock } from '../../core/clock.js';
import { isQueueError } from '../errors.js';
import { applyFrame, emptyReplayState, FRAME_HEADER_BYTES, publishRecordBytes, RecordWriter } from './codec.js';
import { BrokerJournal, DISK_FULL_RETRY_MS, JOURNAL_FILE, LOCK_FILE, type JournalFile, type JournalIo, type JournalOptions } from './journal.js';
import { DEFAULT_QUEUE_CONFIG } from './options.js';
import type { StoredMessage } from './queue-core.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-broker-journal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function options(dataDir: string, o: Partial<JournalOptions> = {}): JournalOptions {
  return { dataDir, fsync: 'always', fsyncIntervalMs: 200, maxDiskBytes: Infinity, compactMinBytes: 1 << 30, clock: new ManualClock(), ...o };
}

async function open(t: TestContext, o: JournalOptions) {
  const r = await BrokerJournal.open(o);
  t.after(() => r.journal.close());
  return r;
}

function message(seq: number, body = `body-${seq}`, headers: Record<string, string> = {}): StoredMessage {
  return { seq, messageId: `id-${seq}`, body: Buffer.from(body), headers, priority: seq % 3, publishedAt: 1000 + seq, enqueuedAt: 2000 + seq, ttlMs: seq % 2 ? 500 : -1, delayMs: 0 };
}

function publish(j: BrokerJournal, m: StoredMessage, qids: number[]): void {
  j.writer.publish(m, qids, publishRecordBytes(m.messageId, m.body, m.headers, qids.length));
}

/** Lets the event loop turn until `cond` holds (bounded). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(cond(), `timed out waiting for ${what}`);
}

class FakeErrno extends Error {
  constructor(readonly code: string) {
    super(`${code}: injected`);
  }
}

/** File operations whose writes fail with ENOSPC (after writing a few bytes) while `full` is set. */
function fullDiskIo(): { io: JournalIo; state: { full: boolean; failedWrites: number } } {
  const state = { full: false, failedWrites: 0 };
  const io: JournalIo = {
    async open(path, flags, mode) {
      const fh = await fsp.open(path, flags, mode);
      const file: JournalFile = {
        async writev(buffers, position) {
          if (state.full) {
            state.failedWrites++;
            // A torn write: some bytes land before the error.
            await fh.write(buffers[0]!.subarray(0, 5), 0, 5, position);
            throw new FakeErrno('ENOSPC');
          }
          return fh.writev(buffers, position);
        },
        read: (b, o, l, p) => fh.read(b, o, l, p),
        datasync: () => fh.datasync(),
        truncate: (n) => fh.truncate(n),
        stat: () => fh.stat(),
        close: () => fh.close(),
      };
      return file;
    },
  };
  return { io, state };
}

test('codec: every record type round-trips through a frame into the replay state', () => {
  const w = new RecordWriter(256);
  w.exchangeDeclare('orders', { type: 'topic', durable: true });
  w.exchangeDeclare('gone', { type: 'fanout', durable: true });
  w.queueDeclare(1, 'q1', { ...DEFAULT_QUEUE_CONFIG, maxPriority: 3 });
  w.queueDeclare(2, 'q2', DEFAULT_QUEUE_CONFIG);
  w.queueDeclare(3, 'q3', DEFAULT_QUEUE_CONFIG);
  w.binding(true, { queue: 'q1', exchange: 'orders', routingKey: 'a.#', args: {} });
  w.binding(true, { queue: 'q2', exchange: 'gone', routingKey: '', args: {} });
  w.binding(true, { queue: 'q2', exchange: 'orders', routingKey: 'b', args: { k: 'v' } });
  w.binding(false, { queue: 'q2', exchange: 'orders', routingKey: 'b', args: { k: 'v' } });
  w.exchangeDelete('gone');
  const m1 = message(1, 'ünïcödé body', { 'x-a': 'b', ключ: 'значение' });
  const m2 = message(2, 'x'.repeat(1000));
  const m3 = message(3, '');
  w.publish(m1, [1, 2], publishRecordBytes(m1.messageId, m1.body, m1.headers, 2));
  w.publish(m2, [2], publishRecordBytes(m2.messageId, m2.body, m2.headers, 1));
  w.publish(m3, [3], publishRecordBytes(m3.messageId, m3.body, m3.headers, 1));
  w.deliver(1, 1, 3);
  w.settle(2, 1);
  w.settle(2, 2);
  w.queueDelete(3);
  w.highwater(10, 7);
  const frames = w.take();
  assert.ok(frames.length > 1, 'a small chunk size spreads the records over several frames');
  assert.equal(w.empty, true);
  const s = emptyReplayState();
  for (const f of frames) applyFrame(s, f.subarray(FRAME_HEADER_BYTES), 0);
  assert.deepEqual([...s.exchanges], [['orders', { type: 'topic', durable: true }]]);
  assert.deepEqual([...s.queues.keys()], [1, 2]);
  assert.equal(s.queues.get(1)!.config.maxPriority, 3);
  assert.deepEqual([...s.bindings.values()], [{ queue: 'q1', exchange: 'orders', routingKey: 'a.#', args: {} }]);
  assert.deepEqual([...s.messages.keys()], [1, 3], 'm2 settled everywhere; m3 stays until the queue filter at rebuild');
  const r1 = s.messages.get(1)!;
  assert.deepEqual([...r1.queues], [[1, 3]]);
  assert.equal(r1.body.toString(), 'ünïcödé body');
  assert.deepEqual(r1.headers, { 'x-a': 'b', ключ: 'значение' });
  assert.deepEqual([r1.priority, r1.publishedAt, r1.enqueuedAt, r1.ttlMs, r1.delayMs, r1.messageId], [1, 1001, 2001, 500, 0, 'id-1']);
  assert.equal(s.messages.get(3)!.body.length, 0);
  assert.equal(s.nextSeq, 10);
  assert.equal(s.nextQid, 7);
});

test('appended records come back at open; a torn tail is cut off and logged, the rest kept', async (t) => {
  const dir = tempDir(t);
  const first = await BrokerJournal.open(options(dir));
  first.journal.writer.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
  for (let i = 1; i <= 3; i++) {
    publish(first.journal, message(i), [1]);
    await first.journal.durable();
  }
  assert.equal(first.journal.stats().syncs, 3, 'fsync always: one fdatasync per batch');
  await first.journal.close();
  assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'close releases the lock');
  const path = join(dir, JOURNAL_FILE);
  const whole = statSync(path).size;
  // A crash in the middle of the next write: half a frame.
  const w = new RecordWriter();
  w.settle(1, 1);
  const frame = w.take()[0]!;
  appendFileSync(path, frame.subarray(0, frame.length - 3));
  const again = await open(t, options(dir));
  assert.deepEqual([...again.state.messages.keys()], [1, 2, 3], 'the torn settle never happened');
  assert.equal(again.journal.stats().truncatedBytes, frame.length - 3);
  assert.equal(statSync(path).size, whole);
});

test('damage followed by valid data is corruption: open refuses with the position', async (t) => {
  const dir = tempDir(t);
  const { journal } = await BrokerJournal.open(options(dir));
  journal.writer.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
  await journal.durable();
  publish(journal, message(1), [1]);
  await journal.durable();
  await journal.close();
  const path = join(dir, JOURNAL_FILE);
  const bytes = readFileSync(path);
  bytes[FRAME_HEADER_BYTES + 3] = bytes[FRAME_HEADER_BYTES + 3]! ^ 0xff; // inside the first frame's payload
  writeFileSync(path, bytes);
  await assert.rejects(BrokerJournal.open(options(dir)), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_CORRUPT') && (err.details as { position: number }).position === 0);
  assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'a failed open leaves no lock behind');
  const fresh = await open(t, options(tempDir(t)));
  assert.equal(fresh.state.messages.size, 0);
});

test('one journal per data dir: a live holder blocks, a dead one (kill -9) is taken over', async (t) => {
  const dir = tempDir(t);
  const { journal } = await open(t, options(dir));
  await assert.rejects(BrokerJournal.open(options(dir)), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_STORAGE'));
  await journal.close();
  writeFileSync(join(dir, LOCK_FILE), '999999999'); // no such process
  const again = await open(t, options(dir));
  assert.equal(again.state.records, 0);
});

test('ENOSPC: the batch is refused with DISK_FULL, cut back, new publishes refused; the records are retried and kept', async (t) => {
  const dir = tempDir(t);
  const clock = new ManualClock();
  const { io, state } = fullDiskIo();
  const { journal } = await open(t, options(dir, { io, clock }));
  journal.writer.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
  publish(journal, message(1), [1]);
  await journal.durable();
  const sizeBefore = statSync(join(dir, JOURNAL_FILE)).size;
  state.full = true;
  publish(journal, message(2), [1]);
  await assert.rejects(journal.durable(), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DISK_FULL') && err.retryable);
  assert.equal(statSync(join(dir, JOURNAL_FILE)).size, sizeBefore, 'the torn bytes were cut off');
  assert.throws(() => journal.checkRoom(100), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DISK_FULL'));
  assert.equal(journal.stats().diskFull, true);
  // Still full at the first retry.
  await until(() => clock.pending() === 1, 'the retry timer');
  clock.advance(DISK_FULL_RETRY_MS);
  await until(() => state.failedWrites === 2 && clock.pending() === 1, 'the failed retry');
  assert.throws(() => journal.checkRoom(100), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_DISK_FULL'), 'still refused while the retry fails');
  state.full = false;
  clock.advance(DISK_FULL_RETRY_MS);
  await until(() => !journal.stats().diskFull, 'a successful retry');
  assert.equal(state.failedWrites, 2);
  journal.checkRoom(100);
  publish(journal, message(3), [1]);
  await journal.durable();
  await journal.close();
  const again = await open(t, options(dir));
  assert.deepEqual([...again.state.messages.keys()], [1, 2, 3], 'the refused record was kept and written later: disk and memory agree');
});

test('another write failure breaks the journal: STORAGE from then on', async (t) => {
  const dir = tempDir(t);
  const io: JournalIo = {
    async open(path, flags, mode) {
      const fh = await fsp.open(path, flags, mode);
      return {
        writev: async () => {
          throw new FakeErrno('EIO');
        },
        read: (b, o, l, p) => fh.read(b, o, l, p),
        datasync: () => fh.datasync(),
        truncate: (n) => fh.truncate(n),
        stat: () => fh.stat(),
        close: () => fh.close(),
      };
    },
  };
  const { journal } = await open(t, options(dir, { io }));
  journal.writer.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
  await assert.rejects(journal.durable(), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_STORAGE'));
  assert.throws(() => journal.checkRoom(1), (err: unknown) => isQueueError(err, 'ARCHLAB_QUEUE_STORAGE'));
});

test('maxDiskBytes: checkRoom refuses past the limit and asks for a compaction, which makes room', async (t) => {
  const dir = tempDir(t);
  let live = new Map<number, StoredMessage>();
  const { journal } = await open(t, options(dir, { maxDiskBytes: 8192, compactMinBytes: 1 << 20 }));
  journal.setSource({
    liveBytes: () => [...live.values()].reduce((s, m) => s + m.body.length + 64, 0),
    snapshot: (w) => {
      w.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
      for (const m of live.values()) publish2(w, m);
    },
  });
  const publish2 = (w: RecordWriter, m: StoredMessage): void => w.publish(m, [1], publishRecordBytes(m.messageId, m.body, m.headers, 1));
  journal.writer.queueDeclare(1, 'q', DEFAULT_QUEUE_CONFIG);
  let seq = 0;
  let refused = 0;
  for (let round = 0; round < 200 && refused === 0; round++) {
    const m = message(++seq, 'x'.repeat(200));
    try {
      journal.checkRoom(publishRecordBytes(m.messageId, m.body, m.headers, 1));
    } catch (err) {
      assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_DISK_FULL'));
      refused++;
      break;
    }
    publish(journal, m, [1]);
    await journal.durable();
    // Consumed at once: live stays tiny while the file grows.
    journal.writer.settle(1, m.seq);
    live = new Map();
  }
  assert.equal(refused, 1, 'the limit was reached');
  for (let i = 0; i < 50 && journal.stats().compactions === 0; i++) await new Promise((r) => setTimeout(r, 2));
  assert.equal(journal.stats().compactions, 1);
  assert.ok(journal.stats().fileBytes < 1024, `compacted to ${journal.stats().fileBytes} bytes`);
  journal.checkRoom(300);
});
