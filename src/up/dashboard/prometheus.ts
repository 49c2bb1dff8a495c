/**
 * Just enough of the Prometheus text exposition format (0.0.4) for the dashboard to read the
 * components' own /metrics: samples with labels, and quantiles from the buckets of a histogram
 * over an interval, computed as Prometheus' histogram_quantile() does (linear within a bucket).
 *
 * Bounded: at most MAX_SAMPLES samples are read from one scrape; a line that does not parse is
 * skipped (a scrape is advisory: the dashboard shows what it can read).
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export const MAX_SAMPLES = 100_000;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function unescapeLabel(s: string): string {
  return s.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

/** Parses one line; undefined for comments, blank lines and lines that do not parse. */
export function parseSampleLine(line: string): Sample | undefined {
  if (line === '' || line.startsWith('#')) return undefined;
  const m = NAME.exec(line);
  if (m === null) return undefined;
  const name = m[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') {
        i++;
        break;
      }
      const lm = NAME.exec(line.slice(i));
      if (lm === null || line[i + lm[0].length] !== '=' || line[i + lm[0].length + 1] !== '"') return undefined;
      i += lm[0].length + 2;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) return undefined;
        if (c === '\\') {
          value += line.slice(i, i + 2);
          i += 2;
          continue;
        }
        i++;
        if (c === '"') break;
        value += c;
      }
      labels[lm[0]] = unescapeLabel(value);
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  if (rest[0] === undefined || rest[0] === '') return undefined;
  const value = parseValue(rest[0]);
  if (Number.isNaN(value) && rest[0] !== 'NaN') return undefined;
  return { name, labels, value };
}

/** Every sample of a scrape (at most MAX_SAMPLES). */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const s = parseSampleLine(line.trimEnd());
    if (s === undefined) continue;
    out.push(s);
    if (out.length >= MAX_SAMPLES) break;
  }
  return out;
}

/** Sum of the samples named `name` whose labels include every pair of `match`. */
export function sumOf(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  let n = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) n += s.value;
  }
  return n;
}

/** Cumulative histogram buckets: upper bound (le) -> count, ascending, the last one +Inf. */
export type Buckets = Array<{ le: number; count: number }>;

/** The `${name}_bucket` samples matching `match`, summed per upper bound (so several series merge into one). */
export function bucketsOf(samples: readonly Sample[], name: string, match: Record<string, string> = {}): Buckets {
  const byLe = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    if (!Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    const le = parseValue(s.labels.le ?? '');
    if (Number.isNaN(le)) continue;
    byLe.set(le, (byLe.get(le) ?? 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
}

/**
 * The increase of cumulative buckets from `before` to `after` (a series that went down was reset,
 * as when a process restarts: its increase is then its new value, as Prometheus' rate() does).
 */
export function bucketsDelta(before: Buckets | undefined, after: Buckets): Buckets {
  if (before === undefined) return after;
  const prev = new Map(before.map((b) => [b.le, b.count]));
  const reset = after.some((b) => b.count < (prev.get(b.le) ?? 0));
  return after.map((b) => ({ le: b.le, count: reset ? b.count : b.count - (prev.get(b.le) ?? 0) }));
}

/**
 * The q-quantile (0..1) of the observations counted by cumulative `buckets`, as histogram_quantile():
 * linear interpolation within the bucket it falls in, the lowest bucket starting at 0; falling in
 * the +Inf bucket gives the highest finite bound. Null when there is no observation.
 */
export function histogramQuantile(q: number, buckets: Buckets): number | null {
  const total = buckets.at(-1)?.count ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lowerLe;
      const inBucket = b.count - lowerCount;
      if (inBucket <= 0) return b.le;
      return lowerLe + ((b.le - lowerLe) * (rank - lowerCount)) / inBucket;
    }
    lowerLe = b.le;
    lowerCount = b.count;
  }
  return lowerLe;
}

/** A counter's increase over an interval, treating a decrease as a reset. */
export function counterDelta(before: number | undefined, after: number): number {
  if (before === undefined) return 0;
  return after >= before ? after - before : after;
}
