/**
 * What the A/B scripts share (bench/balancer-l7/ab.ts, bench/queue/tcp-ab.ts): two source trees
 * measured in interleaved pairs, the order alternating from pair to pair, each pair compared as
 * B ÷ A and the pairs summarised by their median.
 */
import { ArchlabError } from '../src/core/errors.js';
import { median } from './harness.js';

/** A process that would not start, or a run that failed its check: the A/B is void. */
export class AbVoid extends ArchlabError {
  constructor(message: string) {
    super('ARCHLAB_BENCH_VOID', message);
  }
}

export interface AbMetric<R> {
  /** As printed: "req/s", "CPU per request". */
  name: string;
  value(r: R): number;
}

/**
 * Runs `pairs` pairs of run(treeA) and run(treeB), A first in odd pairs and B first in even ones;
 * prints each pair (`show`) with B ÷ A of each metric, then the medians of those ratios.
 */
export async function interleavedPairs<R>(o: {
  treeA: string;
  treeB: string;
  pairs: number;
  run: (tree: string) => Promise<R>;
  show: (r: R) => string;
  metrics: readonly AbMetric<R>[];
}): Promise<void> {
  const ratios = o.metrics.map(() => [] as number[]);
  for (let p = 0; p < o.pairs; p++) {
    let a: R;
    let b: R;
    if (p % 2 === 0) {
      a = await o.run(o.treeA);
      b = await o.run(o.treeB);
    } else {
      b = await o.run(o.treeB);
      a = await o.run(o.treeA);
    }
    const line = o.metrics.map((m, i) => {
      const ratio = m.value(b) / m.value(a);
      ratios[i]!.push(ratio);
      return `${m.name} ${ratio.toFixed(3)}`;
    });
    process.stdout.write(`pair ${p + 1}: A ${o.show(a)} | B ${o.show(b)} | B/A ${line.join(', ')}\n`);
  }
  process.stdout.write(`median B/A over ${o.pairs} pairs: ${o.metrics.map((m, i) => `${m.name} ${median(ratios[i]!).toFixed(3)}`).join(', ')}\n`);
}
