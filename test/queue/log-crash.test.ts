/**
 * The log under kill -9: a child process appends with acks=fsync from several writers (group commit,
 * segment rolls, gzip batches) and prints every acknowledged batch; the parent kill -9s it mid-storm,
 * reopens the data dir (recovery: torn tail, index rebuild, producer state) and checks that every
 * acknowledged record is there, at its offset, with its bytes.
 *
 * What kill -9 can and cannot lose: the process dies, the kernel does not, so bytes written with
 * write() reach the disk from the page cache even without fsync; a power loss is what separates
 * acks=leader from acks=fsync, and no test here simulates one. What this test proves is that recovery
 * never drops or garbles an acknowledged batch: a write cut short by the kill is the only thing cut.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Log } from '../../src/queue/log/log.js';
import { rec } from '../../src/queue/log/test-helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/log-crash-child.ts', import.meta.url));
const VALUE_BYTES = 120;

interface Ack {
  partition: number;
  baseOffset: number;
  firstId: number;
  count: number;
}

test('kill -9 during an acks=fsync storm: every acknowledged record is served after reopen', { timeout: 30_000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'archlab-log-crash-'));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify({ dataDir, writers: 8, valueBytes: VALUE_BYTES })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const opened: { log?: Log } = {};
  // one hook, in order: the child dies, the log closes, then its directory goes
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await opened.log?.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const acks: Ack[] = [];
  let partial = '';
  let ready = false;
  const MIN_ACKS = 600;
  await new Promise<void>((resolve, reject) => {
    // bounded: kill after MIN_ACKS acknowledged batches or 6 s of storm, whichever comes first
    let stormTimer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => reject(new RangeError(`the child never got ready: ${stderr}`)), 15_000);
    const stop = (): void => {
      clearTimeout(deadline);
      clearTimeout(stormTimer);
      child.kill('SIGKILL');
      resolve();
    };
    void exited.then(({ code, signal }) => {
      if (signal !== 'SIGKILL') reject(new RangeError(`the child exited by itself (code ${code}, signal ${signal}): ${stderr}`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') {
          ready = true;
          stormTimer = setTimeout(stop, 6000);
          continue;
        }
        const [, p, base, first, count] = line.split(' ');
        acks.push({ partition: Number(p), baseOffset: Number(base), firstId: Number(first), count: Number(count) });
        if (acks.length === MIN_ACKS) stop();
      }
    });
  });
  assert.ok(ready);
  const { signal } = await exited;
  assert.equal(signal, 'SIGKILL');
  assert.ok(acks.length >= 50, `the child acknowledged only ${acks.length} batches before the kill: ${stderr}`);

  const log = await Log.open({ dataDir, cleanerIntervalMs: 0 });
  opened.log = log;
  const info = await log.describeTopic('storm');
  assert.ok(info.partitions.some((p) => p.segments > 1), 'the storm rolled segments');
  let checked = 0;
  for (const a of acks) {
    const f = await log.fetch({ topic: 'storm', partition: a.partition, offset: a.baseOffset, maxBytes: 1 });
    const got = f.records.slice(0, a.count);
    assert.equal(got.length, a.count, `batch at ${a.partition}/${a.baseOffset} has ${got.length} of its ${a.count} records`);
    got.forEach((r, i) => {
      const want = rec(a.firstId + i, VALUE_BYTES);
      assert.equal(r.offset, a.baseOffset + i);
      assert.deepEqual(r.key, want.key, `key at ${a.partition}/${r.offset}`);
      assert.deepEqual(r.value, want.value, `value at ${a.partition}/${r.offset}`);
      checked++;
    });
  }
  // offsets are dense: the log holds no hole below its end, and appends go on after it
  for (const p of info.partitions) {
    const maxAcked = Math.max(-1, ...acks.filter((a) => a.partition === p.partition).map((a) => a.baseOffset + a.count - 1));
    assert.ok(p.highWatermark > maxAcked, `partition ${p.partition}: end ${p.highWatermark} past the last ack ${maxAcked}`);
    const r = await log.append({ topic: 'storm', partition: p.partition, acks: 'fsync', records: [rec(0)] });
    assert.equal(r.baseOffset, p.highWatermark);
  }
  await log.close();
  t.diagnostic(`${acks.length} batches (${checked} records) acknowledged before kill -9, all served after reopen`);
});
