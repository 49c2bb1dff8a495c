/**
 * Micro benchmark of the log's storage engine (no network): appendRaw of pre-encoded record batches
 * (N records of B bytes each) with acks leader and fsync, `window` appends in flight on one
 * partition (what a pipelining client does), then fetchRaw of everything back; plus the cost of
 * encoding and decoding those batches, which the client pays. Each run is checked before it is
 * reported: the high watermark and the records fetched back add up to what was appended.
 *
 *   node --import tsx bench/queue/log-micro.ts [--batches 1000] [--records 1000] [--bytes 100] [--window 8] [--quick]
 *
 * `runLogMicro()` is exported for bench/queue.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ArchlabError } from '../../src/core/errors.js';
import { Log, batchLastOffsetAt, decodeRecordBatch, encodeRecordBatch } from '../../src/queue/log/index.js';
import type { Acks, Compression, ProducerRecord } from '../../src/queue/types.js';

export interface LogMicroOptions {
  /** Batches appended. Default 1000. */
  batches?: number;
  /** Records per batch. Default 1000. */
  recordsPerBatch?: number;
  /** Value bytes per record (keys are 8 bytes more). Default 100. */
  valueBytes?: number;
  /** appendRaw calls in flight. Default 8. */
  window?: number;
  acks: Acks;
  compression?: Compression;
}

export interface LogMicroRow {
  scenario: string;
  metric: 'msgs/s' | 'MB/s' | 'fsyncs' | 'records/fsync';
  value: number;
}

function records(n: number, valueBytes: number, salt: number): ProducerRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const value = Buffer.alloc(valueBytes, (i + salt) & 0xff);
    return { key: Buffer.from(`k${String(i).padStart(7, '0')}`), value };
  });
}

function rate(count: number, ns: bigint): number {
  return count / (Number(ns) / 1e9);
}

export async function runLogMicro(o: LogMicroOptions): Promise<LogMicroRow[]> {
  const batches = o.batches ?? 1000;
  const perBatch = o.recordsPerBatch ?? 1000;
  const valueBytes = o.valueBytes ?? 100;
  const window = Math.max(1, o.window ?? 8);
  const compression = o.compression ?? 'none';
  const label = `${perBatch}x${valueBytes}B${compression === 'none' ? '' : ` ${compression}`}`;
  const rows: LogMicroRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'archlab-log-micro-'));
  const log = await Log.open({ dataDir: dir, cleanerIntervalMs: 0 });
  try {
    await log.createTopic('bench', { segmentBytes: 256 * 1024 * 1024, maxMessageBytes: 64 * 1024 * 1024 });
    // encode: what a producer pays per batch
    const template = records(perBatch, valueBytes, 0);
    let t0 = process.hrtime.bigint();
    const encodeRuns = Math.max(1, Math.min(50, batches));
    let encoded = encodeRecordBatch(template, { now: Date.now(), compression });
    for (let i = 1; i < encodeRuns; i++) encoded = encodeRecordBatch(template, { now: Date.now(), compression });
    rows.push({ scenario: `encode ${label}`, metric: 'msgs/s', value: rate(encodeRuns * perBatch, process.hrtime.bigint() - t0) });
    const batchBytes = encoded.length;
    // one buffer per slot of the window: appendRaw stamps the base offset in place
    const pool = Array.from({ length: window }, () => Buffer.from(encoded));

    const before = log.stats();
    t0 = process.hrtime.bigint();
    let next = 0;
    const lane = async (slot: number): Promise<void> => {
      while (next < batches) {
        next++;
        await log.appendRaw('bench', 0, pool[slot]!, o.acks);
      }
    };
    await Promise.all(Array.from({ length: window }, (_, s) => lane(s)));
    const appendNs = process.hrtime.bigint() - t0;
    const hw = (await log.describeTopic('bench')).partitions[0]!.highWatermark;
    if (hw !== batches * perBatch) throw new ArchlabError('ARCHLAB_BENCH_WRONG', `appended ${batches * perBatch} records, the log holds ${hw}`);
    const after = log.stats();
    const scen = `appendRaw ${label} acks=${o.acks} window=${window}`;
    rows.push({ scenario: scen, metric: 'msgs/s', value: rate(batches * perBatch, appendNs) });
    rows.push({ scenario: scen, metric: 'MB/s', value: (batches * batchBytes) / 1e6 / (Number(appendNs) / 1e9) });
    if (o.acks === 'fsync') {
      const fsyncs = after.fsyncs - before.fsyncs;
      rows.push({ scenario: scen, metric: 'fsyncs', value: fsyncs });
      rows.push({ scenario: scen, metric: 'records/fsync', value: (batches * perBatch) / Math.max(1, fsyncs) });
    }

    // fetchRaw: the bytes as stored, 1 MiB at a time
    t0 = process.hrtime.bigint();
    let offset = 0;
    let fetchedBytes = 0;
    let fetchedBatches = 0;
    let lastBatch: Buffer | undefined;
    while (offset < hw) {
      const f = await log.fetchRaw({ topic: 'bench', partition: 0, offset, maxBytes: 1024 * 1024 });
      for (const b of f.batches) fetchedBytes += b.length;
      fetchedBatches += f.batches.length;
      lastBatch = f.batches[f.batches.length - 1] ?? lastBatch;
      offset = f.nextOffset;
    }
    const fetchNs = process.hrtime.bigint() - t0;
    if (fetchedBatches !== batches || lastBatch === undefined || batchLastOffsetAt(lastBatch) !== hw - 1) {
      throw new ArchlabError('ARCHLAB_BENCH_WRONG', `fetched ${fetchedBatches} batches, appended ${batches}`);
    }
    rows.push({ scenario: `fetchRaw ${label}`, metric: 'msgs/s', value: rate(hw, fetchNs) });
    rows.push({ scenario: `fetchRaw ${label}`, metric: 'MB/s', value: fetchedBytes / 1e6 / (Number(fetchNs) / 1e9) });

    // decode: what a consumer pays (CRC + records)
    t0 = process.hrtime.bigint();
    let decoded = 0;
    for (let i = 0; i < encodeRuns; i++) decoded += decodeRecordBatch(lastBatch, 'bench', 0).length;
    if (decoded !== encodeRuns * perBatch) throw new ArchlabError('ARCHLAB_BENCH_WRONG', `decoded ${decoded} records`);
    rows.push({ scenario: `decode ${label}`, metric: 'msgs/s', value: rate(decoded, process.hrtime.bigint() - t0) });
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const batches = arg('batches', quick ? 200 : 1000);
  const perBatch = arg('records', 1000);
  const window = arg('window', 8);
  const scenarios: LogMicroOptions[] = [
    { acks: 'leader', valueBytes: arg('bytes', 100) },
    { acks: 'fsync', valueBytes: arg('bytes', 100) },
    { acks: 'leader', valueBytes: 1000, batches: Math.ceil(batches / 5) },
    { acks: 'fsync', valueBytes: 1000, batches: Math.ceil(batches / 5) },
  ];
  for (const s of scenarios) {
    for (const r of await runLogMicro({ batches, recordsPerBatch: perBatch, window, ...s })) {
      process.stdout.write(`${r.scenario.padEnd(52)} ${r.metric.padEnd(14)} ${Math.round(r.value).toLocaleString('en-US')}\n`);
    }
  }
}
