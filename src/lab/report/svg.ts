/**
 * Standalone SVG charts for reports and docs pages: `lineChart` (series of (x, y) points) and
 * `barChart` (grouped bars). No dependencies, no scripts, no external fonts or styles: the output
 * is one `<svg>` element that renders the same on GitHub, in a browser and in an image viewer.
 *
 * Accessible: the root has `role="img"` and `aria-labelledby` pointing at its `<title>` and
 * `<desc>`; the description says what is plotted and each series' range, so a screen reader gets
 * the gist without the picture. Series are told apart by colour (the Okabe-Ito palette, safe for
 * colour-blind readers) and, for lines, by dash pattern as well.
 *
 * Pure: the same input gives the same bytes (no ids from counters or clocks), so a chart written
 * by a benchmark diffs cleanly.
 */
import { InvalidArgumentError } from '../../core/errors.js';

export type Point = readonly [x: number, y: number];

export interface LineSeries {
  /** Shown in the legend and the description; escaped. */
  name: string;
  /** Points in any order; they are drawn sorted by x. Points with a non-finite coordinate are skipped. */
  points: readonly Point[];
}

/** A horizontal reference line, e.g. a configured bound. */
export interface ReferenceLine {
  y: number;
  label: string;
}

export interface LineChartOptions {
  title: string;
  /** Extra sentence for `<desc>`, before the generated summary of the series. */
  description?: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Horizontal reference lines, drawn dashed with their label. Default none. */
  referenceLines?: readonly ReferenceLine[];
  /** Lower end of the y axis, unless a point lies below it (then the smallest y). Default 0. */
  yMin?: number;
  /** Pixels. Default 720, at least 200. */
  width?: number;
  /** Pixels. Default 400, at least 150. */
  height?: number;
}

export interface BarSeries {
  /** One bar per group with this name; escaped. */
  name: string;
  /** One value per group, in the order of `groups`; null or non-finite = no bar (a gap). */
  values: readonly (number | null)[];
}

export interface BarChartOptions {
  title: string;
  description?: string;
  /** Label of the group axis (under the groups when vertical; not drawn when horizontal). Default none. */
  xLabel?: string;
  /** Label of the value axis. */
  yLabel: string;
  /** Names of the groups along the x axis (e.g. message sizes or scenarios); escaped. */
  groups: readonly string[];
  /** Each series draws one bar in every group. */
  series: readonly BarSeries[];
  /** Pixels. Default 720, at least 200. */
  width?: number;
  /** Pixels, at least 150. Default 400 vertical; horizontal: enough for 15 px per bar. */
  height?: number;
  /** 'vertical' (default): groups along the x axis; 'horizontal': groups down the left side, values along x. */
  orientation?: 'vertical' | 'horizontal';
}

/** Okabe-Ito: distinguishable with the common forms of colour blindness. */
export const PALETTE: readonly string[] = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];
const DASHES: readonly string[] = ['', '6 3', '2 3', '8 3 2 3', '12 4', '2 2 6 2', '4 4', '1 2'];

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const DEFAULT_WIDTH = 720;
/** Average width of a character of the 12 px legend font, for fitting names. */
const CHAR_PX = 7.2;
const DEFAULT_HEIGHT = 400;

/** Escapes text for XML content and attribute values. */
export function escapeXml(text: string): string {
  // Control characters other than tab/newline are not allowed in XML 1.0 at all: drop them.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, '').replace(/[<>&"']/g, (c) => {
    switch (c) {
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '&':
        return '&amp;';
      case '"':
        return '&quot;';
      default:
        return '&#39;';
    }
  });
}

/** A linear map from `domain` to `range`; a zero-width domain maps everything to the range's middle. */
export function scaleLinear(domain: readonly [number, number], range: readonly [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/**
 * About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [min, max]: the
 * first tick is <= min and the last >= max, so the axis can use them as its ends.
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new InvalidArgumentError(`niceTicks needs finite bounds (got ${min}, ${max})`);
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    // One value: a unit-wide span around it, so the axis still has a scale.
    const pad = min === 0 ? 1 : Math.abs(min) / 2;
    min = min === 0 ? 0 : min - pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  // Bounded: (max - first) / step <= count + 2 by the choice of step.
  for (let v = first, i = 0; i < 1000; i++, v = first + i * step) {
    ticks.push(roundTo(v, step));
    if (v >= max - step * 1e-9) break;
  }
  return ticks;
}

/** `v` with the float noise of repeated addition removed, to the precision of `step`. */
function roundTo(v: number, step: number): number {
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(v.toFixed(Math.min(20, digits)));
}

/** Short tick label: 1.5k, 2M, 0.25, 1e-4. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e4) return `${trim(v / 1e3)}k`;
  if (a >= 1e-3) return trim(v);
  return v.toExponential(0);
}

function trim(v: number): string {
  return String(Number(v.toPrecision(3)));
}

function checkSize(width: number | undefined, height: number | undefined): { width: number; height: number } {
  const w = width ?? DEFAULT_WIDTH;
  const h = height ?? DEFAULT_HEIGHT;
  if (!Number.isFinite(w) || w < 200) throw new InvalidArgumentError(`chart width must be a number >= 200 pixels (got ${w})`, { width: w });
  if (!Number.isFinite(h) || h < 150) throw new InvalidArgumentError(`chart height must be a number >= 150 pixels (got ${h})`, { height: h });
  return { width: w, height: h };
}

/** A short, stable id prefix from the title (ids must be unique within a page that inlines several charts). */
function idFor(kind: string, title: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < title.length; i++) h = Math.imul(h ^ title.charCodeAt(i), 0x01000193) >>> 0;
  return `${kind}-${h.toString(36)}`;
}

const n = (v: number): string => String(Math.round(v * 10) / 10);

interface Frame {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

function open(kind: string, title: string, desc: string, width: number, height: number): { id: string; head: string[] } {
  const id = idFor(kind, title);
  return {
    id,
    head: [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${id}-title ${id}-desc" ${FONT} font-size="12">`,
      `<title id="${id}-title">${escapeXml(title)}</title>`,
      `<desc id="${id}-desc">${escapeXml(desc)}</desc>`,
      `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
      `<text x="${n(width / 2)}" y="20" text-anchor="middle" font-size="15" font-weight="600" fill="#222">${escapeXml(title)}</text>`,
    ],
  };
}

function yAxis(out: string[], f: Frame, ticks: number[], y: (v: number) => number, label: string): void {
  for (const t of ticks) {
    const py = n(y(t));
    out.push(`<line x1="${f.left}" x2="${f.right}" y1="${py}" y2="${py}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${f.left - 6}" y="${py}" dy="0.32em" text-anchor="end" fill="#444">${escapeXml(formatTick(t))}</text>`);
  }
  out.push(`<line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}" stroke="#444"/>`);
  const cy = n((f.top + f.bottom) / 2);
  out.push(`<text x="16" y="${cy}" transform="rotate(-90 16 ${cy})" text-anchor="middle" fill="#222">${escapeXml(label)}</text>`);
}

function legend(out: string[], f: Frame, width: number, items: { name: string; color: string; dash?: string; bar?: boolean }[]): void {
  // One row per item in the right margin: long names are truncated in the picture, kept whole in <desc>.
  const x = f.right + 14;
  const maxChars = Math.max(6, Math.floor((width - x - 8) / CHAR_PX));
  items.forEach((it, i) => {
    const y = f.top + 8 + i * 18;
    if (it.bar) out.push(`<rect x="${x}" y="${y - 6}" width="16" height="12" fill="${it.color}"/>`);
    else out.push(`<line x1="${x}" x2="${x + 18}" y1="${y}" y2="${y}" stroke="${it.color}" stroke-width="2.5"${it.dash ? ` stroke-dasharray="${it.dash}"` : ''}/>`);
    const name = it.name.length > maxChars ? `${it.name.slice(0, maxChars - 1)}…` : it.name;
    out.push(`<text x="${x + 24}" y="${y}" dy="0.32em" fill="#222">${escapeXml(name)}</text>`);
  });
}

function legendWidth(names: string[], width: number): number {
  const longest = names.reduce((m, s) => Math.max(m, s.length), 0);
  return names.length === 0 ? 20 : Math.min(Math.floor(width * 0.35), 52 + longest * CHAR_PX);
}

function minOf(xs: readonly number[]): number {
  let m = Infinity;
  for (const v of xs) if (v < m) m = v;
  return m;
}

function maxOf(xs: readonly number[]): number {
  let m = -Infinity;
  for (const v of xs) if (v > m) m = v;
  return m;
}

function clean(points: readonly Point[]): Point[] {
  return points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
}

/** A line chart of one or more series over a shared linear x and y axis. */
export function lineChart(o: LineChartOptions): string {
  const { width, height } = checkSize(o.width, o.height);
  const series = o.series.map((s) => ({ name: s.name, points: clean(s.points) }));
  const refs = (o.referenceLines ?? []).filter((r) => Number.isFinite(r.y));
  const all = series.flatMap((s) => s.points);
  const summary = series.map((s) => {
    if (s.points.length === 0) return `${s.name}: no points`;
    const ys = s.points.map((p) => p[1]);
    return `${s.name}: ${s.points.length} point${s.points.length === 1 ? '' : 's'}, ${o.xLabel} ${formatTick(s.points[0]![0])} to ${formatTick(s.points[s.points.length - 1]![0])}, ${o.yLabel} ${formatTick(minOf(ys))} to ${formatTick(maxOf(ys))}`;
  });
  const desc = [o.description, `Line chart of ${o.yLabel} against ${o.xLabel}.`, ...summary.map((s) => `${s}.`), ...refs.map((r) => `Reference line ${r.label} at ${formatTick(r.y)}.`)]
    .filter(Boolean)
    .join(' ');
  const { id, head } = open('line', o.title, desc, width, height);
  const out = head;
  const f: Frame = { left: 64, top: 36, right: width - legendWidth(series.map((s) => s.name), width), bottom: height - 46 };

  if (all.length === 0) {
    out.push(`<rect x="${f.left}" y="${f.top}" width="${n(f.right - f.left)}" height="${n(f.bottom - f.top)}" fill="none" stroke="#444"/>`);
    out.push(`<text x="${n((f.left + f.right) / 2)}" y="${n((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#666">no data</text>`);
    legend(out, f, width, series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length]!, dash: DASHES[i % DASHES.length]! })));
    out.push('</svg>');
    return out.join('\n') + '\n';
  }

  const xs = all.map((p) => p[0]);
  const ys = [...all.map((p) => p[1]), ...refs.map((r) => r.y)];
  const yLow = Math.min(o.yMin ?? 0, minOf(ys));
  const xTicks = niceTicks(minOf(xs), maxOf(xs), Math.max(2, Math.floor((f.right - f.left) / 90)));
  const yTicks = niceTicks(yLow, maxOf(ys), Math.max(2, Math.floor((f.bottom - f.top) / 50)));
  const x = scaleLinear([xTicks[0]!, xTicks[xTicks.length - 1]!], [f.left, f.right]);
  const y = scaleLinear([yTicks[0]!, yTicks[yTicks.length - 1]!], [f.bottom, f.top]);

  yAxis(out, f, yTicks, y, o.yLabel);
  for (const t of xTicks) {
    const px = n(x(t));
    out.push(`<line x1="${px}" x2="${px}" y1="${f.bottom}" y2="${f.bottom + 5}" stroke="#444"/>`);
    out.push(`<text x="${px}" y="${f.bottom + 18}" text-anchor="middle" fill="#444">${escapeXml(formatTick(t))}</text>`);
  }
  out.push(`<line x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" stroke="#444"/>`);
  out.push(`<text x="${n((f.left + f.right) / 2)}" y="${height - 8}" text-anchor="middle" fill="#222">${escapeXml(o.xLabel)}</text>`);

  for (const r of refs) {
    const py = n(y(r.y));
    out.push(`<line x1="${f.left}" x2="${f.right}" y1="${py}" y2="${py}" stroke="#888" stroke-dasharray="4 4"/>`);
    out.push(`<text x="${f.right - 4}" y="${py}" dy="-4" text-anchor="end" fill="#555">${escapeXml(r.label)}</text>`);
  }

  out.push(`<g clip-path="url(#${id}-clip)">`);
  out.push(`<clipPath id="${id}-clip"><rect x="${f.left}" y="${f.top - 2}" width="${n(f.right - f.left + 2)}" height="${n(f.bottom - f.top + 4)}"/></clipPath>`);
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const dash = DASHES[i % DASHES.length]!;
    const pts = s.points.map((p) => `${n(x(p[0]))},${n(y(p[1]))}`);
    out.push(`<g data-series="${escapeXml(s.name)}">`);
    if (s.points.length === 1) out.push(`<circle cx="${n(x(s.points[0]![0]))}" cy="${n(y(s.points[0]![1]))}" r="3.5" fill="${color}"/>`);
    else if (s.points.length > 1) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    out.push('</g>');
  });
  out.push('</g>');
  legend(out, f, width, series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length]!, dash: DASHES[i % DASHES.length]! })));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Fill of series `i`: a palette colour, then (from the ninth series on) the same colours as
 * diagonal hatching, so no two series of one chart look alike.
 */
function seriesFill(i: number, id: string): string {
  return i < PALETTE.length ? PALETTE[i]! : `url(#${id}-hatch-${i - PALETTE.length})`;
}

function hatchDefs(count: number, id: string): string[] {
  const out: string[] = [];
  for (let k = 0; k + PALETTE.length < count; k++) {
    const c = PALETTE[k % PALETTE.length]!;
    out.push(
      `<pattern id="${id}-hatch-${k}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><rect width="3" height="6" fill="${c}"/></pattern>`,
    );
  }
  return out.length ? ['<defs>', ...out, '</defs>'] : [];
}

/**
 * Grouped bars: one group per entry of `groups`, one bar per series in each group. Vertical by
 * default; `orientation: 'horizontal'` lists the groups down the left (for long group names, such
 * as system names) and writes each bar's value at its end.
 */
export function barChart(o: BarChartOptions): string {
  const horizontal = o.orientation === 'horizontal';
  const { width, height } = checkSize(o.width, o.height ?? (horizontal ? Math.max(DEFAULT_HEIGHT / 2, 90 + o.groups.length * Math.max(1, o.series.length) * 15) : undefined));
  for (const s of o.series) {
    if (s.values.length > o.groups.length) {
      throw new InvalidArgumentError(`bar series "${s.name}" has ${s.values.length} values for ${o.groups.length} groups`, { series: s.name });
    }
  }
  const val = (s: BarSeries, g: number): number | undefined => {
    const v = s.values[g];
    return v === null || v === undefined || !Number.isFinite(v) ? undefined : v;
  };
  const summary = o.groups.map((g, gi) => {
    const parts = o.series.map((s) => `${s.name} ${val(s, gi) === undefined ? 'no value' : formatTick(val(s, gi)!)}`);
    return `${g}: ${parts.join(', ') || 'no series'}.`;
  });
  const desc = [o.description, `Bar chart of ${o.yLabel}${o.xLabel ? ` by ${o.xLabel}` : ''}.`, ...summary].filter(Boolean).join(' ');
  const { id, head } = open('bar', o.title, desc, width, height);
  const out = head;
  out.push(...hatchDefs(o.series.length, id));
  const legendW = legendWidth(o.series.map((s) => s.name), width);
  const groupLabelW = horizontal ? Math.min(Math.floor(width * 0.45), 16 + o.groups.reduce((m, g) => Math.max(m, g.length), 0) * CHAR_PX) : 0;
  const f: Frame = horizontal
    ? { left: groupLabelW, top: 36, right: width - legendW - 40, bottom: height - 46 }
    : { left: 64, top: 36, right: width - legendW, bottom: height - (o.xLabel ? 46 : 30) };
  const values = o.series.flatMap((s) => o.groups.map((_, gi) => val(s, gi))).filter((v): v is number => v !== undefined);

  if (values.length === 0 || o.groups.length === 0) {
    out.push(`<rect x="${n(f.left)}" y="${f.top}" width="${n(f.right - f.left)}" height="${n(f.bottom - f.top)}" fill="none" stroke="#444"/>`);
    out.push(`<text x="${n((f.left + f.right) / 2)}" y="${n((f.top + f.bottom) / 2)}" text-anchor="middle" fill="#666">no data</text>`);
  } else if (!horizontal) {
    const yTicks = niceTicks(Math.min(0, minOf(values)), Math.max(0, maxOf(values)), Math.max(2, Math.floor((f.bottom - f.top) / 50)));
    const y = scaleLinear([yTicks[0]!, yTicks[yTicks.length - 1]!], [f.bottom, f.top]);
    yAxis(out, f, yTicks, y, o.yLabel);
    const groupW = (f.right - f.left) / o.groups.length;
    const barW = (groupW * 0.8) / Math.max(1, o.series.length);
    o.groups.forEach((g, gi) => {
      const gx = f.left + gi * groupW;
      o.series.forEach((s, si) => {
        const v = val(s, gi);
        if (v === undefined) return;
        const y0 = y(0);
        const y1 = y(v);
        out.push(
          `<rect x="${n(gx + groupW * 0.1 + si * barW)}" y="${n(Math.min(y0, y1))}" width="${n(Math.max(1, barW - 2))}" height="${n(Math.abs(y0 - y1))}" fill="${seriesFill(si, id)}"><title>${escapeXml(`${s.name}, ${g}: ${formatTick(v)}`)}</title></rect>`,
        );
      });
      out.push(`<text x="${n(gx + groupW / 2)}" y="${f.bottom + 18}" text-anchor="middle" fill="#444">${escapeXml(g)}</text>`);
    });
    out.push(`<line x1="${f.left}" x2="${f.right}" y1="${n(y(0))}" y2="${n(y(0))}" stroke="#444"/>`);
  } else {
    const ticks = niceTicks(Math.min(0, minOf(values)), Math.max(0, maxOf(values)), Math.max(2, Math.floor((f.right - f.left) / 90)));
    const x = scaleLinear([ticks[0]!, ticks[ticks.length - 1]!], [f.left, f.right]);
    for (const t of ticks) {
      const px = n(x(t));
      out.push(`<line x1="${px}" x2="${px}" y1="${f.top}" y2="${f.bottom}" stroke="#e3e3e3"/>`);
      out.push(`<text x="${px}" y="${f.bottom + 16}" text-anchor="middle" fill="#444">${escapeXml(formatTick(t))}</text>`);
    }
    out.push(`<line x1="${n(f.left)}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" stroke="#444"/>`);
    const groupH = (f.bottom - f.top) / o.groups.length;
    const barH = (groupH * 0.8) / Math.max(1, o.series.length);
    o.groups.forEach((g, gi) => {
      const gy = f.top + gi * groupH;
      o.series.forEach((s, si) => {
        const v = val(s, gi);
        if (v === undefined) return;
        const x0 = x(0);
        const x1 = x(v);
        const by = gy + groupH * 0.1 + si * barH;
        out.push(
          `<rect x="${n(Math.min(x0, x1))}" y="${n(by)}" width="${n(Math.abs(x1 - x0))}" height="${n(Math.max(1, barH - 1))}" fill="${seriesFill(si, id)}"><title>${escapeXml(`${s.name}, ${g}: ${formatTick(v)}`)}</title></rect>`,
        );
        out.push(`<text x="${n(Math.max(x0, x1) + 4)}" y="${n(by + barH / 2)}" dy="0.32em" font-size="10" fill="#333">${escapeXml(formatTick(v))}</text>`);
      });
      out.push(`<text x="${n(f.left - 8)}" y="${n(gy + groupH / 2)}" dy="0.32em" text-anchor="end" fill="#222">${escapeXml(g)}</text>`);
    });
    out.push(`<line x1="${n(x(0))}" x2="${n(x(0))}" y1="${f.top}" y2="${f.bottom}" stroke="#444"/>`);
  }
  const axisLabel = horizontal ? o.yLabel : o.xLabel;
  if (axisLabel) out.push(`<text x="${n((f.left + f.right) / 2)}" y="${height - 8}" text-anchor="middle" fill="#222">${escapeXml(axisLabel)}</text>`);
  legend(out, { ...f, right: width - legendW }, width, o.series.map((s, i) => ({ name: s.name, color: seriesFill(i, id), bar: true })));
  out.push('</svg>');
  return out.join('\n') + '\n';
}
