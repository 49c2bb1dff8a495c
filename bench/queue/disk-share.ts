/**
 * The issue's "share of the disk" target, measured in rounds: the log's 1 KB produce rate against
 * the disk's sequential write bandwidth, both measured back to back, several times over.
 *
 * On a VM both numbers swing from one minute to the next, so one disk figure taken at the start of
 * the bench against one log figure taken minutes later says little. Here each round, on the file
 * system of the bench's data dir and with nothing synced or dropped in between:
 *
 *   1. the disk: fio as disk.ts runs it (dd when fio is not installed), `mib` MiB;
 *   2. the archlab log through TCP, acks=leader: `mib` MiB of 1 KB records in the batches of the
 *      "pre-encoded batches" row (its own target and send loop, same window), checked (high
 *      watermark = messages sent, first and last record read back intact), topic deleted;
 *   3. the embedded log, the same batches, checked the same way, topic deleted.
 *
 * The batches are built once, before the first round, and sent again by every side of every round
 * (the log assigns each batch's base offset as it appends it; the rest of a batch, CRC included,
 * does not change), so the three measurements of a round follow each other with only a topic's
 * creation, check and deletion between them, not the seconds it takes to build 1 GiB of batches.
 *
 * Each side of a round is one row (scenario `shareScenario(round, mib)`); the share of a round is
 * the log's MB/s (record bodies, 10^6 bytes) over the disk's MB/s of that round, and the target is
 * judged on the median of those per-round shares. diskShare() rebuilds the rounds from the rows
 * (the JSON's `diskShare` section and the docs table), so they are the single record.
 */
import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { findBinary } from '../balancer-l7/procs.js';
import { format, median, table, type BenchContext, type Row } from '../harness.js';
import { ddWrite, diskSystem, fioWrite } from './disk.js';
import { BenchCheckError, Payloads, seqOf } from './payload.js';
import { prepareMessages, sendPreparedBatches, type PreparedBatch, type Session, type Target } from './runner.js';
import { withSession } from './throughput.js';

/** Body size of every record in the rounds: the issue's 1 KB. */
export const SHARE_RECORD_BYTES = 1024;

/** The issue's target: 1 KB produce at no less than this share of the disk's sequential bandwidth. */
export const SHARE_TARGET = 0.5;

/** Row labels and metrics of the rounds (report.ts holds the strings; passed in so this module needs none of it). */
export interface ShareLabels {
  /** The log through TCP with pre-encoded batches. */
  tcp: string;
  /** The embedded log with the same batches. */
  embedded: string;
  /** Metric of a round's disk row (MB/s). */
  diskMetric: string;
  /** Metric of a round's log rows (MB/s of record bodies). */
  logMetric: string;
}

export interface DiskShareSettings {
  /** Rounds (full run 5, quick 2). */
  rounds: number;
  /** MiB each side writes in a round: the disk tool's file, and the log's record bodies. */
  mib: number;
  /** Messages unacknowledged at most: the throughput rows' window. */
  window: number;
}

export function shareScenario(round: number, mib: number): string {
  return `disk share, round ${round}: 1 KB records, ${mib} MiB each side`;
}

const SCENARIO = /^disk share, round (\d+): 1 KB records, (\d+) MiB each side$/;

export function parseShareScenario(scenario: string): { round: number; mib: number } | undefined {
  const m = SCENARIO.exec(scenario);
  return m ? { round: Number(m[1]), mib: Number(m[2]) } : undefined;
}

export interface ShareRound {
  round: number;
  /** The disk tool's row label and MB/s; absent when it failed that round. */
  disk?: { system: string; mbPerS: number };
  tcpMbPerS?: number;
  embeddedMbPerS?: number;
  /** tcpMbPerS / disk MB/s of this round (both present only). */
  tcpShare?: number;
  embeddedShare?: number;
}

/** Median, smallest and largest of `n` values. */
export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
}

export interface SideSummary {
  mbPerS: Spread;
  /** Of the per-round shares (rounds where both the disk and this side were measured). */
  share: Spread;
}

/** What the JSON's `diskShare` section holds. */
export interface DiskShare {
  recordBytes: number;
  /** MiB each side wrote per round. */
  volumeMiB: number;
  /** The target share (0.5). */
  target: number;
  rounds: ShareRound[];
  /** The disk's MB/s over the rounds. */
  disk?: Spread;
  tcp?: SideSummary;
  embedded?: SideSummary;
}

export function spread(xs: readonly number[]): Spread | undefined {
  if (xs.length === 0) return undefined;
  return { n: xs.length, median: median([...xs]), min: Math.min(...xs), max: Math.max(...xs) };
}

/** The rounds of a run, rebuilt from its rows; undefined when the run has none. */
export function diskShare(rows: readonly Row[], labels: ShareLabels): DiskShare | undefined {
  const byRound = new Map<number, ShareRound>();
  let volumeMiB: number | undefined;
  for (const r of rows) {
    const sc = parseShareScenario(r.scenario);
    if (!sc) continue;
    volumeMiB ??= sc.mib;
    if (sc.mib !== volumeMiB) continue;
    const round = byRound.get(sc.round) ?? { round: sc.round };
    byRound.set(sc.round, round);
    if (r.metric === labels.diskMetric) round.disk = { system: r.system, mbPerS: r.value };
    else if (r.metric === labels.logMetric && r.system === labels.tcp) round.tcpMbPerS = r.value;
    else if (r.metric === labels.logMetric && r.system === labels.embedded) round.embeddedMbPerS = r.value;
  }
  if (volumeMiB === undefined) return undefined;
  const rounds = [...byRound.values()].sort((a, b) => a.round - b.round);
  for (const r of rounds) {
    if (r.disk && r.disk.mbPerS > 0) {
      if (r.tcpMbPerS !== undefined) r.tcpShare = r.tcpMbPerS / r.disk.mbPerS;
      if (r.embeddedMbPerS !== undefined) r.embeddedShare = r.embeddedMbPerS / r.disk.mbPerS;
    }
  }
  const values = (f: (r: ShareRound) => number | undefined): number[] => rounds.map(f).filter((x): x is number => x !== undefined);
  const side = (mb: (r: ShareRound) => number | undefined, share: (r: ShareRound) => number | undefined): SideSummary | undefined => {
    const m = spread(values(mb));
    const s = spread(values(share));
    return m && s ? { mbPerS: m, share: s } : undefined;
  };
  const disk = spread(values((r) => r.disk?.mbPerS));
  const tcp = side((r) => r.tcpMbPerS, (r) => r.tcpShare);
  const embedded = side((r) => r.embeddedMbPerS, (r) => r.embeddedShare);
  return {
    recordBytes: SHARE_RECORD_BYTES,
    volumeMiB,
    target: SHARE_TARGET,
    rounds,
    ...(disk ? { disk } : {}),
    ...(tcp ? { tcp } : {}),
    ...(embedded ? { embedded } : {}),
  };
}

const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const mb = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(0));

/** The disk tool's label, when every measured round used the same one. */
function diskTool(share: DiskShare): string | undefined {
  const tools = new Set(share.rounds.flatMap((r) => (r.disk ? [r.disk.system] : [])));
  return tools.size === 1 ? [...tools][0] : undefined;
}

/** "median 43% (range 31%..52%, 5 rounds)" */
function shareSpread(s: SideSummary): string {
  return `median ${pct(s.share.median)} (range ${pct(s.share.min)}..${pct(s.share.max)}, ${s.share.n} round${s.share.n === 1 ? '' : 's'})`;
}

/** The detail of the target line: the median per-round share, its range, the number of rounds. */
export function shareTargetDetail(share: DiskShare): string {
  const parts: string[] = [];
  if (share.tcp) parts.push(`through TCP, pre-encoded batches: ${shareSpread(share.tcp)}, ${format(share.tcp.mbPerS.median)} MB/s median`);
  if (share.embedded) parts.push(`embedded, the same batches: ${shareSpread(share.embedded)}, ${format(share.embedded.mbPerS.median)} MB/s median`);
  if (share.disk) parts.push(`the disk (${diskTool(share) ?? 'dd/fio'}) ${format(share.disk.median)} MB/s median, ${format(share.disk.min)}..${format(share.disk.max)}`);
  return `per-round shares, the disk and the log measured back to back in each of ${share.rounds.length} rounds of ${share.volumeMiB} MiB each side: ${parts.join('; ')}`;
}

/** The docs section: one table row per round, a median row, the summary line, the chart when drawn. */
export function diskShareMarkdown(share: DiskShare, chart?: string): string {
  const tool = diskTool(share);
  const rows: string[][] = share.rounds.map((r) => [
    String(r.round),
    r.disk ? `${mb(r.disk.mbPerS)}${tool ? '' : ` (${r.disk.system})`}` : '-',
    mb(r.tcpMbPerS),
    r.tcpShare === undefined ? '-' : pct(r.tcpShare),
    mb(r.embeddedMbPerS),
    r.embeddedShare === undefined ? '-' : pct(r.embeddedShare),
  ]);
  rows.push([
    '**median**',
    mb(share.disk?.median),
    mb(share.tcp?.mbPerS.median),
    share.tcp ? pct(share.tcp.share.median) : '-',
    mb(share.embedded?.mbPerS.median),
    share.embedded ? pct(share.embedded.share.median) : '-',
  ]);
  const lines = [
    `**Share of the disk, in rounds** (${share.rounds.length} rounds; in each, back to back on the file system of the run's data dir: the disk tool writes ${share.volumeMiB} MiB, then ${share.volumeMiB} MiB of 1 KB records go to the archlab log through TCP and then to the embedded log, acks=leader, in the pre-encoded batches of the row above; a round's share = the log's MB/s ÷ the disk's MB/s in that round; the median row is the median of each column)`,
    '',
    table(['round', `disk MB/s${tool ? ` (${tool})` : ''}`, 'log TCP MB/s', 'TCP share', 'log embedded MB/s', 'embedded share'], rows),
  ];
  const summary: string[] = [];
  if (share.tcp) summary.push(`through TCP ${shareSpread(share.tcp)}`);
  if (share.embedded) summary.push(`embedded ${shareSpread(share.embedded)}`);
  if (summary.length) lines.push('', `Share of the disk's sequential bandwidth used by 1 KB produce, per round: ${summary.join('; ')}; the target is ${pct(share.target)}.`);
  if (chart) lines.push('', chart);
  return lines.join('\n');
}

/**
 * The log side of a round must hold exactly what was acknowledged: its high watermark equals the
 * messages sent, and its first and last records are this run's messages 0 and count-1, intact.
 * Throws BenchCheckError otherwise (the side is void).
 */
export async function checkWritten(session: Pick<Session, 'highWatermark' | 'readAt'>, payloads: Payloads, count: number, what: string): Promise<void> {
  if (!session.highWatermark || !session.readAt) throw new TypeError(`${what}: this target cannot be read back`);
  const hw = await session.highWatermark();
  if (hw !== count) throw new BenchCheckError(`${what}: the log's high watermark is ${hw} after ${count} acknowledged messages`, { highWatermark: hw, count });
  for (const offset of count > 1 ? [0, count - 1] : [0]) {
    const b = await session.readAt(offset);
    if (!b) throw new BenchCheckError(`${what}: no message at offset ${offset}`, { offset });
    if (!payloads.valid(b) || seqOf(b) !== offset) throw new BenchCheckError(`${what}: the message at offset ${offset} is not message ${offset} of this run, or is altered`, { offset });
  }
}

/** The kernel's writeback settings, for the notes: how much of a round's page-cache writes must reach the device during it. */
export function writebackNote(mib: number): string | undefined {
  const vm = (k: string): number | undefined => {
    try {
      const v = Number(readFileSync(`/proc/sys/vm/${k}`, 'utf8').trim());
      return Number.isFinite(v) ? v : undefined;
    } catch {
      return undefined;
    }
  };
  const ratio = vm('dirty_background_ratio');
  const bytes = vm('dirty_background_bytes');
  const expire = vm('dirty_expire_centisecs');
  if (ratio === undefined && bytes === undefined) return undefined;
  const gib = (b: number): string => `${(b / 1024 ** 3).toFixed(1)} GiB`;
  // The kernel applies the ratio to available memory; freemem() is MemAvailable on Linux.
  const threshold = bytes ? bytes : ((ratio ?? 0) / 100) * freemem();
  const setting = bytes ? `dirty_background_bytes ${bytes}` : `dirty_background_ratio ${ratio}% of available memory (${gib(freemem())} available of ${gib(totalmem())} now)`;
  const fits = mib * 1024 ** 2 < threshold;
  return `disk share, writeback: ${setting}, dirty_expire_centisecs ${expire ?? '?'}; background writeback starts above about ${gib(threshold)}, ${fits ? `more than a side's ${mib} MiB, so the log's acks=leader writes (page cache) need not reach the device during its timed run, while fio's and dd's O_DIRECT writes do` : `less than a side's ${mib} MiB, so part of the log's acks=leader writes reach the device during its timed run`}`;
}

export interface DiskShareRun {
  /** Where the disk tool writes: the file system of the log's data dirs. */
  dir: string;
  /** The "pre-encoded batches" TCP log target and the embedded log target (either may be missing). */
  tcp: Target | undefined;
  embedded: Target | undefined;
  labels: ShareLabels;
  settings: DiskShareSettings;
  runId: string;
  tag: number;
}

/** Runs the rounds; one row per side per round, a note for each side that failed or was void. */
export async function measureDiskShare(ctx: BenchContext, o: DiskShareRun): Promise<void> {
  const { rounds, mib, window } = o.settings;
  const count = (mib * 1024 * 1024) / SHARE_RECORD_BYTES;
  const payloads = new Payloads(SHARE_RECORD_BYTES, o.tag);
  const fio = findBinary('fio') !== undefined;
  const disk = fio ? fioWrite : ddWrite;
  const sides = [
    { name: 'tcp', target: o.tcp, system: o.labels.tcp },
    { name: 'embedded', target: o.embedded, system: o.labels.embedded },
  ];
  ctx.note(
    `disk share: ${rounds} rounds; in each, back to back on the file system of ${dirname(o.dir)} (where the archlab data dirs are) with nothing synced or dropped between: ${fio ? 'fio' : 'dd (fio is not installed: apt-get install fio)'} writes ${mib} MiB as in the disk rows; then ${count.toLocaleString('en-US')} records of 1 KB (${mib} MiB of bodies) to the archlab log through TCP (acks=leader; the code, batches and window of ${window.toLocaleString('en-US')} messages of the row "${o.labels.tcp}"; the batches built once before the first round and sent again by every side of every round); then the same to the embedded log (Log.open() in the bench process, the same batches); each log side checked (high watermark = messages sent, first and last record read back intact) before it counts, and its topic deleted after it; the disk tool deletes its file; MB/s counts record bodies (10^6 bytes); fio or dd and the embedded log run on the bench process's cores (pinned as noted above when the machine has two)`,
  );
  const wb = writebackNote(mib);
  if (wb) ctx.note(wb);
  for (const s of sides) if (!s.target) ctx.note(`disk share: ${s.system} not measured (its target did not start; see the notes above)`);
  const first = sides.find((s) => s.target)?.target;
  if (!first) return;
  let batches: PreparedBatch[] = [];
  try {
    await withSession(first, o.runId, 'share-prepare', 'throughput', async (session) => {
      batches = prepareMessages(session, payloads, count);
    });
  } catch (err) {
    ctx.note(`FAILED disk share: could not build the batches: ${(err as Error).message}`);
    return;
  }
  // The garbage of building them (a million message buffers) collected before any clock starts,
  // when the bench runs with --expose-gc (npm run bench does).
  (globalThis as { gc?: () => void }).gc?.();
  for (let round = 1; round <= rounds; round++) {
    const scenario = shareScenario(round, mib);
    const said: string[] = [];
    const t0 = performance.now();
    const speed = await disk(o.dir, mib);
    let diskMb: number | undefined;
    if (typeof speed === 'string') {
      ctx.note(`disk share, round ${round}: ${speed}`);
      said.push('disk failed');
    } else {
      diskMb = speed.mbPerS;
      ctx.row({ system: diskSystem(speed.tool), scenario, metric: o.labels.diskMetric, value: speed.mbPerS, unit: 'MB/s' });
      said.push(`${speed.tool} ${speed.mbPerS.toFixed(0)} MB/s`);
    }
    for (const s of sides) {
      if (!s.target) continue;
      const got = await logSide(ctx, s.target, batches, payloads, count, window, o.runId, `share-r${round}-${s.name}`, `${s.system}, ${scenario}`);
      if (got === undefined) {
        said.push(`${s.name} void or failed`);
        continue;
      }
      ctx.row({ system: s.system, scenario, metric: o.labels.logMetric, value: got, unit: 'MB/s' });
      said.push(`${s.name} ${got.toFixed(0)} MB/s${diskMb ? ` (${pct(got / diskMb)})` : ''}`);
    }
    ctx.log(`  (disk share, round ${round} of ${rounds}: ${said.join(', ')}; ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}

/** One log side of a round: send the batches, check, return MB/s of bodies; undefined when void or failed, with a note. */
async function logSide(
  ctx: BenchContext,
  t: Target,
  batches: readonly PreparedBatch[],
  payloads: Payloads,
  count: number,
  window: number,
  runId: string,
  what: string,
  label: string,
): Promise<number | undefined> {
  let mbPerS: number | undefined;
  try {
    await withSession(t, runId, what, 'throughput', async (session) => {
      const p = await sendPreparedBatches(session, batches, window);
      await checkWritten(session, payloads, count, label);
      mbPerS = (count * payloads.size) / p.ms / 1000;
    });
  } catch (err) {
    if (err instanceof BenchCheckError) ctx.note(`VOID ${label}: ${err.message}; no row for it`);
    else ctx.note(`FAILED ${label}: ${(err as Error).message}`);
    return undefined;
  }
  return mbPerS;
}
