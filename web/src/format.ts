/** How numbers and times read on the page. Pure; `—` stands for "no data in this interval". */

export const NONE = '—';

/** Requests (or messages) per second: "0/s", "0.4/s", "12/s", "1.2k/s". */
export function fmtRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return NONE;
  if (perSecond >= 10_000) return `${Math.round(perSecond / 1000)}k/s`;
  if (perSecond >= 1000) return `${(perSecond / 1000).toFixed(1)}k/s`;
  if (perSecond >= 10 || perSecond === 0) return `${Math.round(perSecond)}/s`;
  return `${perSecond.toFixed(1)}/s`;
}

/** A number without its unit, for chart axes: "0", "0.5", "12", "1.2k". */
export function fmtNumber(value: number): string {
  if (!Number.isFinite(value)) return NONE;
  const abs = Math.abs(value);
  if (abs >= 10_000) return `${Math.round(value / 1000)}k`;
  if (abs >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (abs >= 10 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(1);
}

/** Milliseconds: "0.8 ms", "12 ms", "1.3 s" (a no-break space, so a value never wraps from its unit). */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return NONE;
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)}\u00a0s`;
  if (ms >= 10) return `${Math.round(ms)}\u00a0ms`;
  return `${ms.toFixed(1)}\u00a0ms`;
}

/** A ratio 0..1 as a whole percentage: "93%". */
export function fmtPct(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return NONE;
  return `${Math.round(ratio * 100)}%`;
}

/** A count as plain digits (no separators, so tests and screen readers read it as one number). */
export function fmtInt(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value)) : NONE;
}

const two = (n: number): string => String(n).padStart(2, '0');

/** Local wall-clock time of an epoch-ms instant: "14:03:09". */
export function fmtClock(epochMs: number): string {
  const d = new Date(epochMs);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Seconds left of a countdown, rounded up: "12 s". */
export function fmtRemaining(ms: number): string {
  return `${Math.max(0, Math.ceil(ms / 1000))}\u00a0s`;
}
