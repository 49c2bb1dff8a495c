/**
 * Consistent hashing: lookups per second at 10, 100 and 1000 nodes, memory per node, keys moved when
 * an 11th node joins, and load balance, for every archlab hasher side by side with the `hashring`
 * (ketama) and `consistent-hash` npm packages on the same keys.
 */
import { createHash } from 'node:crypto';
import {
  BoundedLoadHasher,
  createHasher,
  hash32,
  ketamaHash,
  type Algorithm,
  type JumpHasher,
  type MaglevHasher,
} from '../src/hashing/index.js';
import { compileLookupLoop, find, peer, rate, retainedBytes, table, type Bench, type BenchContext, type Results } from './harness.js';

/** The common shape of everything measured: build with nodes, look a key up, add a node. */
interface Target {
  get(key: string): string | null | undefined;
  add(node: string): unknown;
  remove(node: string): unknown;
}

interface Subject {
  system: string;
  /** Relative cost of one lookup, so O(N) schemes get fewer operations per timed run. */
  perLookupCost?: (nodes: number) => number;
  /** `loaded`: for bounded loads, place with keys already held (lookup rate under load). */
  build(nodes: string[], loaded?: boolean): Target;
}

const nodeNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `10.0.${i >> 8}.${i & 255}:11211`);

function keysFor(count: number): string[] {
  // Flattened strings, as a server would receive them, not cons-strings of a template.
  return JSON.parse(JSON.stringify(Array.from({ length: count }, (_, i) => `user:${(i * 2654435761) >>> 0}:session`))) as string[];
}

function ours(algo: Algorithm): Subject {
  return {
    system: `archlab ${algo}`,
    perLookupCost: algo === 'rendezvous' ? (n) => n / 10 : undefined,
    build(nodes, loaded) {
      const h = createHasher(algo);
      for (const n of nodes) h.add(n);
      if (loaded && h instanceof BoundedLoadHasher) {
        for (let i = 0; i < nodes.length * 10; i++) h.acquire(`held-${i}`);
      }
      return h;
    },
  };
}

async function peers(ctx: BenchContext): Promise<Subject[]> {
  const out: Subject[] = [];
  const HashRing = await peer(ctx, 'hashring', async () => (await import('hashring')).default);
  if (HashRing) {
    out.push({
      system: 'hashring (ketama)',
      // 'default port' 11211 is hashring's libmemcached-compatible naming; its LRU cache (5000
      // keys by default) stays on, as users run it.
      build: (nodes) => new HashRing(nodes, 'md5', { 'default port': 11211 }),
    });
  }
  const ConsistentHash = await peer(ctx, 'consistent-hash', async () => (await import('consistent-hash')).default);
  if (ConsistentHash) {
    out.push({
      system: 'consistent-hash',
      build(nodes) {
        // Wider range than its default so 1000 nodes x 40 points fit (its README's advice).
        const r = new ConsistentHash({ range: 1_000_003 });
        for (const n of nodes) r.add(n);
        return r;
      },
    });
  }
  return out;
}

function verify(ctx: BenchContext, s: Subject, nodes: string[], keys: string[]): boolean {
  const h = s.build(nodes);
  const set = new Set(nodes);
  for (const k of keys.slice(0, 2000)) {
    if (!set.has(h.get(k) ?? '')) {
      ctx.note(`${s.system}: placed a key on a node that is not a member; its numbers are void`);
      return false;
    }
  }
  return true;
}

const bench: Bench = {
  name: 'hashing',
  description: 'lookups/s, memory per node, keys moved on 10 -> 11 nodes, and balance; archlab vs hashring and consistent-hash',
  docsPage: 'docs/hashing.md',
  async run(ctx) {
    const quick = ctx.quick;
    const keyCount = quick ? 100_000 : 1_000_000;
    const keys = keysFor(keyCount);
    const subjects: Subject[] = [
      ...(['ketama', 'jump', 'rendezvous', 'maglev', 'bounded', 'modulo'] as const).map((a) => ours(a)),
      ...(await peers(ctx)),
    ];

    // Agreement first: a benchmark of a wrong answer is void.
    const ring = subjects.find((s) => s.system.startsWith('hashring'));
    if (ring) {
      for (const n of [10, 100]) {
        const a = ours('ketama').build(nodeNames(n));
        const b = ring.build(nodeNames(n));
        const disagree = keys.slice(0, 20_000).filter((k) => a.get(k) !== b.get(k)).length;
        ctx.note(
          `archlab ketama and hashring agree on ${20_000 - disagree} of 20000 keys at ${n} nodes` +
            (disagree ? ' (hashring counts points in doubles: 156 per server at 100 equal servers where libmemcached has 160; test/hashing/ketama-compat checks ours against libmemcached)' : ''),
        );
      }
    }

    ctx.log('\nlookups per second (median of runs, same keys for all)');
    for (const n of [10, 100, 1000]) {
      const nodes = nodeNames(n);
      for (const s of subjects) {
        if (!verify(ctx, s, nodes, keys)) continue;
        const h = s.build(nodes, true);
        const base = quick ? 200_000 : 1_000_000;
        const ops = Math.max(10_000, Math.floor(base / Math.max(1, s.perLookupCost?.(n) ?? 1)));
        const loop = compileLookupLoop<string>();
        const value = rate((count) => loop(h, keys, count), { ops, runs: quick ? 3 : 7, warmup: 1 });
        ctx.row({ system: s.system, scenario: `${n} nodes`, metric: 'lookups', value, unit: 'ops/s' });
      }
      // The algorithms alone, for callers that hash a key once (a client IP, a connection tuple)
      // and place it many times: getHashed takes the uint32 hash32 would give.
      const hashes = Uint32Array.from(keys, (k) => hash32(k));
      for (const algo of ['jump', 'maglev'] as const) {
        const h = createHasher(algo) as JumpHasher | MaglevHasher;
        for (const node of nodes) h.add(node);
        if (h.getHashed(hashes[0]!) !== h.get(keys[0]!)) throw new TypeError(`${algo}: getHashed disagrees with get`);
        const pre = { get: (x: number) => h.getHashed(x) };
        const loop = compileLookupLoop<number>();
        const value = rate((count) => loop(pre, hashes, count), { ops: quick ? 1_000_000 : 5_000_000, runs: quick ? 3 : 7, warmup: 1 });
        ctx.row({ system: `archlab ${algo} (pre-hashed)`, scenario: `${n} nodes`, metric: 'lookups', value, unit: 'ops/s' });
      }
    }

    ctx.log('\nmemory per node (heap retained by a hasher of 1000 nodes / 1000)');
    for (const s of subjects) {
      const bytes = retainedBytes(() => {
        const h = s.build(nodeNames(1000));
        h.get('build it'); // hashers that build lazily build on the first lookup
        return h;
      });
      if (bytes === undefined) {
        ctx.note('memory not measured: run with node --expose-gc (npm run bench does)');
        break;
      }
      ctx.row({ system: s.system, scenario: '1000 nodes', metric: 'memory per node', value: bytes / 1000, unit: 'bytes' });
    }

    ctx.log(`\nkeys moved when an 11th node joins 10 (${keyCount.toLocaleString('en-US')} keys; ideal 1/11 = 0.0909)`);
    for (const s of subjects) {
      const h = s.build(nodeNames(10));
      const before = keys.map((k) => h.get(k) ?? '');
      h.add(nodeNames(11)[10]!);
      let moved = 0;
      const load = new Map<string, number>();
      for (let i = 0; i < keyCount; i++) {
        const now = h.get(keys[i]!) ?? '';
        if (now !== before[i]) moved++;
        load.set(now, (load.get(now) ?? 0) + 1);
      }
      ctx.row({ system: s.system, scenario: '10 -> 11 nodes', metric: 'keys moved', value: moved / keyCount, unit: 'fraction' });
      const beforeLoad = new Map<string, number>();
      for (const n of before) beforeLoad.set(n, (beforeLoad.get(n) ?? 0) + 1);
      ctx.row({ system: s.system, scenario: '10 nodes', metric: 'max/mean load', value: Math.max(...beforeLoad.values()) / (keyCount / 10), unit: 'ratio' });

      // One of 10 leaves: its keys must move; any other key that moves is disruption.
      const ten = s.build(nodeNames(10));
      const gone = nodeNames(10)[3]!;
      const placed = keys.map((k) => ten.get(k) ?? '');
      ten.remove(gone);
      let stray = 0;
      for (let i = 0; i < keyCount; i++) if (placed[i] !== gone && ten.get(keys[i]!) !== placed[i]) stray++;
      ctx.row({ system: s.system, scenario: '10 -> 9 nodes', metric: 'survivors\u2019 keys moved', value: stray / keyCount, unit: 'fraction' });
    }

    ctx.log('\nhash cost per key (the floor under every lookup above)');
    const hashRate = (fn: (k: string) => number): number =>
      rate(
        (count) => {
          let acc = 0;
          for (let i = 0; i < count; i++) acc ^= fn(keys[i % keyCount]!);
          return acc;
        },
        { ops: quick ? 200_000 : 1_000_000, runs: quick ? 3 : 7 },
      );
    ctx.row({ system: 'xxhash-wasm h32', scenario: 'key of ~24 bytes', metric: 'hashes', value: hashRate((k) => hash32(k)), unit: 'ops/s' });
    ctx.row({ system: 'js-md5 (ketama)', scenario: 'key of ~24 bytes', metric: 'hashes', value: hashRate((k) => ketamaHash(k)), unit: 'ops/s' });
    ctx.row({
      system: 'node:crypto md5',
      scenario: 'key of ~24 bytes',
      metric: 'hashes',
      value: hashRate((k) => createHash('md5').update(k).digest().readUInt32LE(0)),
      unit: 'ops/s',
    });
  },
  targets: (results) => targets(results),
  report: (results) => report(results),
};

function value(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

export function targets(results: Results): string[] {
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  for (const n of [10, 100, 1000]) {
    const a = value(results, 'archlab ketama', `${n} nodes`, 'lookups');
    const b = value(results, 'hashring (ketama)', `${n} nodes`, 'lookups');
    check(`ketama lookups >= 3x hashring at ${n} nodes`, a && b ? a >= 3 * b : undefined, a && b ? `${(a / b).toFixed(2)}x` : 'peer missing');
  }
  for (const variant of ['', ' (pre-hashed)']) {
    const what = variant ? 'keys hashed beforehand, getHashed' : 'string keys, hashing included';
    const jump = value(results, `archlab jump${variant}`, '1000 nodes', 'lookups');
    check(`jump >= 10M lookups/s at 1000 nodes, ${what}`, jump === undefined ? undefined : jump >= 10e6, `${((jump ?? 0) / 1e6).toFixed(2)}M/s`);
    const maglev = value(results, `archlab maglev${variant}`, '1000 nodes', 'lookups');
    check(`Maglev >= 10M lookups/s, ${what}`, maglev === undefined ? undefined : maglev >= 10e6, `${((maglev ?? 0) / 1e6).toFixed(2)}M/s at 1000 nodes`);
  }
  const h32 = value(results, 'xxhash-wasm h32', 'key of ~24 bytes', 'hashes');
  if (h32) out.push(`context: hashing a string key alone runs at ${(h32 / 1e6).toFixed(2)}M/s on this machine, the ceiling for any string-key lookup`);
  for (const algo of ['ketama', 'jump', 'rendezvous', 'maglev']) {
    const moved = value(results, `archlab ${algo}`, '10 -> 11 nodes', 'keys moved');
    check(`${algo} moves within 10% of 1/11 on the 11th node`, moved === undefined ? undefined : Math.abs(moved - 1 / 11) <= 0.1 / 11, `${moved?.toFixed(4)}`);
  }
  const balance = value(results, 'archlab maglev', '10 nodes', 'max/mean load');
  check('Maglev max/mean load <= 1.02', balance === undefined ? undefined : balance <= 1.02, `${balance?.toFixed(4)}`);
  return out;
}

function report(results: Results): string {
  const systems = [...new Set(results.rows.filter((r) => r.metric === 'lookups').map((r) => r.system))];
  const hr = (scenario: string): number | undefined => value(results, 'hashring (ketama)', scenario, 'lookups');
  const lookups = table(
    ['system', '10 nodes', '100 nodes', '1000 nodes', 'vs hashring at 100'],
    systems.map((s) => {
      const v = (n: number) => value(results, s, `${n} nodes`, 'lookups');
      const ratio = hr('100 nodes') ? `${((v(100) ?? 0) / hr('100 nodes')!).toFixed(2)}x` : '-';
      return [s, Math.round(v(10) ?? 0), Math.round(v(100) ?? 0), Math.round(v(1000) ?? 0), ratio];
    }),
  );
  const moveSystems = [...new Set(results.rows.filter((r) => r.metric === 'keys moved').map((r) => r.system))];
  const moves = table(
    ['system', 'keys moved 10 -> 11', 'moved / ideal (1/11)', 'other keys moved 10 -> 9', 'max/mean load, 10 nodes', 'memory per node (bytes)'],
    moveSystems.map((s) => {
      const m = value(results, s, '10 -> 11 nodes', 'keys moved') ?? 0;
      const mem = value(results, s, '1000 nodes', 'memory per node');
      const stray = value(results, s, '10 -> 9 nodes', 'survivors\u2019 keys moved') ?? 0;
      return [s, m.toFixed(4), `${(m * 11).toFixed(2)}x`, stray.toFixed(4), (value(results, s, '10 nodes', 'max/mean load') ?? 0).toFixed(4), mem === undefined ? '-' : Math.round(mem)];
    }),
  );
  const hashes = table(
    ['hash', 'hashes/s'],
    results.rows.filter((r) => r.metric === 'hashes').map((r) => [r.system, Math.round(r.value)]),
  );
  const keysNote = results.quick ? '100,000' : '1,000,000';
  return [
    `Measured by \`npm run bench -- hashing${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}. ${keysNote} keys; lookups are \`get(key)\` on string keys, hashing included; median of runs.`,
    '',
    '**Lookups per second**',
    '',
    lookups,
    '',
    '**Keys moved, balance, memory**',
    '',
    moves,
    '',
    '**Hash functions alone**',
    '',
    hashes,
    '',
    '**Targets**',
    '',
    ...targets(results).map((t) => `- ${t}`),
    ...(results.notes.some((n) => !n.startsWith('target ')) ? ['', '**Notes**', '', ...results.notes.filter((n) => !n.startsWith('target ')).map((n) => `- ${n}`)] : []),
  ].join('\n');
}

export default bench;
