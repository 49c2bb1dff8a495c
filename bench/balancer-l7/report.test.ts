import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Results, Row } from '../harness.js';
import { ALGO_OPEN_SCENARIO, ALGO_SCENARIO, HALF_SCENARIO, PAIRED_SCENARIO, SCENARIO, SYSTEMS, ZERO_WHEN_ABSENT, flaggedRounds, report, targets } from './report.js';
import { medianRows, parseRoundScenario, perRound, roundDifferences, roundRatios, roundScenario, roundsWon, shown, spreadOf } from './rounds.js';

const RR = 'archlab round-robin';

/** Per-round rows of one metric: values[k-1] is round k's value; undefined = not measured that round. */
function rounds(system: string, scenario: string, metric: string, values: (number | undefined)[], unit = metric === 'req/s' ? 'req/s' : 'ms'): Row[] {
  return values.flatMap((value, i) => (value === undefined ? [] : [{ system, scenario: roundScenario(scenario, i + 1), metric, value, unit }]));
}

/** A run's rows as the bench writes them: the per-round rows, then each scenario's median rows. */
function results(perRoundRows: Row[], quick = false): Results {
  const scenarios = [SCENARIO, PAIRED_SCENARIO, HALF_SCENARIO, ALGO_SCENARIO, ALGO_OPEN_SCENARIO];
  const rows = [...perRoundRows, ...scenarios.flatMap((sc) => medianRows(perRoundRows, sc, ZERO_WHEN_ABSENT))];
  return { bench: 'balancer-l7', date: '2026-11-28T00:00:00.000Z', quick, machine: { cpus: 2, node: 'v20' }, rows, notes: [] };
}

/** The target line whose label starts with `label`. */
function line(r: Results, label: string): string {
  const found = targets(r).filter((t) => t.replace(/^(met|MISSED|not measured): /, '').startsWith(label));
  assert.equal(found.length, 1, `one target "${label}" in ${JSON.stringify(targets(r))}`);
  return found[0]!;
}

test('a round scenario names its scenario and round, and reads back', () => {
  assert.equal(roundScenario(SCENARIO, 2), 'GET 64B, 50 conns #2');
  assert.deepEqual(parseRoundScenario(roundScenario(ALGO_OPEN_SCENARIO, 12)), { scenario: ALGO_OPEN_SCENARIO, round: 12 });
  assert.equal(parseRoundScenario(SCENARIO), undefined);
});

test('medianRows: one median row per system and metric; errors count 0 in rounds without the row', () => {
  const rows = [
    ...rounds('a', SCENARIO, 'req/s', [300, 100, 200]),
    ...rounds('a', SCENARIO, 'errors', [undefined, 7, undefined], 'requests'),
    ...rounds('b', SCENARIO, 'req/s', [10, 40]),
    ...rounds('b', SCENARIO, 'errors', [5, 9], 'requests'),
    { system: 'a', scenario: SCENARIO, metric: 'req/s', value: 1e9, unit: 'req/s' }, // a median row: not a round
    ...rounds('a', HALF_SCENARIO, 'p99', [1, 2, 3]), // another scenario
  ];
  assert.deepEqual(medianRows(rows, SCENARIO, ZERO_WHEN_ABSENT), [
    { system: 'a', scenario: SCENARIO, metric: 'req/s', value: 200, unit: 'req/s' },
    // a's errors: 0, 7, 0 -> median 0 -> no row
    { system: 'b', scenario: SCENARIO, metric: 'req/s', value: 25, unit: 'req/s' },
    { system: 'b', scenario: SCENARIO, metric: 'errors', value: 7, unit: 'requests' },
  ]);
  // Without the zero rule, a's errors would be the median of the one round that had them.
  assert.equal(medianRows(rows, SCENARIO).find((r) => r.system === 'a' && r.metric === 'errors')?.value, 7);
});

test('per-round comparisons pair the same round and leave out rounds where either side is missing', () => {
  const rows = [...rounds('a', SCENARIO, 'req/s', [200, 90, undefined, 400]), ...rounds('b', SCENARIO, 'req/s', [100, 100, 50, 0])];
  // Round 3: a missing; round 4: b is 0 (no ratio).
  assert.deepEqual(roundRatios(rows, SCENARIO, 'req/s', 'a', 'b'), { rounds: [1, 2], values: [2, 0.9], median: 1.45, min: 0.9, max: 2 });
  assert.deepEqual(roundDifferences(rows, SCENARIO, 'req/s', 'a', 'b')?.values, [100, -10, 400]);
  assert.deepEqual([...perRound(rows, 'b', SCENARIO, 'req/s')], [[1, 100], [2, 100], [3, 50], [4, 0]]);
  assert.equal(roundRatios(rows, SCENARIO, 'req/s', 'a', 'nobody'), undefined);
  assert.equal(spreadOf(new Map()), undefined);
});

test('roundsWon and shown compare at the two decimals printed', () => {
  assert.equal(shown(30.996, 2), 31);
  assert.equal(shown(1.994, 2), 1.99);
  const rows = [...rounds('a', ALGO_SCENARIO, 'p99', [30.996, 20, 31, 40]), ...rounds('b', ALGO_SCENARIO, 'p99', [31.004, 31, 30, undefined])];
  assert.deepEqual(roundsWon(rows, ALGO_SCENARIO, 'p99', 'a', 'b'), { won: 1, of: 3 });
});

test('req/s targets are judged on the median of per-round ratios, not on the ratio of median req/s', () => {
  // Per round archlab ÷ http-proxy: 2.1x, 1.9x, 2.2x -> median 2.1x: met.
  const met = results([...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [21000, 9500, 11000]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000, 5000, 5000])]);
  const t = line(met, 'archlab (one process) >= 2x http-proxy');
  assert.match(t, /^met: /);
  assert.match(t, /median 2\.10x over 3 rounds \(2\.10x, 1\.90x, 2\.20x\); median req\/s 11,000 vs 5,000/);

  // 1.9x, 2.2x, 1.8x -> median 1.9x: MISSED, although the median req/s are 11,000 vs 5,000 (2.2x).
  const missed = results([...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [19000, 11000, 9000]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000, 5000, 5000])]);
  assert.match(line(missed, 'archlab (one process) >= 2x http-proxy'), /^MISSED: .*median 1\.90x over 3 rounds \(1\.90x, 2\.20x, 1\.80x\)/);

  // 1.995x shows as 2.00x, and is judged as shown: met, never "MISSED ... 2.00x".
  const edge = results([...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [19950]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000])]);
  assert.match(line(edge, 'archlab (one process) >= 2x http-proxy'), /^met: .*median 2\.00x over 1 round \(2\.00x\)/);
});

test('req/s targets are judged on the paired windows when measured, with the main table shown beside', () => {
  const main = [...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [19000, 11000, 9000]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000, 5000, 5000])];
  // Main table alone: 1.90x, 2.20x, 1.80x -> MISSED. Paired: 2.4x, 1.5x, 2.2x, 2.0x, 2.1x -> median 2.1x: met.
  const paired = [
    ...rounds(SYSTEMS.archlab, PAIRED_SCENARIO, 'req/s', [12000, 7500, 11000, 10000, 10500]),
    ...rounds(SYSTEMS.httpProxy, PAIRED_SCENARIO, 'req/s', [5000, 5000, 5000, 5000, 5000]),
  ];
  const t = line(results([...main, ...paired]), 'archlab (one process) >= 2x http-proxy');
  assert.match(t, /^met: /);
  assert.match(t, /paired windows: median 2\.10x over 5 pairs \(2\.40x, 1\.50x, 2\.20x, 2\.00x, 2\.10x\); median req\/s 10,500 vs 5,000; main table median 1\.90x over 3 rounds/);
  assert.match(line(results(main), 'archlab (one process) >= 2x http-proxy'), /^MISSED: .*\(median 1\.90x over 3 rounds/);
  // Paired windows MISSED although the main table met: the paired ones decide either way.
  const low = [...rounds(SYSTEMS.archlab, PAIRED_SCENARIO, 'req/s', [9000, 9500, 9900]), ...rounds(SYSTEMS.httpProxy, PAIRED_SCENARIO, 'req/s', [5000, 5000, 5000])];
  const highMain = [...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [21000]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000])];
  assert.match(line(results([...highMain, ...low]), 'archlab (one process) >= 2x http-proxy'), /^MISSED: .*\(paired windows: median 1\.90x over 3 pairs/);
  // A peer measured in the main table only: judged there.
  assert.match(line(results([...paired, ...rounds(SYSTEMS.nginx, SCENARIO, 'req/s', [20000]), ...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [11000])]), 'archlab (one process) >= 0.5x nginx'), /^met: .*\(median 0\.55x over 1 round/);
  // The report lists every pair with its spread.
  assert.match(report(results([...main, ...paired])), /Per pair: archlab ÷ http-proxy 2\.40x, 1\.50x, 2\.20x, 2\.00x, 2\.10x \(median 2\.10x, from 1\.50x to 2\.40x\)/);
});

test('paired windows are flagged for errors against their own duration', () => {
  // 3 s x 10,000 req/s = 30,000 requests; 0.1% = 30: 40 errors are flagged (against the main table's 6 s they would not be).
  const rows = [...rounds(SYSTEMS.archlab, PAIRED_SCENARIO, 'req/s', [10000, 10000]), ...rounds(SYSTEMS.archlab, PAIRED_SCENARIO, 'errors', [40, 20], 'requests')];
  assert.deepEqual(flaggedRounds(results(rows), SYSTEMS.archlab, PAIRED_SCENARIO), [1]);
});

test('added p99 is the median of per-round differences, with nginx and haproxy as controls', () => {
  // Per round: archlab − direct = 0.5, 25, 0.8 -> median 0.8 ms: met. median(p99) − median(direct)
  // would be 12 − 9.5 = 2.5 ms: MISSED.
  const rows = [
    ...rounds(SYSTEMS.direct, HALF_SCENARIO, 'p99', [9.5, 5, 11.2]),
    ...rounds(SYSTEMS.archlab, HALF_SCENARIO, 'p99', [10, 30, 12]),
    ...rounds(SYSTEMS.archlab, HALF_SCENARIO, 'rate', [6600, 6600, 6600], 'req/s'),
    ...rounds(SYSTEMS.nginx, HALF_SCENARIO, 'p99', [12.5, 8, 14.2]),
  ];
  const t = line(results(rows), 'added p99 latency at half of max load');
  assert.match(t, /^met: /);
  assert.match(t, /archlab median \+0\.80 ms over 3 rounds \(\+0\.50, \+25\.00, \+0\.80 ms\)/);
  assert.match(t, /median p99 12\.00 ms vs direct 9\.50 ms at 6,600 req\/s/);
  assert.match(t, /nginx: median \+3\.00 ms over 3 rounds \(\+3\.00, \+3\.00, \+3\.00 ms\)/);
  assert.match(t, /haproxy: not measured/);

  // Over 1 ms in the median round: MISSED.
  const worse = [...rounds(SYSTEMS.direct, HALF_SCENARIO, 'p99', [9, 9, 9]), ...rounds(SYSTEMS.archlab, HALF_SCENARIO, 'p99', [9.5, 10.2, 30])];
  assert.match(line(results(worse), 'added p99 latency'), /^MISSED: added p99 .*\(archlab median \+1\.20 ms over 3 rounds \(\+0\.50, \+1\.20, \+21\.00 ms\); median p99 10\.20 ms vs direct 9\.00 ms;/);
});

test('algorithm p99: equal medians are MISSED, never met; the rounds won are printed', () => {
  const rows = [
    ...rounds(RR, ALGO_SCENARIO, 'p99', [31.0, 31.0, 31.0]),
    ...rounds('archlab least-connections', ALGO_SCENARIO, 'p99', [31.0, 31.0, 31.0]),
    // Lower unrounded, equal as printed: 30.996 vs 31.00.
    ...rounds('archlab p2c', ALGO_SCENARIO, 'p99', [30.996, 30.996, 30.996]),
    // Lower in two rounds of three, and in the median.
    ...rounds('archlab peak-ewma', ALGO_SCENARIO, 'p99', [22, 35, 21.5]),
  ];
  const r = results(rows);
  assert.match(line(r, 'least-connections p99 < round-robin p99 on backends of 1/5/20 ms'), /^MISSED: .*median p99 31\.00 ms vs 31\.00 ms; won 0 of 3 rounds/);
  assert.match(line(r, 'p2c p99 < round-robin p99 on backends of 1/5/20 ms'), /^MISSED: .*median p99 31\.00 ms vs 31\.00 ms; won 0 of 3 rounds/);
  const ewma = line(r, 'peak-ewma p99 < round-robin p99 on backends of 1/5/20 ms');
  assert.match(ewma, /^met: .*median p99 22\.00 ms vs 31\.00 ms; won 2 of 3 rounds \(22\.00 vs 31\.00, 35\.00 vs 31\.00, 21\.50 vs 31\.00 ms\)/);
  // No fixed-rate rows, no fixed-rate targets.
  assert.equal(targets(r).filter((t) => t.includes('fixed')).length, 0);

  // At a fixed rate: judged the same way.
  const open = results([
    ...rounds(RR, ALGO_OPEN_SCENARIO, 'p99', [26, 22, 24]),
    ...rounds(RR, ALGO_OPEN_SCENARIO, 'rate', [1000, 1000, 1000], 'req/s'),
    ...rounds('archlab peak-ewma', ALGO_OPEN_SCENARIO, 'p99', [21, 23, 23.99]),
  ]);
  assert.match(line(open, 'peak-ewma p99 < round-robin p99 on backends of 1/5/20 ms at a fixed 1,000 req/s'), /^met: .*median p99 23\.00 ms vs 24\.00 ms; won 2 of 3 rounds/);
  assert.match(line(open, 'p2c p99 < round-robin p99 on backends of 1/5/20 ms at a fixed 1,000 req/s'), /^not measured: .*archlab p2c not measured/);
});

test("algorithm verdicts show the peers' counterparts against their own round robin, when measured", () => {
  const rows = [
    ...rounds(RR, ALGO_SCENARIO, 'p99', [25, 25, 25]),
    ...rounds('archlab least-connections', ALGO_SCENARIO, 'p99', [26, 26, 26]),
    ...rounds('archlab p2c', ALGO_SCENARIO, 'p99', [24, 24, 24]),
    ...rounds('nginx round-robin', ALGO_SCENARIO, 'p99', [21.9, 21.9, 21.9]),
    ...rounds('nginx least_conn', ALGO_SCENARIO, 'p99', [21.8, 21.8, 21.8]),
    ...rounds('haproxy roundrobin', ALGO_SCENARIO, 'p99', [21.7, 21.7, 21.7]),
    ...rounds('haproxy leastconn', ALGO_SCENARIO, 'p99', [22.3, 22.3, 22.3]),
  ];
  const r = results(rows);
  assert.match(
    line(r, 'least-connections p99 < round-robin p99 on backends of 1/5/20 ms'),
    /^MISSED: .*won 0 of 3 rounds.*; the same rounds through nginx least_conn 21\.80 vs round-robin 21\.90 ms, haproxy leastconn 22\.30 vs roundrobin 21\.70 ms\)$/,
  );
  // p2c's counterparts (nginx random two least_conn, haproxy random(2)) were not measured: no control.
  assert.doesNotMatch(line(r, 'p2c p99 < round-robin p99 on backends of 1/5/20 ms'), /the same rounds through/);
});

test('missing systems are "not measured", never met or MISSED', () => {
  const onlyArchlab = results([...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [13000, 12000])]);
  const t = targets(onlyArchlab);
  assert.match(line(onlyArchlab, 'archlab (one process) >= 2x http-proxy'), /^not measured: .*\(http-proxy not measured\)/);
  assert.match(line(onlyArchlab, 'archlab (one process) >= 0.5x nginx'), /^not measured: .*nginx \(1 worker\) not measured/);
  assert.match(line(onlyArchlab, 'added p99 latency'), /^not measured: .*archlab not measured/);
  assert.match(line(onlyArchlab, 'p2c p99 < round-robin p99 on backends of 1/5/20 ms'), /^not measured: /);
  assert.equal(t.filter((x) => /^(met|MISSED)/.test(x)).length, 0);

  const noArchlab = results([...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [9000])]);
  assert.match(line(noArchlab, 'archlab (one process) >= 2x http-proxy'), /^not measured: .*\(archlab not measured\)/);

  // Both measured, never in the same round: nothing to compare.
  const apart = results([...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [20000, undefined]), ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [undefined, 9000])]);
  assert.match(line(apart, 'archlab (one process) >= 2x http-proxy'), /^not measured: .*never measured in the same round/);
});

test('a median row is unreliable when any of its rounds was disturbed or had errors', () => {
  const rows = [
    ...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [10000, 10000, 10000]),
    ...rounds(SYSTEMS.archlab, SCENARIO, 'other CPU', [0.02, 0.3, 0.01], 'share of machine'),
    ...rounds(SYSTEMS.nginx, SCENARIO, 'req/s', [20000, 20000, 20000]),
    ...rounds(SYSTEMS.nginx, SCENARIO, 'other CPU', [0, 0, 0], 'share of machine'),
    // 60 errors in 6 s x 20,000 req/s = 0.05%: under 0.1%, not flagged; 200 = 0.17%: flagged.
    ...rounds(SYSTEMS.nginx, SCENARIO, 'errors', [60, undefined, 200], 'requests'),
    ...rounds(SYSTEMS.haproxy, SCENARIO, 'req/s', [20000, 20000, 20000]),
    ...rounds(SYSTEMS.haproxy, SCENARIO, 'other CPU', [0.2, 0.05, 0.3], 'share of machine'),
    ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [9000, 9000, 9000]),
    ...rounds(SYSTEMS.httpProxy, SCENARIO, 'other CPU', [0.1, 0.05, 0], 'share of machine'),
  ];
  const r = results(rows);
  // The median other CPU (0.02) is under the limit: only the per-round rows tell.
  assert.deepEqual(flaggedRounds(r, SYSTEMS.archlab, SCENARIO), [2]);
  assert.deepEqual(flaggedRounds(r, SYSTEMS.nginx, SCENARIO), [3]);
  const md = report(r);
  assert.match(md, /\| archlab \(unreliable in round 2, see notes\) \| 10,000 \|/);
  assert.match(md, /\| nginx \(1 worker\) \(unreliable in round 3, see notes\) \| 20,000 \|/);
  assert.match(md, /\| haproxy \(1 thread\) \(unreliable in rounds 1, 3, see notes\) \| 20,000 \|/);
  // At the limit (10%) is not over it.
  assert.deepEqual(flaggedRounds(r, SYSTEMS.httpProxy, SCENARIO), []);
  assert.match(md, /\| http-proxy \| 9,000 \|/);
});

test('the report shows medians, per-round ratios and per-round added p99', () => {
  const rows = [
    ...rounds(SYSTEMS.direct, SCENARIO, 'req/s', [30000, 20000, 25000]),
    ...rounds(SYSTEMS.archlab, SCENARIO, 'req/s', [19000, 11000, 9000]),
    ...rounds(SYSTEMS.httpProxy, SCENARIO, 'req/s', [10000, 5000, 5000]),
    ...rounds(SYSTEMS.direct, HALF_SCENARIO, 'p99', [9.5, 5, 11.2]),
    ...rounds(SYSTEMS.archlab, HALF_SCENARIO, 'p99', [10, 30, 12]),
    ...rounds(SYSTEMS.archlab, HALF_SCENARIO, 'rate', [5500, 5500, 5500], 'req/s'),
  ];
  const md = report(results(rows));
  assert.match(md, /Measured in 3 rounds: each round measures every system of a table once, back to back/);
  // vs http-proxy: the median of 1.90x, 2.20x, 1.80x, not 11,000 ÷ 5,000.
  assert.match(md, /\| archlab \| 11,000 \| - \| - \| - \| 1\.90x \|/);
  assert.match(md, /archlab ÷ http-proxy 1\.90x, 2\.20x, 1\.80x \(median 1\.90x\)/);
  assert.match(md, /\| archlab \| 5,500 \| - \| 12\.0 \| 0\.80 \| 0\.50, 25\.0, 0\.80 \|/);
});
