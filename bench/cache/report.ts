/** targets() and report() of bench/cache: the targets with measured values, and the docs tables. */
import { find, format, table, type Results } from '../harness.js';
import { OPTIONS } from './durability.js';

const HIT = 'hit path, warm keys';
const GOL_MEM = 'get-or-load, memory';
const GOL_TIERED = 'get-or-load, tiered memory+Redis';
const PEERS = ['bentocache', 'cache-manager', 'async-cache-dedupe'];
const STRATEGY_SCENARIO = 'SQLite source, memory store, 95/5 Zipf';

function v(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

function byPrefix(results: Results, prefix: string): string[] {
  return [...new Set(results.rows.filter((r) => r.scenario.startsWith(prefix)).map((r) => r.scenario))];
}

const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}x` : '-');
const cell = (x: number | undefined, digits?: number): string | number => (x === undefined ? '-' : digits === undefined ? x : x.toFixed(digits));
/** A count, as an integer with thousands separators. */
const int = (x: number | undefined): string => (x === undefined ? '-' : Math.round(x).toLocaleString('en-US'));

export function targets(results: Results): string[] {
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  const raw = v(results, 'lru-cache get (max only)', HIT, 'gets');
  const peek = v(results, 'archlab CacheAside.peek', HIT, 'gets');
  check('hit path <= 1.3x the time of a raw lru-cache get', raw && peek ? raw / peek <= 1.3 : undefined, raw && peek ? `${(raw / peek).toFixed(2)}x: ${(1e9 / peek).toFixed(0)} ns vs ${(1e9 / raw).toFixed(0)} ns per get` : 'not measured');
  const hot = results.rows.find((r) => r.scenario.startsWith('hit path, hottest'))?.scenario;
  if (hot) {
    const rawHot = v(results, 'lru-cache get (max only)', hot, 'gets');
    const peekHot = v(results, 'archlab CacheAside.peek', hot, 'gets');
    if (rawHot && peekHot) out.push(`context: ${hot}: CacheAside.peek ${(rawHot / peekHot).toFixed(2)}x the time of a raw lru-cache get (${(1e9 / peekHot).toFixed(0)} ns vs ${(1e9 / rawHot).toFixed(0)} ns)`);
  }
  const gol = v(results, 'archlab CacheAside.getOrLoad', HIT, 'gets (awaited)');
  check('>= 1M get-or-load hits/s from memory (awaited)', gol === undefined ? undefined : gol >= 1e6, `${((gol ?? 0) / 1e6).toFixed(2)}M/s`);
  for (const scenario of [GOL_MEM, GOL_TIERED]) {
    const ours = v(results, 'archlab', scenario, 'get-or-load');
    for (const p of PEERS) {
      const theirs = v(results, p, scenario, 'get-or-load');
      check(`${scenario}: archlab ahead of ${p}`, ours && theirs ? ours > theirs : undefined, ours && theirs ? `${ratio(ours, theirs)}: ${format(ours)} vs ${format(theirs)} ops/s` : 'a side is missing');
    }
  }
  const inv = byPrefix(results, 'cross-process invalidation')[0];
  const p99 = inv ? v(results, 'archlab tiered', inv, 'visibility p99') : undefined;
  const missedRow = inv ? results.rows.find((r) => r.scenario === inv && r.metric.startsWith('drops missed')) : undefined;
  check(
    'cross-process invalidation visible in every other process within 5 ms p99',
    p99 === undefined ? undefined : p99 <= 5 && (missedRow?.value ?? 0) === 0,
    p99 === undefined ? 'not measured' : `p99 ${p99.toFixed(2)} ms, ${missedRow?.value ?? 0} drops missed`,
  );
  for (const scenario of byPrefix(results, '10,000 concurrent gets')) {
    const loads = v(results, 'archlab', scenario, 'source loads');
    const ms = v(results, 'archlab', scenario, 'time to serve all');
    check(`${scenario}: exactly 1 source load`, loads === undefined ? undefined : loads === 1, `${loads} load(s), all served in ${ms?.toFixed(1)} ms`);
  }
  const spike = byPrefix(results, 'write spike')[0];
  if (spike) {
    const cap = v(results, 'source (throttled SQLite)', spike, 'capacity');
    for (const system of results.rows.filter((r) => r.scenario === spike && r.system.startsWith('archlab write-back') && r.metric === 'acked writes/s').map((r) => r.system)) {
      const acked = v(results, system, spike, 'acked writes/s');
      check(`${system} absorbs 10x the source's rate`, acked && cap ? acked >= 10 * cap * 0.95 : undefined, `${format(acked ?? 0)} writes/s acked = ${ratio(acked, cap)} the source's ${cap} calls/s (5% slack for timer granularity)`);
    }
  } else check("write-back absorbs 10x the source's rate", undefined, 'not measured');
  for (const o of OPTIONS) {
    const scenario = byPrefix(results, 'kill -9').find((s) => s.endsWith(`durability ${o.label}`));
    const lost = scenario ? v(results, 'archlab write-back', scenario, 'acked writes lost') : undefined;
    const acked = scenario ? v(results, 'archlab write-back', scenario, 'acked writes') : undefined;
    if (o.mode === 'always') check('0 acked writes lost to kill -9 with the journal, fsync always', lost === undefined ? undefined : lost === 0, `${lost} of ${acked}`);
    else if (lost !== undefined) out.push(`context: kill -9 with durability ${o.label}: ${lost} of ${acked} acked writes lost`);
  }
  return out;
}

export function report(results: Results): string {
  const parts: string[] = [];
  parts.push(
    `Measured by \`npm run bench -- cache${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}. Every row runs the same Zipf-distributed key sequence (s = 1.0 over 100,000 keys, seeded); every value returned is checked, and a wrong one voids the benchmark.`,
  );

  // 1. hit path
  const raw = v(results, 'lru-cache get (max only)', HIT, 'gets');
  const hitRows = results.rows.filter((r) => r.scenario === HIT);
  if (hitRows.length) {
    parts.push('', '**Hit path** (every key warm; sync calls in a compiled loop, median of runs; the ratio is time per get against a raw `lru-cache` get)', '');
    parts.push(
      table(
        ['system', 'gets/s', 'ns per get', 'time vs raw lru-cache get'],
        hitRows.map((r) => [r.system + (r.metric === 'gets (awaited)' ? ' (awaited)' : ''), Math.round(r.value), (1e9 / r.value).toFixed(0), raw ? `${(raw / r.value).toFixed(2)}x` : '-']),
      ),
    );
  }

  const hotScenarioName = results.rows.find((r) => r.scenario.startsWith('hit path, hottest'))?.scenario;
  if (hotScenarioName) {
    const rawHot = v(results, 'lru-cache get (max only)', hotScenarioName, 'gets');
    parts.push('', `**Hit path, ${hotScenarioName.slice('hit path, '.length)}** (the same, with only the most frequent keys stored and read: a working set that stays in CPU caches)`, '');
    parts.push(
      table(
        ['system', 'gets/s', 'ns per get', 'time vs raw lru-cache get'],
        results.rows.filter((r) => r.scenario === hotScenarioName).map((r) => [r.system, Math.round(r.value), (1e9 / r.value).toFixed(0), rawHot ? `${(rawHot / r.value).toFixed(2)}x` : '-']),
      ),
    );
  }

  // 2. get-or-load
  const golSystems = [...new Set(results.rows.filter((r) => r.scenario === GOL_MEM || r.scenario === GOL_TIERED).map((r) => r.system))];
  if (golSystems.length) {
    const am = v(results, 'archlab', GOL_MEM, 'get-or-load');
    const at = v(results, 'archlab', GOL_TIERED, 'get-or-load');
    parts.push('', '**Get-or-load** (hits and misses as the sequence gives them: 10,000 entries in process for 100,000 keys; sequential awaited calls; loader = a Map lookup behind a promise; "archlab is" = archlab ops/s ÷ this system\'s)', '');
    parts.push(
      table(
        ['system', 'memory ops/s', 'archlab is', 'tiered ops/s', 'archlab is', 'loads per call, memory', 'loads per call, tiered'],
        golSystems.map((s) => {
          const m = v(results, s, GOL_MEM, 'get-or-load');
          const t = v(results, s, GOL_TIERED, 'get-or-load');
          return [
            s,
            m === undefined ? '-' : Math.round(m),
            s === 'archlab' ? '-' : ratio(am, m),
            t === undefined ? '-' : Math.round(t),
            s === 'archlab' ? '-' : ratio(at, t),
            cell(v(results, s, GOL_MEM, 'loads per call'), 4),
            cell(v(results, s, GOL_TIERED, 'loads per call'), 4),
          ];
        }),
      ),
    );
  }

  // 3. invalidation
  for (const scenario of byPrefix(results, 'cross-process invalidation')) {
    parts.push('', `**Cross-process invalidation** (${scenario}: time from the parent's invalidate() call to each child's L1 drop)`, '');
    parts.push(table(['metric', 'value'], results.rows.filter((r) => r.scenario === scenario).map((r) => [r.metric, r.unit === 'ms' ? `${r.value.toFixed(2)} ms` : `${int(r.value)} ${r.unit}`])));
  }

  // 4. stampede
  const stampedes = byPrefix(results, '10,000 concurrent gets');
  if (stampedes.length) {
    const systems = [...new Set(results.rows.filter((r) => stampedes.includes(r.scenario)).map((r) => r.system))];
    parts.push('', '**Stampede** (10,000 concurrent get-or-loads of one cold key; the load takes 20 ms)', '');
    parts.push(
      table(
        ['system', ...stampedes.flatMap((s) => [`loads, ${s.endsWith('tiered') ? 'tiered' : 'memory'}`, `ms to serve all, ${s.endsWith('tiered') ? 'tiered' : 'memory'}`])],
        systems.map((sys) => [sys, ...stampedes.flatMap((s) => [int(v(results, sys, s, 'source loads')), cell(v(results, sys, s, 'time to serve all'), 1)])]),
      ),
    );
  }

  // 5. strategies
  const strat = [...new Set(results.rows.filter((r) => r.scenario === STRATEGY_SCENARIO).map((r) => r.system))];
  if (strat.length) {
    parts.push('', `**Per strategy** (${STRATEGY_SCENARIO}: one client, sequential, 10,000 entries in the store; latency in µs)`, '');
    parts.push(
      table(
        ['strategy', 'read p50', 'read p99', 'write p50', 'write p99'],
        strat.map((s) => [s, ...['read p50', 'read p99', 'write p50', 'write p99'].map((m) => cell(v(results, s, STRATEGY_SCENARIO, m), 1))]),
      ),
    );
  }
  const spike = byPrefix(results, 'write spike')[0];
  if (spike) {
    const cap = v(results, 'source (throttled SQLite)', spike, 'capacity');
    const systems = [...new Set(results.rows.filter((r) => r.scenario === spike && r.system.startsWith('archlab')).map((r) => r.system))];
    parts.push('', `**Write spike** (${spike}: the source takes ${cap} calls/s, one at a time; writes offered open loop at 10x that, at most a bounded number in flight)`, '');
    parts.push(
      table(
        ['strategy', 'offered/s', 'acked/s', 'acked / source rate', 'source calls/s', 'source rows/s', 'refused (in-flight cap)', 'drain after (ms)'],
        systems.map((s) => {
          const acked = v(results, s, spike, 'acked writes/s');
          return [
            s,
            cell(v(results, s, spike, 'offered writes/s'), 0),
            cell(acked, 0),
            ratio(acked, cap),
            cell(v(results, s, spike, 'source calls/s'), 1),
            cell(v(results, s, spike, 'source rows/s'), 0),
            int(v(results, s, spike, 'refused (in-flight cap)')),
            cell(v(results, s, spike, 'drain after spike'), 0),
          ];
        }),
      ),
    );
  }

  // 6. kill -9
  const kills = byPrefix(results, 'kill -9');
  if (kills.length) {
    parts.push('', `**Acked writes lost to kill -9** (write-back over SQLite; ${kills[0]!.replace(/, durability.*$/, '')}; then reopen, replay, flush, count)`, '');
    parts.push(
      table(
        ['durability', 'acked writes', 'lost', 'lost fraction', 'loss window (ms)'],
        kills.map((s) => [
          s.replace(/^.*durability /, ''),
          int(v(results, 'archlab write-back', s, 'acked writes')),
          int(v(results, 'archlab write-back', s, 'acked writes lost')),
          cell(v(results, 'archlab write-back', s, 'lost fraction'), 4),
          cell(v(results, 'archlab write-back', s, 'loss window'), 0),
        ]),
      ),
    );
  }

  parts.push('', '**Targets**', '', ...targets(results).map((t) => `- ${t}`));
  const notes = results.notes.filter((n) => !n.startsWith('target '));
  if (notes.length) parts.push('', '**Notes**', '', ...notes.map((n) => `- ${n}`));
  return parts.join('\n');
}
