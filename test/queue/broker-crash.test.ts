/**
 * kill -9 of the broker during a publish storm. A child process opens a durable broker with fsync
 * 'always' and publishes through a fanout exchange into two durable queues: `keep` (no consumer) and
 * `work` (a slow consumer that acks everything 5 ms after delivery). It prints `P <id>` when a publish resolves and `C <id>`
 * after it acked a delivery from `work`. The parent kills it with SIGKILL mid-storm, reopens the data
 * dir and checks:
 * - `keep` holds every acknowledged publish exactly once (nothing acked lost, nothing stored twice);
 * - `work` holds every acknowledged publish the consumer had not acked; one it had acked may come
 *   back (the ack record is not fsynced: at-least-once), and those duplicates are counted and reported.
 *
 * The same file is the child: run with ARCHLAB_BROKER_CRASH_CHILD=<dataDir>.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Broker } from '../../src/queue/broker/index.js';
import type { Delivery } from '../../src/queue/types.js';

const CHILD_ENV = 'ARCHLAB_BROKER_CRASH_CHILD';
/** Publishes in flight in the child. */
const WINDOW = 64;
/** The parent kills the child once this many publishes were acknowledged. */
const KILL_AFTER_ACKED = 3000;

async function child(dataDir: string): Promise<void> {
  const broker = await Broker.open({ dataDir, fsync: 'always' });
  await broker.declareExchange('storm', { type: 'fanout' });
  await broker.declareQueue('keep', { maxLength: 10_000_000 });
  await broker.declareQueue('work', { maxLength: 10_000_000 });
  await broker.bind('keep', 'storm', '');
  await broker.bind('work', 'storm', '');
  // Synchronous writes to the pipe: a line printed is a line the parent will read, kill or not.
  const say = (line: string): void => {
    writeSync(1, line);
  };
  await broker.consume('work', {
    prefetch: 32,
    onDelivery: (d) => {
      // A slow consumer: deliveries are in flight (unacked) when the kill comes, and a backlog builds.
      setTimeout(() => void broker.ack(d.deliveryTag).then(() => say(`C ${d.messageId}\n`)), 5);
    },
  });
  say('READY\n');
  let n = 0;
  const publishOne = (): void => {
    const id = `m${n++}`;
    broker.publish('storm', '', { body: Buffer.from(`payload of ${id}`), messageId: id }).then(
      () => {
        say(`P ${id}\n`);
        publishOne();
      },
      (err: unknown) => {
        say(`E ${id} ${(err as Error).message}\n`);
      },
    );
  };
  for (let i = 0; i < WINDOW; i++) publishOne();
}

async function drain(broker: Broker, queue: string): Promise<Delivery[]> {
  const out: Delivery[] = [];
  for (let d = await broker.get(queue); d !== null; d = await broker.get(queue)) {
    out.push(d);
    await broker.ack(d.deliveryTag);
  }
  return out;
}

if (process.env[CHILD_ENV]) {
  await child(process.env[CHILD_ENV]);
} else {
  test('kill -9 during a publish storm: every publish acknowledged with fsync always is there after restart', { timeout: 30_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'archlab-broker-crash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, [CHILD_ENV]: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.once('exit', (code, signal) => resolve(signal ?? code)));
    t.after(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    const published = new Set<string>();
    const consumed = new Set<string>();
    const errors: string[] = [];
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new assert.AssertionError({ message: `child acknowledged only ${published.size} publishes in 20 s; stderr: ${stderr}` })), 20_000);
      proc.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith('P ')) published.add(line.slice(2));
          else if (line.startsWith('C ')) consumed.add(line.slice(2));
          else if (line.startsWith('E ')) errors.push(line);
        }
        if (published.size >= KILL_AFTER_ACKED) {
          // Mid-storm: WINDOW publishes are in flight right now.
          proc.kill('SIGKILL');
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', () => {
        clearTimeout(timer);
        if (published.size < KILL_AFTER_ACKED) reject(new assert.AssertionError({ message: `child exited early; stderr: ${stderr}` }));
      });
    });
    assert.equal(await exited, 'SIGKILL');
    assert.deepEqual(errors, []);
    // Lines read after the kill signal was sent were printed before the process died: count them too.
    for (const line of buffered.split('\n')) if (line.startsWith('P ')) published.add(line.slice(2));

    const broker = await Broker.open({ dataDir: dir });
    t.after(() => broker.close());
    const keep = await drain(broker, 'keep');
    const work = await drain(broker, 'work');
    const keepIds = keep.map((d) => d.messageId);
    const workIds = work.map((d) => d.messageId);
    assert.equal(new Set(keepIds).size, keepIds.length, 'no message stored twice in keep');
    assert.equal(new Set(workIds).size, workIds.length, 'no message stored twice in work');
    const keepSet = new Set(keepIds);
    const workSet = new Set(workIds);
    const lostFromKeep = [...published].filter((id) => !keepSet.has(id));
    const lostFromWork = [...published].filter((id) => !workSet.has(id) && !consumed.has(id));
    assert.deepEqual(lostFromKeep, [], 'acknowledged publishes lost from keep');
    assert.deepEqual(lostFromWork, [], 'acknowledged publishes lost from work (neither consumed nor there)');
    for (const d of keep) assert.equal(d.body.toString(), `payload of ${d.messageId}`);
    const duplicates = workIds.filter((id) => consumed.has(id)).length;
    const unacknowledgedKept = keepIds.filter((id) => !published.has(id)).length;
    t.diagnostic(
      `acked publishes ${published.size}, consumed ${consumed.size}; after restart keep ${keepIds.length} ` +
        `(${unacknowledgedKept} whose publish was in flight), work ${workIds.length}; ` +
        `duplicates (consumed before the crash, delivered again) ${duplicates}`,
    );
    // What was redelivered after the crash says so when its delivery had reached the journal.
    const redeliveredDuplicates = work.filter((d) => consumed.has(d.messageId) && d.redelivered).length;
    t.diagnostic(`of those duplicates, ${redeliveredDuplicates} carry redelivered=true`);
  });
}
