/**
 * Micro benchmark of the embedded broker (no network): publish + consume + ack of N messages through
 * one queue, durable with fsync 'always' and memory-only. A publisher keeps `window` publishes in
 * flight (what a pipelining client does); a consumer with prefetch acks every delivery. The run is
 * checked before it is timed: every message index arrives, none twice.
 *
 *   node --import tsx bench/queue/broker-micro.ts [--messages 100000] [--body 100] [--window 1000] [--quick]
 *
 * `runBrokerMicro()` is exported for bench/queue.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ArchlabError } from '../../src/core/errors.js';
import { Broker, type BrokerFsync } from '../../src/queue/broker/index.js';

export interface BrokerMicroOptions {
  /** Messages per run. Default 100,000. */
  messages?: number;
  /** Body size in bytes (at least 4). Default 100. */
  bodyBytes?: number;
  /** Publishes in flight at most. Default 1000. */
  window?: number;
  /** Consumer prefetch. Default 1000. */
  prefetch?: number;
  /** true: durable queue in a temp data dir; false: memory-only broker. */
  durable: boolean;
  /** Default 'always'. */
  fsync?: BrokerFsync;
}

export interface BrokerMicroResult {
  scenario: string;
  messages: number;
  bodyBytes: number;
  seconds: number;
  /** Messages published, delivered and acked per second (end to end). */
  msgsPerSec: number;
  mbPerSec: number;
  /** fdatasync calls (durable only): messages per sync shows the group commit at work. */
  syncs: number;
  writes: number;
}

export async function runBrokerMicro(o: BrokerMicroOptions): Promise<BrokerMicroResult> {
  const messages = o.messages ?? 100_000;
  const bodyBytes = Math.max(4, o.bodyBytes ?? 100);
  const window = o.window ?? 1000;
  const dir = o.durable ? mkdtempSync(join(tmpdir(), 'archlab-broker-micro-')) : null;
  const broker = await Broker.open({ dataDir: dir, fsync: o.fsync ?? 'always', defaults: { maxLength: messages + window } });
  try {
    await broker.declareQueue('bench', { durable: o.durable });
    const seen = new Uint8Array(messages);
    let acked = 0;
    let duplicates = 0;
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const sub = await broker.consume('bench', {
      prefetch: o.prefetch ?? 1000,
      onDelivery: (d) => {
        const i = d.body.readUInt32LE(0);
        if (seen[i] === 1) duplicates++;
        seen[i] = 1;
        void broker.ack(d.deliveryTag);
        if (++acked === messages) done();
      },
    });
    const body = Buffer.alloc(bodyBytes, 0x61);
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let inflight = 0;
      const pump = (): void => {
        while (next < messages && inflight < window) {
          body.writeUInt32LE(next++, 0);
          inflight++;
          broker.publish('', 'bench', { body }).then(() => {
            inflight--;
            if (next < messages) pump();
            else if (inflight === 0) resolve();
          }, reject);
        }
      };
      pump();
    });
    await finished;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await sub.cancel();
    if (duplicates > 0 || seen.some((v) => v !== 1)) {
      // A benchmark of a wrong answer is void.
      throw new ArchlabError('ARCHLAB_BENCH_VOID', `broker-micro: wrong answer (${duplicates} duplicates, missing ${seen.filter((v) => v !== 1).length})`);
    }
    const j = broker.stats().journal;
    return {
      scenario: o.durable ? `durable fsync ${o.fsync ?? 'always'}` : 'memory',
      messages,
      bodyBytes,
      seconds,
      msgsPerSec: messages / seconds,
      mbPerSec: (messages * bodyBytes) / seconds / 1e6,
      syncs: j?.syncs ?? 0,
      writes: j?.writes ?? 0,
    };
  } finally {
    await broker.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const messages = arg('messages', quick ? 20_000 : 100_000);
  const bodyBytes = arg('body', 100);
  const window = arg('window', 1000);
  for (const durable of [false, true]) {
    // One untimed warm-up run, then the measured one.
    await runBrokerMicro({ messages: Math.min(messages, 20_000), bodyBytes, window, durable });
    const r = await runBrokerMicro({ messages, bodyBytes, window, durable });
    process.stdout.write(
      `${r.scenario.padEnd(22)} ${r.messages} x ${r.bodyBytes} B: ${Math.round(r.msgsPerSec).toLocaleString('en-US')} msg/s ` +
        `(${r.mbPerSec.toFixed(1)} MB/s, ${r.seconds.toFixed(2)} s${durable ? `, ${r.writes} writes, ${r.syncs} fdatasyncs` : ''})\n`,
    );
  }
}
