import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Results, Row } from '../harness.js';
import { Log } from '../../src/queue/log/index.js';
import { diskShareChart } from './charts.js';
import { testLogTarget } from './test-helpers.js';
import { checkWritten, diskShare, parseShareScenario, shareScenario, spread } from './disk-share.js';
import { BenchCheckError, Payloads } from './payload.js';
import { DISK_METRIC, DISK_SCENARIO, report, SHARE_LABELS, targets } from './report.js';
import { prepareMessages, sendPreparedBatches } from './runner.js';
import { METRICS } from './throughput.js';

const FIO = 'fio (O_DIRECT, libaio, 8 in flight)';
const TCP = SHARE_LABELS.tcp;
const EMB = SHARE_LABELS.embedded;

/** Rows of a run with the given rounds: [disk, tcp, embedded] MB/s per round, undefined = not measured. */
function roundRows(rounds: [number | undefined, number | undefined, number | undefined][], mib = 1024): Row[] {
  return rounds.flatMap(([disk, tcp, emb], i) => {
    const scenario = shareScenario(i + 1, mib);
    const out: Row[] = [];
    if (disk !== undefined) out.push({ system: FIO, scenario, metric: DISK_METRIC, value: disk, unit: 'MB/s' });
    if (tcp !== undefined) out.push({ system: TCP, scenario, metric: METRICS.produceMb, value: tcp, unit: 'MB/s' });
    if (emb !== undefined) out.push({ system: EMB, scenario, metric: METRICS.produceMb, value: emb, unit: 'MB/s' });
    return out;
  });
}

function results(rows: Row[], quick = false): Results {
  return { bench: 'queue', date: '2026-11-28T00:00:00.000Z', quick, machine: { cpus: 2, node: 'v20' }, rows, notes: [] };
}

test('a round scenario names its round and volume, and reads back', () => {
  assert.deepEqual(parseShareScenario(shareScenario(3, 128)), { round: 3, mib: 128 });
  assert.equal(parseShareScenario('1 KB'), undefined);
  assert.equal(parseShareScenario(DISK_SCENARIO), undefined);
});

test('spread: median (of an even count, the mean of the middle two), min, max', () => {
  assert.deepEqual(spread([3, 1, 2]), { n: 3, median: 2, min: 1, max: 3 });
  assert.deepEqual(spread([4, 1, 3, 2]), { n: 4, median: 2.5, min: 1, max: 4 });
  assert.equal(spread([]), undefined);
});

test("the share is each round's log over that round's disk, summarised by the median of those shares (not a ratio of medians)", () => {
  // Disk and log swing together (each column varies 4x): every round's share is 40%. Rows of
  // other scenarios (the single disk row, the 1 KB table) are not rounds.
  const rows = [
    { system: FIO, scenario: DISK_SCENARIO, metric: DISK_METRIC, value: 9999, unit: 'MB/s' },
    { system: TCP, scenario: '1 KB', metric: METRICS.produceMb, value: 1, unit: 'MB/s' },
    ...roundRows([
      [500, 200, 400],
      [2000, 800, 1000],
      [1000, 400, 900],
    ]),
  ];
  const s = diskShare(rows, SHARE_LABELS)!;
  assert.equal(s.volumeMiB, 1024);
  assert.equal(s.rounds.length, 3);
  assert.deepEqual(s.tcp?.share, { n: 3, median: 0.4, min: 0.4, max: 0.4 });
  assert.deepEqual(s.disk, { n: 3, median: 1000, min: 500, max: 2000 });
  assert.deepEqual(s.embedded?.share, { n: 3, median: 0.8, min: 0.5, max: 0.9 });

  // Where the median of shares and the ratio of medians part: disk 100, 1000, 1000; log 90, 100, 500.
  const parted = diskShare(
    roundRows([
      [100, 90, undefined],
      [1000, 100, undefined],
      [1000, 500, undefined],
    ]),
    SHARE_LABELS,
  )!;
  assert.equal(parted.tcp?.share.median, 0.5); // shares 0.9, 0.1, 0.5; the ratio of medians would be 0.1
  assert.equal(parted.embedded, undefined);
  assert.equal(diskShare([{ system: TCP, scenario: '1 KB', metric: METRICS.produceMb, value: 1, unit: 'MB/s' }], SHARE_LABELS), undefined);
});

test('a round without its disk number gives no share; a void side shrinks that side\'s count only', () => {
  const s = diskShare(
    roundRows([
      [1000, 300, 700],
      [undefined, 350, 600],
      [800, undefined, 640],
    ]),
    SHARE_LABELS,
  )!;
  assert.equal(s.rounds[1]!.tcpShare, undefined);
  assert.equal(s.rounds[1]!.tcpMbPerS, 350);
  assert.equal(s.tcp?.share.n, 1);
  assert.equal(s.tcp?.mbPerS.n, 2);
  assert.equal(s.embedded?.share.n, 2);
  assert.deepEqual(s.embedded?.share, { n: 2, median: 0.75, min: 0.7, max: 0.8 });
});

test('the target line states the median per-round share, its range and the number of rounds, met or missed on the TCP median', () => {
  const missed = targets(
    results(
      roundRows([
        [1000, 450, 800],
        [700, 420, 600],
        [2000, 400, 900],
        [800, 330, 700],
        [900, 440, 650],
      ]),
    ),
  ).find((l) => l.includes('50% of the disk'))!;
  // shares 0.45, 0.6, 0.2, 0.4125, 0.489 -> median 0.45
  assert.match(missed, /^MISSED: /);
  assert.match(missed, /through TCP, pre-encoded batches: median 45% \(range 20%\.\.60%, 5 rounds\)/);
  assert.match(missed, /embedded, the same batches: median 80%/);
  assert.match(missed, /5 rounds of 1024 MiB each side/);
  const met = targets(results(roundRows([[600, 310, 500]]))).find((l) => l.includes('50% of the disk'))!;
  assert.match(met, /^met: .*median 52% \(range 52%\.\.52%, 1 round\)/);
});

test('without rounds the target falls back to the single disk and log numbers, and says so', () => {
  const line = targets(
    results([
      { system: FIO, scenario: DISK_SCENARIO, metric: DISK_METRIC, value: 800, unit: 'MB/s' },
      { system: TCP, scenario: '1 KB', metric: METRICS.produceMb, value: 300, unit: 'MB/s' },
    ]),
  ).find((l) => l.includes('50% of the disk'))!;
  assert.match(line, /^MISSED: .*one disk measurement against one log run minutes later: 300\.0 MB\/s = 38% of 800 MB\/s/);
});

test('the report has a row per round, a median row, the summary line; the chart link only in a full run', () => {
  const rows = roundRows([
    [1000, 450, 800],
    [700, 420, undefined],
  ]);
  const full = report(results(rows));
  assert.match(full, /\*\*Share of the disk, in rounds\*\* \(2 rounds;/);
  assert.match(full, /\| round \| disk MB\/s \(fio \(O_DIRECT, libaio, 8 in flight\)\) \| log TCP MB\/s \| TCP share \| log embedded MB\/s \| embedded share \|/);
  assert.match(full, /\| 1 \| 1000 \| 450 \| 45% \| 800 \| 80% \|/);
  assert.match(full, /\| 2 \| 700 \| 420 \| 60% \| - \| - \|/);
  assert.match(full, /\| \*\*median\*\* \| 850 \| 435 \| 53% \| 800 \| 80% \|/);
  assert.match(full, /through TCP median 53% \(range 45%\.\.60%, 2 rounds\); embedded median 80% \(range 80%\.\.80%, 1 round\); the target is 50%\./);
  assert.match(full, /!\[The disk and the log, round by round\]\(img\/queue-disk-share\.svg\)/);
  assert.doesNotMatch(report(results(rows, true)), /queue-disk-share\.svg/);
});

test('the chart has a group per round and a bar series per side', () => {
  const svg = diskShareChart(diskShare(roundRows([[1000, 450, 800], [700, undefined, 600]]), SHARE_LABELS)!);
  assert.match(svg, /^<svg/);
  for (const text of ['round 1', 'round 2', 'disk (fio, O_DIRECT)', 'log, TCP', 'log, embedded']) assert.ok(svg.includes(text), text);
});

test('checkWritten: the high watermark must equal the messages sent, and the first and last message read back intact', async () => {
  const p = new Payloads(1024, 77);
  const stored = [p.make(0, 1), p.make(1, 1), p.make(2, 1)];
  const session = (hw: number, at: (i: number) => Buffer | undefined) => ({ highWatermark: async () => hw, readAt: async (i: number) => at(i) });
  await checkWritten(session(3, (i) => stored[i]), p, 3, 'ok');
  await assert.rejects(checkWritten(session(2, (i) => stored[i]), p, 3, 'short'), (e) => e instanceof BenchCheckError && /high watermark is 2 after 3/.test(e.message));
  await assert.rejects(checkWritten(session(3, (i) => (i === 2 ? undefined : stored[i])), p, 3, 'gone'), /no message at offset 2/);
  const altered = Buffer.from(stored[2]!);
  altered[1000]! ^= 1;
  await assert.rejects(checkWritten(session(3, (i) => (i === 2 ? altered : stored[i])), p, 3, 'altered'), /offset 2 is not message 2/);
  await assert.rejects(checkWritten(session(3, (i) => stored[(i + 1) % 3]), p, 3, 'shifted'), /offset 0 is not message 0/);
  await assert.rejects(checkWritten(session(3, (i) => stored[i]), new Payloads(1024, 78), 3, 'foreign'), BenchCheckError);
});

test("batches built once go to topic after topic (the log stamps each base offset), and the log target's read-back finds them whole (embedded log)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-bench-share-'));
  const log = await Log.open({ dataDir: dir, cleanerIntervalMs: 0 });
  t.after(async () => {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const target = testLogTarget(log, 256 * 1024);
  const p = new Payloads(1024, 5);
  const builder = await target.open('share-build', 'throughput');
  const batches = prepareMessages(builder, p, 3000);
  await builder.drop();
  for (const round of [1, 2, 3]) {
    const session = await target.open(`share-check-${round}`, 'throughput');
    await sendPreparedBatches(session, batches, 2000);
    await checkWritten(session, p, 3000, `round ${round}`);
    assert.equal(await session.highWatermark!(), 3000);
    // Offset 1000 sits inside the fourth batch of 253 records: the read skips the batch's earlier records.
    assert.equal((await session.readAt!(1000))?.readUInt32LE(4), 1000);
    assert.equal(await session.readAt!(3000), undefined);
    await assert.rejects(checkWritten(session, p, 2999, 'one more than counted'), BenchCheckError);
    await session.drop();
  }
});
