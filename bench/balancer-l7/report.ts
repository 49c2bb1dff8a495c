/**
 * The L7 bench's labels, settings, targets and docs report (bench/balancer-l7.ts measures).
 *
 * Every number is measured in rounds (rounds.ts): a row of scenario `${scenario} #k` holds round
 * k's raw value and the row of the plain scenario the median over the rounds. The tables show the
 * medians; every comparison between systems (a req/s ratio, an added p99) is made within a round,
 * and the targets are judged on the median of those per-round comparisons, the algorithms' p99 on
 * the median p99s, compared at the precision printed.
 */
import { find, format, table, type Results } from '../harness.js';
import { perRound, roundDifferences, roundRatios, roundsOf, roundsWon, shown, spreadOver, type Spread } from './rounds.js';

export const CONNECTIONS = 50;
export const SCENARIO = `GET 64B, ${CONNECTIONS} conns`;
export const HALF_SCENARIO = 'GET 64B, half load';
/**
 * archlab and the peers its req/s targets name, in short windows back to back (order reversed
 * every other round), many rounds: the targets' ratios are judged here. In the main table a peer
 * runs up to 30 s after archlab, and 3 rounds are too few on a core whose speed moves 2x within
 * seconds (bench/balancer-l7/vm-speed.ts measures it).
 */
export const PAIRED_SCENARIO = 'GET 64B, paired windows';
export const ALGO_SCENARIO = 'three backends 1/5/20 ms';
/** The same backends at a fixed rate well under every balancer's capacity (full runs). */
export const ALGO_OPEN_SCENARIO = 'three backends 1/5/20 ms, fixed rate';

/** The systems of the main table, in the order measured and shown. */
export const SYSTEMS = {
  direct: 'direct',
  archlab: 'archlab',
  cluster: 'archlab cluster x2',
  nginx: 'nginx (1 worker)',
  haproxy: 'haproxy (1 thread)',
  httpProxy: 'http-proxy',
  replyFrom: '@fastify/reply-from',
} as const;

/** The systems of the paired windows (PAIRED_SCENARIO), in the order of odd rounds. */
export const PAIRED_SYSTEMS: readonly string[] = [SYSTEMS.archlab, SYSTEMS.httpProxy, SYSTEMS.replyFrom, SYSTEMS.nginx];

/** The system of the machine's own stall rows (hiccups.ts), in the half-load scenario. */
export const MACHINE = 'machine';

/** The peers' counterparts of archlab's algorithms, each with its own round robin: [algorithm, round robin] systems. */
export const PEER_COUNTERPARTS: Readonly<Record<string, readonly (readonly [string, string])[]>> = {
  'least-connections': [
    ['nginx least_conn', 'nginx round-robin'],
    ['haproxy leastconn', 'haproxy roundrobin'],
  ],
  p2c: [
    ['nginx random two least_conn', 'nginx round-robin'],
    ['haproxy random(2)', 'haproxy roundrobin'],
  ],
};

/** A share of requests with errors above this voids a run's numbers (they are kept, flagged). */
export const MAX_ERROR_SHARE = 0.001;
/** Share of the machine's CPUs that processes outside the bench may take before a run is flagged (and, in full runs, repeated). */
export const MAX_OTHER_CPU = 0.1;
/** Metrics written only when non-zero: a round without the row counts as 0 in the median. */
export const ZERO_WHEN_ABSENT = ['errors'] as const;

export interface Settings {
  /** Rounds: each measures every system of a table once, back to back, in the same order. */
  rounds: number;
  /** wrk warm-up before each system's first round only (later rounds find it warm), whole seconds (wrk takes no fractions). */
  warmupS: number;
  /** Measured seconds per system per round in the main table. */
  durationS: number;
  /** Measured seconds per algorithm per round in the three-backend table. */
  algoDurationS: number;
  /** Longest wait for other processes to leave the CPUs alone before each measurement (0: don't wait). */
  quietWaitS: number;
  /** Timed runs per measurement at most: a run disturbed by other processes is repeated. */
  attempts: number;
  /** Total seconds the whole bench may spend waiting for quiet and repeating disturbed runs. */
  extraBudgetS: number;
  threads: number;
  /** Fixed-rate runs (half load): the generator's warm-up in every round (it is a new process each time), and the measured seconds. */
  fixedWarmupS: number;
  fixedDurationS: number;
  /** Open-loop rate for the algorithm table at a fixed rate, req/s; 0 leaves that table out. */
  algoOpenRate: number;
  algoOpenWarmupS: number;
  algoOpenDurationS: number;
  /** The machine's stalls, measured before each round of half-load runs, in ms. */
  hiccupsMs: number;
  /** Rounds of the paired windows (PAIRED_SCENARIO) and the measured seconds of each window. */
  pairedRounds: number;
  pairedDurationS: number;
}

export const QUICK: Settings = {
  rounds: 1, warmupS: 1, durationS: 3, algoDurationS: 2, quietWaitS: 0, attempts: 1, extraBudgetS: 0, threads: 1,
  fixedWarmupS: 0.5, fixedDurationS: 2, algoOpenRate: 0, algoOpenWarmupS: 0, algoOpenDurationS: 0, hiccupsMs: 3000,
  pairedRounds: 2, pairedDurationS: 1,
};

/**
 * About 15 minutes of measuring, 17.5 at most:
 *   main table   7 systems x 6 s x 3 rounds + 7 x 2 s warm-up (round 1)              = 140 s
 *   paired       9 rounds x 4 systems x (3 s + ~0.3 s between)                        = 119 s
 *   half load    3 rounds x (3 s stalls + up to 6 systems x (2 + 6 s + ~1 s start))  = 171 s
 *   algorithms   11 systems x 5 s x 3 rounds + 11 x 2 s warm-up (round 1)            = 187 s
 *   fixed rate   3 rounds x 11 systems x (2 + 5 s + ~1 s start)                       = 264 s
 * = 881 s, plus ~15 s of start-up and checks, plus at most extraBudgetS (150 s) of waiting for
 * quiet and repeating disturbed runs.
 */
export const FULL: Settings = {
  rounds: 3, warmupS: 2, durationS: 6, algoDurationS: 5, quietWaitS: 10, attempts: 2, extraBudgetS: 150, threads: 1,
  fixedWarmupS: 2, fixedDurationS: 6, algoOpenRate: 1000, algoOpenWarmupS: 2, algoOpenDurationS: 5, hiccupsMs: 3000,
  pairedRounds: 9, pairedDurationS: 3,
};

export function settingsOf(results: Pick<Results, 'quick'>): Settings {
  return results.quick ? QUICK : FULL;
}

/** The median row of (system, scenario, metric). */
function v(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

/**
 * Rounds of (system, scenario) that were unreliable: more errors than MAX_ERROR_SHARE of the
 * requests, or processes outside the bench took more than MAX_OTHER_CPU of the CPUs. A median row
 * is marked unreliable when any of its rounds was.
 */
export function flaggedRounds(results: Results, system: string, scenario: string): number[] {
  const settings = settingsOf(results);
  const seconds = scenario === ALGO_SCENARIO ? settings.algoDurationS : scenario === PAIRED_SCENARIO ? settings.pairedDurationS : settings.durationS;
  const errors = perRound(results.rows, system, scenario, 'errors');
  const rps = perRound(results.rows, system, scenario, 'req/s');
  const other = perRound(results.rows, system, scenario, 'other CPU');
  return roundsOf(results.rows, scenario).filter(
    (k) => (errors.get(k) ?? 0) > Math.max(1, (rps.get(k) ?? 0) * seconds * MAX_ERROR_SHARE) || (other.get(k) ?? 0) > MAX_OTHER_CPU,
  );
}

const x2 = (r: number): string => `${r.toFixed(2)}x`;
const ms2 = (x: number): string => x.toFixed(2);
const signed = (x: number): string => (x < 0 ? x.toFixed(2) : `+${x.toFixed(2)}`);
/** "1 round", "3 pairs" */
const count = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;
const rounds = (n: number): string => count(n, 'round');
/** "median 1.52x over 3 rounds (1.41x, 1.52x, 1.66x)" */
const ratioSpread = (s: Spread, unit = 'round'): string => `median ${x2(s.median)} over ${count(s.values.length, unit)} (${s.values.map(x2).join(', ')})`;
/** "median +15.50 ms over 3 rounds (+14.00, +15.50, +17.10 ms)" */
const addedSpread = (s: Spread): string => `median ${signed(s.median)} ms over ${rounds(s.values.length)} (${s.values.map(signed).join(', ')} ms)`;

export function targets(results: Results): string[] {
  const rows = results.rows;
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  const measured = (system: string, scenario: string, metric: string): Spread | undefined => spreadOver(rows, system, scenario, metric);
  const missing = (a: string, b: string, scenario: string, metric: string): string =>
    !measured(a, scenario, metric) ? `${a} not measured` : !measured(b, scenario, metric) ? `${b} not measured` : `${a} and ${b} never measured in the same round`;

  // req/s: archlab ÷ the peer within each round, judged on the median of those ratios: of the
  // paired windows when they were measured, else of the main table's rounds (which are shown too).
  const ratio = (peer: string, factor: number, label: string): void => {
    const pairs = roundRatios(rows, PAIRED_SCENARIO, 'req/s', SYSTEMS.archlab, peer);
    const main = roundRatios(rows, SCENARIO, 'req/s', SYSTEMS.archlab, peer);
    const judged = pairs ?? main;
    const scenario = pairs ? PAIRED_SCENARIO : SCENARIO;
    if (!judged) {
      check(label, undefined, missing(SYSTEMS.archlab, peer, SCENARIO, 'req/s'));
      return;
    }
    const ours = measured(SYSTEMS.archlab, scenario, 'req/s')!.median;
    const theirs = measured(peer, scenario, 'req/s')!.median;
    const where = pairs ? `paired windows: ${ratioSpread(pairs, 'pair')}` : ratioSpread(judged);
    check(label, shown(judged.median, 2) >= factor, `${where}; median req/s ${format(ours)} vs ${format(theirs)}${pairs && main ? `; main table ${ratioSpread(main)}` : ''}`);
  };
  ratio(SYSTEMS.httpProxy, 2, 'archlab (one process) >= 2x http-proxy req/s');
  ratio(SYSTEMS.replyFrom, 1, 'archlab (one process) >= @fastify/reply-from req/s');
  ratio(SYSTEMS.nginx, 0.5, 'archlab (one process) >= 0.5x nginx with one worker req/s');

  // Added p99 at half load: archlab's p99 − direct's p99 within each round, judged on the median;
  // nginx and HAProxy the same way, as a control for what the machine allows.
  const addedLabel = 'added p99 latency at half of max load <= 1 ms over direct';
  const added = roundDifferences(rows, HALF_SCENARIO, 'p99', SYSTEMS.archlab, SYSTEMS.direct);
  if (!added) {
    check(addedLabel, undefined, missing(SYSTEMS.archlab, SYSTEMS.direct, HALF_SCENARIO, 'p99'));
  } else {
    const control = [
      ['nginx', SYSTEMS.nginx],
      ['haproxy', SYSTEMS.haproxy],
    ].map(([name, system]) => {
      const d = roundDifferences(rows, HALF_SCENARIO, 'p99', system!, SYSTEMS.direct);
      return `${name}: ${d ? addedSpread(d) : 'not measured'}`;
    });
    const rate = measured(SYSTEMS.archlab, HALF_SCENARIO, 'rate')?.median;
    check(
      addedLabel,
      shown(added.median, 2) <= 1,
      `archlab ${addedSpread(added)}; median p99 ${ms2(measured(SYSTEMS.archlab, HALF_SCENARIO, 'p99')!.median)} ms vs direct ${ms2(measured(SYSTEMS.direct, HALF_SCENARIO, 'p99')!.median)} ms${rate === undefined ? '' : ` at ${format(rate)} req/s`}; the same rounds through ${control.join('; ')}`,
    );
  }

  // Algorithms: the median p99s compared at the precision printed, and the rounds each won; the
  // peers' own counterparts against their round robin in the same rounds, as a control for what
  // the scenario lets any balancer show.
  const rr = 'archlab round-robin';
  const controlsFor = (a: string, scenario: string): string => {
    const pairs = PEER_COUNTERPARTS[a] ?? [];
    const shownPairs = pairs.flatMap(([alg, base]) => {
      const p = measured(alg, scenario, 'p99');
      const q = measured(base, scenario, 'p99');
      return p && q ? [`${alg} ${ms2(p.median)} vs ${base.replace(/^\S+ /, '')} ${ms2(q.median)} ms`] : [];
    });
    return shownPairs.length ? `; the same rounds through ${shownPairs.join(', ')}` : '';
  };
  const algo = (scenario: string, label: (a: string) => string): void => {
    for (const a of ['least-connections', 'p2c', 'peak-ewma']) {
      const system = `archlab ${a}`;
      const p = measured(system, scenario, 'p99');
      const q = measured(rr, scenario, 'p99');
      if (!p || !q) {
        check(label(a), undefined, missing(system, rr, scenario, 'p99'));
        continue;
      }
      const w = roundsWon(rows, scenario, 'p99', system, rr);
      const ours = perRound(rows, system, scenario, 'p99');
      const theirs = perRound(rows, rr, scenario, 'p99');
      const pairs = [...ours].filter(([k]) => theirs.has(k)).map(([k, x]) => `${ms2(x)} vs ${ms2(theirs.get(k)!)}`);
      check(
        label(a),
        shown(p.median, 2) < shown(q.median, 2),
        `median p99 ${ms2(p.median)} ms vs ${ms2(q.median)} ms; won ${w.won} of ${rounds(w.of)}${pairs.length > 1 ? ` (${pairs.join(', ')} ms)` : ''}${controlsFor(a, scenario)}`,
      );
    }
  };
  algo(ALGO_SCENARIO, (a) => `${a} p99 < round-robin p99 on backends of 1/5/20 ms`);
  if (measured(rr, ALGO_OPEN_SCENARIO, 'p99')) {
    const rate = measured(rr, ALGO_OPEN_SCENARIO, 'rate')?.median ?? 0;
    algo(ALGO_OPEN_SCENARIO, (a) => `${a} p99 < round-robin p99 on backends of 1/5/20 ms at a fixed ${format(rate)} req/s`);
  }
  return out;
}

export function report(results: Results): string {
  const rows = results.rows;
  const ms = (x: number | undefined): string => (x === undefined ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1));
  const rps = (system: string, scenario: string): number | undefined => v(results, system, scenario, 'req/s');
  /** Median over the rounds of `system` ÷ `peer` req/s within each round. */
  const x = (system: string, peer: string): string => {
    const s = roundRatios(rows, SCENARIO, 'req/s', system, peer);
    return s ? x2(s.median) : '-';
  };
  const perRoundMs = (system: string, scenario: string, metric: string): string => {
    const s = spreadOver(rows, system, scenario, metric);
    return s ? s.values.map(ms).join(', ') : '-';
  };
  const mark = (system: string, scenario: string): string => {
    const bad = flaggedRounds(results, system, scenario);
    if (!bad.length) return '';
    return roundsOf(rows, scenario).length > 1 ? ` (unreliable in round${bad.length > 1 ? 's' : ''} ${bad.join(', ')}, see notes)` : ' (unreliable, see notes)';
  };
  const mainSystems = Object.values(SYSTEMS).filter((s) => rps(s, SCENARIO) !== undefined);
  const throughput = table(
    ['system', 'req/s', 'p50 ms', 'p99 ms', 'vs nginx', 'vs http-proxy', 'CPU ms per 1k req'],
    mainSystems.map((s) => [
      s + mark(s, SCENARIO),
      Math.round(rps(s, SCENARIO) ?? 0),
      ms(v(results, s, SCENARIO, 'p50')),
      ms(v(results, s, SCENARIO, 'p99')),
      s === SYSTEMS.direct ? '-' : x(s, SYSTEMS.nginx),
      s === SYSTEMS.direct ? '-' : x(s, SYSTEMS.httpProxy),
      ms(v(results, s, SCENARIO, 'CPU per 1k req')) + (s === SYSTEMS.direct ? ' (backend)' : ''),
    ]),
  );
  /** "archlab ÷ <peer> <each round's ratio>, <summary>" for each req/s target's peer measured in `scenario`. */
  const peerRatios = (scenario: string, summary: (s: Spread) => string): string[] =>
    [SYSTEMS.httpProxy, SYSTEMS.replyFrom, SYSTEMS.nginx].flatMap((peer) => {
      const s = roundRatios(rows, scenario, 'req/s', SYSTEMS.archlab, peer);
      return s ? [`archlab ÷ ${peer} ${s.values.map(x2).join(', ')}${summary(s)}`] : [];
    });
  const perRoundRatios = peerRatios(SCENARIO, (s) => (s.values.length > 1 ? ` (median ${x2(s.median)})` : ''));
  const pairedRatios = peerRatios(PAIRED_SCENARIO, (s) => ` (median ${x2(s.median)}, from ${x2(s.min)} to ${x2(s.max)})`);
  const pairedSystems = PAIRED_SYSTEMS.filter((sys) => rps(sys, PAIRED_SCENARIO) !== undefined);
  const pairedN = roundsOf(rows, PAIRED_SCENARIO).length;
  const rpsRounds = mainSystems.flatMap((s) => {
    const sp = spreadOver(rows, s, SCENARIO, 'req/s');
    return sp ? [`${s} ${sp.values.map((r) => format(r)).join(', ')}`] : [];
  });

  const halfSystems = Object.values(SYSTEMS).filter((s) => v(results, s, HALF_SCENARIO, 'p99') !== undefined);
  const half = table(
    ['system', 'rate req/s', 'p50 ms', 'p99 ms', 'added p99 ms', 'added p99 per round ms', 'its core busy, per round'],
    halfSystems.map((s) => {
      const added = s === SYSTEMS.direct ? undefined : roundDifferences(rows, HALF_SCENARIO, 'p99', s, SYSTEMS.direct);
      return [
        s + mark(s, HALF_SCENARIO),
        Math.round(v(results, s, HALF_SCENARIO, 'rate') ?? 0),
        ms(v(results, s, HALF_SCENARIO, 'p50')),
        ms(v(results, s, HALF_SCENARIO, 'p99')),
        added ? ms(added.median) : '-',
        added ? added.values.map(ms).join(', ') : '-',
        spreadOver(rows, s, HALF_SCENARIO, 'core use')?.values.map((x) => `${Math.round(x * 100)}%`).join(', ') ?? '-',
      ];
    }),
  );

  const systemsOf = (scenario: string, metric: string): string[] => [...new Set(rows.filter((r) => r.scenario === scenario && r.metric === metric).map((r) => r.system))];
  const algoSystems = systemsOf(ALGO_SCENARIO, 'req/s');
  const pct = (f: number | undefined): string => (f === undefined ? '-' : `${(f * 100).toFixed(1)}%`);
  /** The cells both algorithm tables share: latency, p99 per round, and each backend's share. */
  const algoCells = (s: string, scenario: string): string[] => [
    ms(v(results, s, scenario, 'p50')),
    ms(v(results, s, scenario, 'p90')),
    ms(v(results, s, scenario, 'p99')),
    perRoundMs(s, scenario, 'p99'),
    ...(['fast', 'medium', 'slow'] as const).map((n) => pct(v(results, s, scenario, `share ${n}`))),
  ];
  const algos = table(
    ['system', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99 per round ms', 'to fast (1 ms)', 'to medium (5 ms)', 'to slow (20 ms)'],
    algoSystems.map((s) => [s + mark(s, ALGO_SCENARIO), Math.round(rps(s, ALGO_SCENARIO) ?? 0), ...algoCells(s, ALGO_SCENARIO)]),
  );
  const openSystems = systemsOf(ALGO_OPEN_SCENARIO, 'p99');
  const openRate = openSystems[0] === undefined ? 0 : (v(results, openSystems[0], ALGO_OPEN_SCENARIO, 'rate') ?? 0);
  const openTable = table(
    ['system', 'p50 ms', 'p90 ms', 'p99 ms', 'p99 per round ms', 'to fast (1 ms)', 'to medium (5 ms)', 'to slow (20 ms)'],
    openSystems.map((s) => [s + mark(s, ALGO_OPEN_SCENARIO), ...algoCells(s, ALGO_OPEN_SCENARIO)]),
  );

  const settings = settingsOf(results);
  const r = Math.max(1, roundsOf(rows, SCENARIO).length);
  const notes = results.notes.filter((n) => !n.startsWith('target '));
  return [
    `Measured by \`npm run bench -- balancer-l7${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}, loopback. ` +
      `One node:http backend answering 64 bytes; wrk 4.1, ${CONNECTIONS} connections, one thread, ${settings.warmupS} s warm-up (first round only) then ${settings.durationS} s measured per system per round (${settings.algoDurationS} s per algorithm). ` +
      `Measured in ${rounds(r)}: each round measures every system of a table once, back to back in the same order, so that systems compared with each other ran in the same minute of a machine whose speed drifts; the tables show each number's median over the rounds, and every comparison (the "vs" columns, added p99, the targets' ratios) is made within a round and summarised by the median of the per-round figures. ` +
      'Every system runs in its own process group; the load generator, the backend and the system under test share the same cores, so absolute numbers are lower than on separate machines and the ratios are what carry over. ' +
      `A row marked unreliable had, in at least one round, processes outside the bench taking more than ${pct(MAX_OTHER_CPU)} of the CPUs (from /proc; the JSON has it for every row as "other CPU") or errors in more than ${pct(MAX_ERROR_SHARE)} of its requests. ` +
      'The JSON holds each round\u2019s raw numbers as rows of scenario "<scenario> #<round>" beside the median rows.',
    '',
    `**Throughput and latency** (${SCENARIO}, closed loop; median of ${rounds(r)})`,
    '',
    throughput,
    '',
    ...(perRoundRatios.length ? [`Per round, req/s ratios: ${perRoundRatios.join('; ')}. Req/s per round: ${rpsRounds.join('; ')}.`, ''] : []),
    ...(pairedRatios.length
      ? [
          `**Paired windows** (the req/s targets are judged here): ${pairedSystems.join(', ')}, ${settings.pairedDurationS} s each, back to back, in ${rounds(pairedN)} whose order reverses every other round, so each ratio compares windows seconds apart. Per pair: ${pairedRatios.join('; ')}.`,
          '',
        ]
      : []),
    `**Added latency at half load** (open loop at a fixed rate, half of archlab's median maximum above, for ${settings.fixedDurationS} s after ${settings.fixedWarmupS} s warm-up in each round; requests go out on schedule whether or not earlier ones were answered, over up to 64 keep-alive connections; latency from the moment each is issued; added p99 = the system's p99 − direct's p99 of the same round, median over the rounds; "its core busy" = the system's CPU over the run, generator start-up and warm-up included, as a share of one core: how far from half of its capacity it really ran that minute)`,
    '',
    halfSystems.length ? half : '_not measured_',
    '',
    `**Picking algorithms** (${ALGO_SCENARIO}: three backends that answer after a fixed 1, 5 and 20 ms, ${CONNECTIONS} connections, closed loop, median of ${rounds(r)}. ` +
      'A picker that favours the fast backend serves more requests per second until the balancer\u2019s CPU is the limit; p99 stays near the slow backend\u2019s 20 ms as long as it gets more than 1% of requests)',
    '',
    algoSystems.length ? algos : '_not measured_',
    '',
    ...(openSystems.length
      ? [
          `**Picking algorithms at a fixed ${format(openRate)} req/s** (the same backends, open loop, far under every balancer's capacity, ${settings.algoOpenDurationS} s after ${settings.algoOpenWarmupS} s warm-up in each round: latency here is the backends' and the picking's, not queueing in a saturated balancer)`,
          '',
          openTable,
          '',
        ]
      : []),
    '**Targets** (req/s: median of the per-pair ratios of the paired windows, or of the main table\u2019s per-round ratios when those were not measured; added p99: median of the per-round differences; algorithms: median p99s, compared at the two decimals printed, and the rounds each won)',
    '',
    ...targets(results).map((t) => `- ${t}`),
    ...(notes.length ? ['', '**Notes**', '', ...notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
}
