/** targets() and report() of bench/queue: the issue's targets with measured values, the docs tables, ratios. */
import { find, format, table, type Results } from '../harness.js';
import { diskShare, diskShareMarkdown, shareTargetDetail, type ShareLabels } from './disk-share.js';
import { LEVEL_METRICS } from './levelling.js';
import { METRICS, sizeLabel } from './throughput.js';
import { SIZES } from './payload.js';

export const DISK_SCENARIO = 'sequential write, 1 MiB blocks';
export const DISK_METRIC = 'write MB/s';

/** Row labels of the archlab systems, shared by the bench and the report. */
export const ARCHLAB = {
  logLeader: 'archlab log, TCP, acks=leader',
  logLeaderPre: 'archlab log, TCP, acks=leader, pre-encoded batches',
  logProducer: 'archlab log, TCP, Producer API, acks=leader',
  logFsync: 'archlab log, TCP, acks=fsync',
  queueDurable: 'archlab queue, TCP, durable (fsync always)',
  logEmbedded: 'archlab log, embedded, acks=leader',
  /** The disk-share rounds only: the embedded log fed the pre-encoded batches of logLeaderPre. */
  logEmbeddedPre: 'archlab log, embedded, acks=leader, pre-encoded batches',
  queueEmbedded: 'archlab queue, embedded, durable (fsync always)',
} as const;

export const PEERS = {
  classic: 'RabbitMQ classic queue',
  quorum: 'RabbitMQ quorum queue',
  stream: 'RabbitMQ stream',
  nats: 'NATS JetStream (file)',
  redis: 'Redis Streams',
} as const;

/** The rows of the disk-share rounds (bench/queue/disk-share.ts). */
export const SHARE_LABELS: ShareLabels = { tcp: ARCHLAB.logLeaderPre, embedded: ARCHLAB.logEmbeddedPre, diskMetric: DISK_METRIC, logMetric: METRICS.produceMb };

/** File name of the disk-share chart (docs/img on a full run). */
export const SHARE_CHART = 'queue-disk-share.svg';

function v(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

/** Fastest disk measurement (dd or fio): the physical limit. */
export function diskLimit(results: Results): { mbPerS: number; tool: string } | undefined {
  const rows = results.rows.filter((r) => r.scenario === DISK_SCENARIO && r.metric === DISK_METRIC);
  if (!rows.length) return undefined;
  const best = rows.reduce((a, b) => (b.value > a.value ? b : a));
  return { mbPerS: best.value, tool: best.system };
}

const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b ? `${(a / b).toFixed(2)}x` : '-');
const cell = (x: number | undefined, digits = 0): string => (x === undefined ? '-' : digits === 0 ? Math.round(x).toLocaleString('en-US') : x.toFixed(digits));

function systems(results: Results, scenario: string): string[] {
  return [...new Set(results.rows.filter((r) => r.scenario === scenario && Object.values(METRICS).includes(r.metric as never)).map((r) => r.system))];
}

export function targets(results: Results): string[] {
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  const small = sizeLabel(100);
  const big = sizeLabel(1024);
  // The broker's capacity is the pre-encoded row (the client's encoding is not the broker's work);
  // the client path is shown beside it.
  const best = (sc: string, m: string): { value: number; system: string; detail: string } | undefined => {
    const pre = v(results, ARCHLAB.logLeaderPre, sc, m);
    const client = v(results, ARCHLAB.logLeader, sc, m);
    const api = v(results, ARCHLAB.logProducer, sc, m);
    const unit = m.endsWith('MB/s') ? 'MB/s' : 'msgs/s';
    const detail = [
      pre === undefined ? '' : `the server with pre-encoded batches ${format(pre)} ${unit}`,
      client === undefined ? '' : `client encoding batches of 1000 ${format(client)} ${unit}`,
      api === undefined ? '' : `driver Producer API ${format(api)} ${unit}`,
    ]
      .filter(Boolean)
      .join('; ');
    if (pre !== undefined) return { value: pre, system: ARCHLAB.logLeaderPre, detail };
    if (client !== undefined) return { value: client, system: ARCHLAB.logLeader, detail };
    return undefined;
  };
  const leader = best(small, METRICS.produceRate);
  check(
    'archlab log batched produce, acks=leader, >= 300k msgs/s of 100 B on one core (TCP server pinned to one core)',
    leader === undefined ? undefined : leader.value >= 300_000,
    leader === undefined ? 'no row' : leader.detail,
  );
  // Judged on the rounds (disk and log back to back, median of the per-round shares) when the run
  // has them; otherwise on the single disk and log numbers, measured minutes apart.
  const shareLabel = "archlab log produce of 1 KB >= 50% of the disk's sequential write bandwidth";
  const share = diskShare(results.rows, SHARE_LABELS);
  if (share?.tcp) check(shareLabel, share.tcp.share.median >= share.target, shareTargetDetail(share));
  else {
    const disk = diskLimit(results);
    const leaderMb = best(big, METRICS.produceMb);
    check(
      shareLabel,
      leaderMb === undefined || !disk ? undefined : leaderMb.value >= disk.mbPerS * 0.5,
      leaderMb === undefined || !disk ? 'a side is missing' : `one disk measurement against one log run minutes later: ${leaderMb.value.toFixed(1)} MB/s = ${((leaderMb.value / disk.mbPerS) * 100).toFixed(0)}% of ${disk.mbPerS.toFixed(0)} MB/s (${disk.tool}); ${leaderMb.detail}`,
    );
  }
  // "RabbitMQ's throughput for durable, acked delivery": the faster of its two durable queue types
  // (classic with persistent messages, quorum), metric by metric.
  for (const size of SIZES) {
    const sc = sizeLabel(size);
    for (const m of [METRICS.produceRate, METRICS.consumeRate]) {
      const ours = v(results, ARCHLAB.queueDurable, sc, m);
      const peers = [PEERS.classic, PEERS.quorum].flatMap((p) => {
        const x = v(results, p, sc, m);
        return x === undefined ? [] : [{ p, x }];
      });
      const best = peers.reduce<{ p: string; x: number } | undefined>((a, b) => (a && a.x >= b.x ? a : b), undefined);
      check(
        `archlab queue (durable, acked) >= RabbitMQ's faster durable queue, ${m.replace(' msgs/s', '')}, ${sc}`,
        ours === undefined || best === undefined ? undefined : ours >= best.x,
        ours === undefined || best === undefined ? 'a side is missing' : `${ratio(ours, best.x)} ${best.p}: ${format(ours)} vs ${format(best.x)} msgs/s${peers.length > 1 ? ` (${peers.map((q) => `${q.p} ${format(q.x)}`).join(', ')})` : ''}`,
      );
    }
  }
  const cap = v(results, 'archlab queue', LEVEL_METRICS.scenarioBounded, LEVEL_METRICS.maxDepth);
  const bound = v(results, 'archlab queue', LEVEL_METRICS.scenarioBounded, LEVEL_METRICS.bound);
  check(
    'load levelling: a 10x producer spike held within the queue bound (reject-publish pushes back)',
    cap === undefined || bound === undefined ? undefined : cap <= bound,
    cap === undefined || bound === undefined ? 'not measured' : `peak depth ${format(cap)} of maxLength ${format(bound)}`,
  );
  return out;
}

export function report(results: Results): string {
  const parts: string[] = [];
  parts.push(
    `Measured by \`npm run bench -- queue${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}. ` +
      'Every system carries the same messages (100 B and 1 KB, incompressible, each stamped with a sequence number and its send time), one producer connection with the same bound on unacknowledged publishes, one consumer on its own connection acking every message. ' +
      'Each run is checked before it counts: every message delivered exactly once, count matching; a wrong answer voids the row.',
  );
  const disk = results.rows.filter((r) => r.scenario === DISK_SCENARIO);
  if (disk.length) {
    parts.push('', '**The disk** (sequential writes of 1 MiB blocks with O_DIRECT, flushed at the end: the physical limit a durable log is held against)', '');
    parts.push(table(['tool', 'MB/s'], disk.map((r) => [r.system, r.value.toFixed(0)])));
  }
  const limit = diskLimit(results);
  const share = diskShare(results.rows, SHARE_LABELS);
  for (const size of SIZES) {
    const sc = sizeLabel(size);
    const names = systems(results, sc);
    if (!names.length) continue;
    const dur = (s: string): string => results.notes.find((n) => n.startsWith(`durability of ${s}: `))?.slice(`durability of ${s}: `.length) ?? '-';
    parts.push('', `**${sc} messages** (produce: msgs/s until the last acknowledgement; consume: msgs/s draining that backlog; latency: publish to delivery at a fixed rate, ms)`, '');
    parts.push(
      table(
        ['system', 'acknowledged publish means', 'produce msgs/s', 'produce MB/s', 'consume msgs/s', 'consume MB/s', 'p50 ms', 'p99 ms'],
        names.map((s) => [
          s,
          dur(s),
          cell(v(results, s, sc, METRICS.produceRate)),
          cell(v(results, s, sc, METRICS.produceMb), 1),
          cell(v(results, s, sc, METRICS.consumeRate)),
          cell(v(results, s, sc, METRICS.consumeMb), 1),
          cell(v(results, s, sc, METRICS.p50), 2),
          cell(v(results, s, sc, METRICS.p99), 2),
        ]),
      ),
    );
    if (limit && size === 1024) {
      const shares = [ARCHLAB.logLeaderPre, ARCHLAB.logLeader, ARCHLAB.logProducer, ARCHLAB.logFsync, ARCHLAB.logEmbedded]
        .flatMap((s) => {
          const mb = v(results, s, sc, METRICS.produceMb);
          return mb === undefined ? [] : [`${s} ${((mb / limit.mbPerS) * 100).toFixed(0)}%`];
        });
      if (shares.length) parts.push('', `Share of the disk's ${limit.mbPerS.toFixed(0)} MB/s (${limit.tool}, measured once at the start of the run) used by the 1 KB produce rows above, each measured once, minutes later: ${shares.join(', ')}.${share?.tcp ? ' The target is judged on the rounds below, which measure the two back to back.' : ''}`);
    }
  }
  if (share) parts.push('', diskShareMarkdown(share, results.quick ? undefined : `![The disk and the log, round by round](img/${SHARE_CHART})`));
  const ratios = ratioLines(results);
  if (ratios.length) parts.push('', '**Ratios** (archlab ÷ peer, same size, same metric)', '', ...ratios.map((r) => `- ${r}`));
  const level = levellingTable(results);
  if (level) parts.push('', level);
  parts.push('', '**Targets**', '', ...targets(results).map((t) => `- ${t}`));
  const notes = results.notes.filter((n) => !n.startsWith('target ') && !n.startsWith('durability of '));
  if (notes.length) parts.push('', '**Notes**', '', ...notes.map((n) => `- ${n}`));
  return parts.join('\n');
}

/** archlab rows against the peer of the same kind: the log against JetStream, streams, Redis; the queue against RabbitMQ's queues. */
export function ratioLines(results: Results): string[] {
  const pairs: [string, string][] = [
    [ARCHLAB.logLeader, PEERS.nats],
    [ARCHLAB.logLeader, PEERS.redis],
    [ARCHLAB.logFsync, PEERS.stream],
    [ARCHLAB.logFsync, PEERS.quorum],
    [ARCHLAB.queueDurable, PEERS.classic],
    [ARCHLAB.queueDurable, PEERS.quorum],
  ];
  const out: string[] = [];
  for (const size of SIZES) {
    const sc = sizeLabel(size);
    for (const [ours, theirs] of pairs) {
      const p = ratio(v(results, ours, sc, METRICS.produceRate), v(results, theirs, sc, METRICS.produceRate));
      const c = ratio(v(results, ours, sc, METRICS.consumeRate), v(results, theirs, sc, METRICS.consumeRate));
      if (p === '-' && c === '-') continue;
      const l50 = v(results, ours, sc, METRICS.p50);
      const t50 = v(results, theirs, sc, METRICS.p50);
      out.push(`${sc}: ${ours} vs ${theirs}: produce ${p}, consume ${c}${l50 !== undefined && t50 !== undefined ? `, p50 latency ${l50.toFixed(2)} vs ${t50.toFixed(2)} ms` : ''}`);
    }
  }
  return out;
}

function levellingTable(results: Results): string | undefined {
  const rows = results.rows.filter((r) => r.scenario.startsWith('load levelling'));
  if (!rows.length) return undefined;
  const keys = [...new Set(rows.map((r) => `${r.system}\u0000${r.scenario}`))];
  const get = (k: string, m: string): number | undefined => {
    const [system, scenario] = k.split('\u0000') as [string, string];
    return v(results, system, scenario, m);
  };
  const lines = [
    '**Load levelling** (1 KB messages; the consumer acks at a fixed rate; the producer offers 10x that rate for a spike, then a normal rate; depth = ready + unacked, sampled every 100 ms; RSS of the broker process)',
    '',
    table(
      ['system', 'scenario', 'bound (msgs)', 'peak depth', 'peak broker RSS MiB', 'accepted/s in spike', 'refused (backpressure)', 'consumed/s'],
      keys.map((k) => {
        const [system, scenario] = k.split('\u0000') as [string, string];
        return [
          system,
          scenario.replace(/^load levelling, /, ''),
          cell(get(k, LEVEL_METRICS.bound)),
          cell(get(k, LEVEL_METRICS.maxDepth)),
          cell(get(k, LEVEL_METRICS.maxRss), 0),
          cell(get(k, LEVEL_METRICS.spikeAccepted)),
          cell(get(k, LEVEL_METRICS.refused)),
          cell(get(k, LEVEL_METRICS.consumed)),
        ];
      }),
    ),
    '',
    'Depth and RSS over time: the charts under [Load levelling](#load-levelling) (docs/img/queue-levelling-*.svg, drawn by the full run).',
  ];
  return lines.join('\n');
}
