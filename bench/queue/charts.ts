/** The SVG charts of bench/queue, drawn with src/lab/report/svg.ts from the rows and samples of a run. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Row } from '../harness.js';
import { barChart, lineChart } from '../../src/lab/report/svg.js';
import { diskShare, type DiskShare } from './disk-share.js';
import type { LevelSample } from './levelling.js';
import { SHARE_CHART, SHARE_LABELS } from './report.js';
import { SIZES } from './payload.js';
import { METRICS, sizeLabel } from './throughput.js';

const value = (rows: Row[], system: string, scenario: string, metric: string): number | null => rows.find((r) => r.system === system && r.scenario === scenario && r.metric === metric)?.value ?? null;

/** Writes the charts into `dir`; returns the files written. */
export function writeCharts(dir: string, rows: Row[], levelling: Map<string, LevelSample[]>, bounds: number[]): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const put = (name: string, svg: string): void => {
    const f = join(dir, name);
    writeFileSync(f, svg);
    files.push(f);
  };
  const systems = [...new Set(rows.filter((r) => r.metric === METRICS.produceRate).map((r) => r.system))];
  if (systems.length) {
    const bySystem = (metric: string, title: string, file: string, description: string): void =>
      put(
        file,
        barChart({
          title,
          description,
          yLabel: 'messages/s',
          orientation: 'horizontal',
          groups: systems,
          series: SIZES.map((size) => ({ name: sizeLabel(size), values: systems.map((sys) => value(rows, sys, sizeLabel(size), metric)) })),
          width: 900,
        }),
      );
    bySystem(METRICS.produceRate, 'Produce: messages per second until the last acknowledgement', 'queue-produce.svg', 'One producer connection, at most 2,000 unacknowledged publishes, each system at the durability level named in its row.');
    bySystem(METRICS.consumeRate, 'Consume: messages per second draining a backlog, acking each', 'queue-consume.svg', 'One consumer on its own connection with a window of 1,000 drains the backlog the produce run left.');
    const latencySystems = systems.filter((sys) => rows.some((r) => r.system === sys && r.metric === METRICS.p50));
    put(
      'queue-latency.svg',
      barChart({
        title: 'Publish-to-deliver latency at a fixed rate',
        description: 'Messages published at a fixed moderate rate with a consumer already subscribed; time from send to delivery.',
        yLabel: 'ms',
        orientation: 'horizontal',
        groups: latencySystems,
        series: SIZES.flatMap((size) => [
          { name: `${sizeLabel(size)} p50`, values: latencySystems.map((sys) => value(rows, sys, sizeLabel(size), METRICS.p50)) },
          { name: `${sizeLabel(size)} p99`, values: latencySystems.map((sys) => value(rows, sys, sizeLabel(size), METRICS.p99)) },
        ]),
        width: 900,
      }),
    );
  }
  const share = diskShare(rows, SHARE_LABELS);
  if (share) put(SHARE_CHART, diskShareChart(share));
  if (levelling.size) {
    const series = [...levelling].map(([name, samples]) => ({ name, points: samples.map((x) => [x.t, x.depth] as const) }));
    put(
      'queue-levelling-depth.svg',
      lineChart({
        title: 'Queue depth during a 10x producer spike',
        description: 'The consumer acks at a fixed rate; the producer offers 10 times that rate during the spike. Each line is one run with the maxLength in its name; reject-publish refuses what would go over it.',
        xLabel: 'time (s)',
        yLabel: 'messages in the queue (ready + unacked)',
        series,
        referenceLines: [...new Set(bounds)].map((b) => ({ y: b, label: `maxLength ${b.toLocaleString('en-US')}` })),
        width: 900,
        height: 420,
      }),
    );
    const rss = [...levelling].filter(([, s]) => s.some((x) => x.rssMiB !== undefined)).map(([name, samples]) => ({ name, points: samples.filter((x) => x.rssMiB !== undefined).map((x) => [x.t, x.rssMiB!] as const) }));
    put(
      'queue-levelling-rss.svg',
      lineChart({
        title: 'Broker memory (RSS) during the spike',
        description: 'Resident set size of the broker process, sampled every 100 ms, in the same runs.',
        xLabel: 'time (s)',
        yLabel: 'RSS (MiB)',
        series: rss,
        width: 900,
        height: 420,
      }),
    );
  }
  return files;
}

/** Per-round MB/s of the disk and of the log's two sides: how far each moves from round to round, and with each other. */
export function diskShareChart(share: DiskShare): string {
  const tools = [...new Set(share.rounds.flatMap((r) => (r.disk ? [r.disk.system.split(' ')[0]!] : [])))];
  return barChart({
    title: 'The disk and the log, round by round (1 KB records)',
    description: `Each round writes ${share.volumeMiB} MiB with the disk tool, then ${share.volumeMiB} MiB of 1 KB records to the archlab log through TCP and then embedded (acks=leader, pre-encoded batches), back to back. A round's share of the disk is the log's bar over the disk's bar.`,
    xLabel: 'round',
    yLabel: 'MB/s',
    groups: share.rounds.map((r) => `round ${r.round}`),
    series: [
      { name: `disk (${tools.join('/') || 'dd/fio'}, O_DIRECT)`, values: share.rounds.map((r) => r.disk?.mbPerS ?? null) },
      { name: 'log, TCP', values: share.rounds.map((r) => r.tcpMbPerS ?? null) },
      { name: 'log, embedded', values: share.rounds.map((r) => r.embeddedMbPerS ?? null) },
    ],
    width: 720,
  });
}
