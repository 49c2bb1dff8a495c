import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { InvalidArgumentError as ArchlabArgumentError } from '../core/errors.js';
import { ALGORITHMS, createHasher, simulate, type Algorithm, type HasherOptions, type SimulateResult } from '../hashing/index.js';
import { HashingError } from '../hashing/errors.js';
import type { CliContext } from './context.js';
import { progressBar } from './progress.js';

/** Keys read from a file at most: lookup is for comparing placements, not bulk jobs. */
const MAX_KEYS_FILE_BYTES = 256 * 1024 * 1024;

interface NodeSpec {
  node: string;
  weight: number;
}

/** `10.0.1.1:11211=600` -> node `10.0.1.1:11211`, weight 600; no `=` means weight 1. */
export function parseNodeSpec(spec: string): NodeSpec {
  const eq = spec.lastIndexOf('=');
  if (eq < 0) return { node: spec, weight: 1 };
  const weightText = spec.slice(eq + 1);
  const weight = Number(weightText);
  if (weightText.trim() === '' || !Number.isFinite(weight) || weight <= 0) {
    throw new InvalidArgumentError(`node "${spec}": weight after "=" must be a number > 0`);
  }
  return { node: spec.slice(0, eq), weight };
}

function collect<T>(parse: (v: string) => T) {
  return (value: string, previous: T[] = []): T[] => previous.concat(parse(value));
}

function wholeNumber(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
    return n;
  };
}

function positiveNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a number > 0`);
    return n;
  };
}

function algoOption(defaultAlgo: Algorithm): Option {
  return new Option('-a, --algo <algo>', 'placement algorithm').choices(ALGORITHMS).default(defaultAlgo);
}

function tuningOptions(cmd: Command): Command {
  return cmd
    .option('--points <n>', 'ketama/bounded: points per server at equal weight (multiple of 4)', wholeNumber('--points', 4), 160)
    .option('--default-port <port>', 'ketama/bounded: port left out of point names, as libmemcached does; "none" keeps every port (twemproxy)', '11211')
    .option('--table-size <prime>', 'maglev: lookup table size, a prime', wholeNumber('--table-size', 2), 65537)
    .option('--epsilon <eps>', 'bounded: allowed overload over the mean', positiveNumber('--epsilon'), 0.25);
}

function hasherOptions(o: { points: number; defaultPort: string; tableSize: number; epsilon: number }): HasherOptions {
  let defaultPort: number | null;
  if (o.defaultPort === 'none') defaultPort = null;
  else {
    defaultPort = Number(o.defaultPort);
    if (!Number.isSafeInteger(defaultPort) || defaultPort < 0 || defaultPort > 65535) {
      throw new HashingError('ARCHLAB_HASH_BAD_ARGUMENT', `--default-port must be a port number or "none", got ${o.defaultPort}`);
    }
  }
  return { pointsPerServer: o.points, defaultPort, tableSize: o.tableSize, epsilon: o.epsilon };
}

export function ringCommand(ctx: CliContext): Command {
  const ring = new Command('ring').description('consistent hashing: look up where keys live, simulate adding and removing nodes');

  tuningOptions(
    ring
      .command('lookup')
      .description('print "key<TAB>node" for each key, to compare placement with another implementation')
      .addOption(algoOption('ketama'))
      .requiredOption('-n, --node <node[=weight]>', 'a node, repeatable, e.g. 10.0.1.1:11211=600 (order matters for jump)', collect(parseNodeSpec))
      .option('-k, --key <key>', 'a key, repeatable', collect((v: string) => v))
      .option('-f, --keys-file <file>', 'keys, one per line ("-" for stdin)'),
  ).action((o) => {
    const hasher = createHasher(o.algo as Algorithm, hasherOptions(o));
    for (const { node, weight } of o.node as NodeSpec[]) hasher.add(node, weight);
    const keys: string[] = [...((o.key as string[] | undefined) ?? [])];
    if (o.keysFile) keys.push(...readKeys(o.keysFile as string));
    if (keys.length === 0) throw new ArchlabArgumentError('give keys with --key or --keys-file');
    const lines: string[] = [];
    for (const key of keys) {
      lines.push(`${key}\t${hasher.get(key)}`);
      if (lines.length === 4096) {
        ctx.out(lines.join('\n') + '\n');
        lines.length = 0;
      }
    }
    if (lines.length) ctx.out(lines.join('\n') + '\n');
  });

  tuningOptions(
    ring
      .command('simulate')
      .description('place keys, add or remove nodes, and measure keys moved vs the ideal, load spread and lookup rate')
      .addOption(algoOption('ketama'))
      .option('--nodes <n>', 'nodes before the change', wholeNumber('--nodes', 1), 10)
      .option('--keys <n>', 'keys to place', wholeNumber('--keys', 1), 1_000_000)
      .option('--add <n>', 'nodes to add', wholeNumber('--add', 0), 0)
      .option('--remove <n>', 'nodes to remove', wholeNumber('--remove', 0), 0)
      .option('--weights <list>', 'weights cycled over the nodes, e.g. 1,2,4', (v: string) => v.split(',').map(positiveNumber('--weights')))
      .option('--compare', 'run every algorithm on the same keys and print one row each')
      .option('--json', 'print JSON instead of a table')
      .option('--no-progress', 'no progress bar'),
  ).action((o) => {
    const algos: Algorithm[] = o.compare ? [...ALGORITHMS] : [o.algo as Algorithm];
    const results: SimulateResult[] = [];
    for (const algorithm of algos) {
      const bar = progressBar(`${algorithm.padEnd(10)}`, o.progress !== false && ctx.interactive);
      try {
        results.push(
          simulate({
            algorithm,
            nodes: o.nodes,
            keys: o.keys,
            add: o.add,
            remove: o.remove,
            weights: o.weights,
            hasherOptions: hasherOptions(o),
            onProgress: (d, t) => bar.update(d, t),
            now: () => performance.now(),
          }),
        );
      } finally {
        bar.stop();
      }
    }
    if (o.json) ctx.out(JSON.stringify(o.compare ? results : results[0], null, 2) + '\n');
    else ctx.out(formatSimulation(results));
  });

  return ring;
}

function readKeys(file: string): string[] {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  if (text.length > MAX_KEYS_FILE_BYTES) throw new ArchlabArgumentError(`keys file larger than ${MAX_KEYS_FILE_BYTES} bytes`);
  const keys = text.split('\n');
  if (keys.at(-1) === '') keys.pop();
  return keys.map((k) => (k.endsWith('\r') ? k.slice(0, -1) : k));
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;

export function formatSimulation(results: SimulateResult[]): string {
  const first = results[0]!;
  const change = [first.added.length ? `add ${first.added.length}` : '', first.removed.length ? `remove ${first.removed.length}` : '']
    .filter(Boolean)
    .join(', ') || 'no change';
  const head = `${first.keys.toLocaleString('en-US')} keys, ${first.nodesBefore} -> ${first.nodesAfter} nodes (${change}); ideal move ${pct(first.idealFraction)}\n\n`;
  const rows = [['algorithm', 'moved', 'moved/ideal', 'max/mean', 'min/mean', 'stddev', 'lookups/s']];
  for (const r of results) {
    rows.push([
      r.algorithm,
      pct(r.movedFraction),
      r.idealFraction > 0 ? `${(r.movedFraction / r.idealFraction).toFixed(2)}x` : '-',
      r.after.maxOverMean.toFixed(3),
      r.after.minOverMean.toFixed(3),
      r.after.stddev.toFixed(4),
      Math.round(r.lookupsPerSecond).toLocaleString('en-US'),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
  return head + table + '\n\nmax/mean, min/mean and stddev are of each node\u2019s keys over its weighted due share, after the change.\n';
}
