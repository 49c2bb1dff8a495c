import { Command } from 'commander';
import { ALGORITHMS, simulate } from '../hashing/index.js';
import type { CliContext } from './context.js';
import { progressBar } from './progress.js';
import { formatSimulation } from './ring.js';

/** `archlab demo`: the commands, then one textbook claim measured (what `npm start` ran before `archlab up`). */
export function demoCommand(ctx: CliContext, help: () => string): Command {
  return new Command('demo')
    .description('show the commands, then measure one claim: hash % N remaps nearly every key, consistent hashing about 1/(N+1)')
    .option('--keys <n>', 'keys to place', (v) => Number(v), 200_000)
    .action((o: { keys: number }) => {
      ctx.out(help() + '\n');
      ctx.out('Demo: place keys on 10 nodes, add an 11th, count the keys that moved.\n\n');
      const results = ALGORITHMS.map((algorithm) => {
        const bar = progressBar(algorithm.padEnd(10), ctx.interactive);
        try {
          return simulate({ algorithm, nodes: 10, keys: o.keys, add: 1, onProgress: (d, t) => bar.update(d, t), now: () => performance.now() });
        } finally {
          bar.stop();
        }
      });
      ctx.out(formatSimulation(results));
      ctx.out('\nTry: archlab ring simulate --compare --nodes 100 --add 1 --keys 1000000\n');
      ctx.out('     archlab ring lookup --node 10.0.1.1:11211=600 --node 10.0.1.2:11211=300 --key user:42\n');
    });
}
