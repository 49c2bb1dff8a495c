import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { fmtClock, fmtMs, fmtNumber, fmtPct, NONE } from './format.js';

/** What the y axis measures; decides its range and how values read. */
export type ChartKind = 'rate' | 'ms' | 'ratio' | 'count';

export interface SeriesSpec {
  label: string;
  color: string;
  /** A dash pattern, so lines differ by more than colour. */
  dash?: number[];
}

/** Okabe–Ito: told apart by most colour-blind readers; on white, all but the yellow (left out) read well. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#8c8c8c'] as const;
export const DASHES: ReadonlyArray<number[] | undefined> = [undefined, [6, 3], [2, 3], [8, 3, 2, 3]];

/** The i-th of many series (backends, regions): colour first, then dash once the colours run out. */
export function nthSeries(label: string, i: number): SeriesSpec {
  const dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
  return { label, color: PALETTE[i % PALETTE.length]!, ...(dash === undefined ? {} : { dash }) };
}

function formatValue(kind: ChartKind, v: number): string {
  switch (kind) {
    case 'rate':
      return `${fmtNumber(v)}/s`;
    case 'ms':
      return fmtMs(v);
    case 'ratio':
      return fmtPct(v);
    case 'count':
      return fmtNumber(v);
  }
}

function axisValue(kind: ChartKind, v: number): string {
  return kind === 'ratio' ? fmtPct(v) : fmtNumber(v);
}

/** Rates, latencies and counts start at zero and leave a little headroom; ratios are 0..100%. */
function yRange(kind: ChartKind): uPlot.Range.Function {
  if (kind === 'ratio') return () => [0, 1];
  return (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1];
}

/** With the pointer elsewhere, the legend shows the newest values rather than dashes. */
function showLatest(plot: uPlot): void {
  const count = plot.data[0]?.length ?? 0;
  if (count > 0 && (plot.cursor.idx === null || plot.cursor.idx === undefined)) plot.setLegend({ idx: count - 1 }, false);
}

export interface TimeChartProps {
  title: string;
  kind: ChartKind;
  series: readonly SeriesSpec[];
  /** [times in seconds, ...one column per series]. */
  data: uPlot.AlignedData;
  heightPx?: number;
}

/**
 * A uPlot time series. The plot is built once per set of series and fed with setData on every frame;
 * it follows its box's width.
 */
export function TimeChart({ title, kind, series, data, heightPx = 150 }: TimeChartProps) {
  const boxRef = useRef<HTMLDivElement>(null);
  const plotRef = useRef<uPlot | null>(null);
  const dataRef = useRef(data);
  dataRef.current = data;
  // Rebuild only when the series themselves change (a backend joins), not on each new array.
  const signature = series.map((s) => `${s.label}|${s.color}|${s.dash?.join(',') ?? ''}`).join(';');
  const seriesRef = useRef(series);
  seriesRef.current = series;

  useEffect(() => {
    const box = boxRef.current;
    if (box === null) return;
    const options: uPlot.Options = {
      width: Math.max(box.clientWidth, 120),
      height: heightPx,
      series: [
        { label: 'time', value: (_u, v) => (v === null ? NONE : fmtClock(v * 1000)) },
        ...seriesRef.current.map(
          (s): uPlot.Series => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            ...(s.dash === undefined ? {} : { dash: s.dash }),
            points: { show: false },
            value: (_u, v) => (v === null ? NONE : formatValue(kind, v)),
          }),
        ),
      ],
      scales: { x: { time: true }, y: { range: yRange(kind) } },
      axes: [
        { stroke: '#3d4450', space: 72, grid: { stroke: '#e6e8eb', width: 1 }, ticks: { stroke: '#d0d4d9', width: 1 }, values: (_u, splits) => splits.map((v) => fmtClock(v * 1000)) },
        { stroke: '#3d4450', size: 52, grid: { stroke: '#e6e8eb', width: 1 }, ticks: { stroke: '#d0d4d9', width: 1 }, values: (_u, splits) => splits.map((v) => axisValue(kind, v)) },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: true },
    };
    const plot = new uPlot(options, dataRef.current, box);
    plotRef.current = plot;
    showLatest(plot);
    let width = box.clientWidth;
    const observer = new ResizeObserver(() => {
      if (box.clientWidth === width || box.clientWidth === 0) return;
      width = box.clientWidth;
      plot.setSize({ width, height: heightPx });
    });
    observer.observe(box);
    return () => {
      observer.disconnect();
      plot.destroy();
      plotRef.current = null;
    };
  }, [signature, kind, heightPx]);

  useEffect(() => {
    const plot = plotRef.current;
    if (plot === null) return;
    plot.setData(data);
    showLatest(plot);
  }, [data]);

  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div className="chart-box" ref={boxRef} />
    </figure>
  );
}
