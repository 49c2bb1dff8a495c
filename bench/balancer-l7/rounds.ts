/**
 * The arithmetic of the L7 bench's rounds, pure (rows in, numbers out).
 *
 * On a VM whose speed swings 2x from one minute to the next, two systems measured minutes apart
 * cannot be compared. So the bench measures in rounds: round k measures every system of a table
 * once, back to back in the same order, and writes each number as a row of scenario
 * `${scenario} #k`. Systems are compared within a round (a ratio, a difference) and a target is
 * judged on the median of those per-round comparisons, not on a ratio of medians. The row of the
 * plain scenario (no `#k`) holds the median over the rounds, for the docs tables and other readers.
 */
import { median, type Row } from '../harness.js';

/** The scenario of round `round` (1-based) of `scenario`. */
export function roundScenario(scenario: string, round: number): string {
  return `${scenario} #${round}`;
}

const ROUND = /^(.*) #(\d+)$/;

/** The plain scenario and round of a per-round scenario; undefined for any other scenario. */
export function parseRoundScenario(scenario: string): { scenario: string; round: number } | undefined {
  const m = ROUND.exec(scenario);
  return m ? { scenario: m[1]!, round: Number(m[2]) } : undefined;
}

/** One (system, scenario, metric)'s value in each round that measured it, by round number. */
export function perRound(rows: readonly Row[], system: string, scenario: string, metric: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of rows) {
    if (r.system !== system || r.metric !== metric) continue;
    const sc = parseRoundScenario(r.scenario);
    if (sc && sc.scenario === scenario) out.set(sc.round, r.value);
  }
  return out;
}

/** The rounds of `scenario` that have any row, in order. */
export function roundsOf(rows: readonly Row[], scenario: string): number[] {
  const rounds = new Set<number>();
  for (const r of rows) {
    const sc = parseRoundScenario(r.scenario);
    if (sc && sc.scenario === scenario) rounds.add(sc.round);
  }
  return [...rounds].sort((a, b) => a - b);
}

/** Values in round order with their median, smallest and largest. */
export interface Spread {
  /** Round numbers, in order, of `values`. */
  rounds: number[];
  values: number[];
  median: number;
  min: number;
  max: number;
}

export function spreadOf(byRound: ReadonlyMap<number, number>): Spread | undefined {
  if (byRound.size === 0) return undefined;
  const rounds = [...byRound.keys()].sort((a, b) => a - b);
  const values = rounds.map((k) => byRound.get(k)!);
  return { rounds, values, median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** The spread of one (system, scenario, metric) over its rounds. */
export function spreadOver(rows: readonly Row[], system: string, scenario: string, metric: string): Spread | undefined {
  return spreadOf(perRound(rows, system, scenario, metric));
}

/**
 * `f(a's value, b's value)` in every round where both systems have `metric`; the spread of those
 * per-round results. Rounds where either is missing (failed, not measured) are left out.
 */
export function paired(
  rows: readonly Row[],
  scenario: string,
  metric: string,
  a: string,
  b: string,
  f: (x: number, y: number) => number | undefined,
): Spread | undefined {
  const av = perRound(rows, a, scenario, metric);
  const bv = perRound(rows, b, scenario, metric);
  const out = new Map<number, number>();
  for (const [k, x] of av) {
    const y = bv.get(k);
    if (y === undefined) continue;
    const z = f(x, y);
    if (z !== undefined && Number.isFinite(z)) out.set(k, z);
  }
  return spreadOf(out);
}

/** a ÷ b per round (rounds where b is not positive are left out). */
export function roundRatios(rows: readonly Row[], scenario: string, metric: string, a: string, b: string): Spread | undefined {
  return paired(rows, scenario, metric, a, b, (x, y) => (y > 0 ? x / y : undefined));
}

/** a − b per round. */
export function roundDifferences(rows: readonly Row[], scenario: string, metric: string, a: string, b: string): Spread | undefined {
  return paired(rows, scenario, metric, a, b, (x, y) => x - y);
}

/** `x` rounded to `decimals`, as printed: verdicts compare what the reader sees, never two equal-looking numbers. */
export function shown(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
}

/** Rounds in which a's `metric` was lower than b's at the precision printed (2 decimals), of the rounds both have. */
export function roundsWon(rows: readonly Row[], scenario: string, metric: string, a: string, b: string): { won: number; of: number } {
  const s = paired(rows, scenario, metric, a, b, (x, y) => (shown(x, 2) < shown(y, 2) ? 1 : 0));
  return { won: s ? s.values.reduce((x, y) => x + y, 0) : 0, of: s ? s.values.length : 0 };
}

/**
 * One row per (system, metric) of `scenario` holding the median over its rounds, in the order the
 * per-round rows first appear. A metric in `zeroWhenAbsent` (the bench writes `errors` only when
 * there were some) counts as 0 in a round where the system has other rows but not that one, and
 * its median row is left out when it is 0.
 */
export function medianRows(rows: readonly Row[], scenario: string, zeroWhenAbsent: readonly string[] = []): Row[] {
  const systemRounds = new Map<string, Set<number>>();
  const values = new Map<string, { system: string; metric: string; unit: string; byRound: Map<number, number> }>();
  for (const r of rows) {
    const sc = parseRoundScenario(r.scenario);
    if (!sc || sc.scenario !== scenario) continue;
    let set = systemRounds.get(r.system);
    if (!set) systemRounds.set(r.system, (set = new Set()));
    set.add(sc.round);
    const key = JSON.stringify([r.system, r.metric]);
    let v = values.get(key);
    if (!v) values.set(key, (v = { system: r.system, metric: r.metric, unit: r.unit, byRound: new Map() }));
    v.byRound.set(sc.round, r.value);
  }
  const out: Row[] = [];
  for (const v of values.values()) {
    const xs = zeroWhenAbsent.includes(v.metric) ? [...systemRounds.get(v.system)!].map((k) => v.byRound.get(k) ?? 0) : [...v.byRound.values()];
    const m = median(xs);
    if (zeroWhenAbsent.includes(v.metric) && m === 0) continue;
    out.push({ system: v.system, scenario, metric: v.metric, value: m, unit: v.unit });
  }
  return out;
}
