import { z } from 'zod';
import { InvalidArgumentError } from './errors.js';

/**
 * Durations and sizes as people write them in config files ("250ms", "1m30s", "64MiB"), parsed once
 * into plain numbers whose unit is in the name of whatever holds them (`timeoutMs`, `maxBytes`).
 */

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Decimal units are powers of 1000 (kB = KB = 1000 B), binary units powers of 1024 (KiB). No bits. */
const SIZE_UNITS_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1e3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

export const DURATION_ACCEPTED =
  'a number of milliseconds, or a number with a unit ms, s, m, h or d, e.g. "250ms", "5s", "1.5s", "1m30s"';
export const SIZE_ACCEPTED =
  'a number of bytes, or a number with a unit B, kB/KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "512", "10kB", "64MiB"';

const NUMBER = String.raw`(?:\d+(?:\.\d*)?|\.\d+)`;
const BARE_NUMBER_RE = new RegExp(`^${NUMBER}$`);
// One or more <number><unit> terms, optionally separated by spaces ("1h 30m"). Units are tried longest first.
const DURATION_TERM_RE = new RegExp(`(${NUMBER})\\s*(ms|s|m|h|d)(?![a-zA-Z])\\s*`, 'y');
const SIZE_RE = new RegExp(`^(${NUMBER})\\s*([a-zA-Z]+)$`);

function quote(s: string | number): string {
  return typeof s === 'string' ? JSON.stringify(s) : String(s);
}

function durationError(input: string | number, why?: string): InvalidArgumentError {
  const reason = why === undefined ? '' : ` (${why})`;
  return new InvalidArgumentError(`invalid duration ${quote(input)}${reason}: expected ${DURATION_ACCEPTED}`, {
    input,
    accepted: DURATION_ACCEPTED,
  });
}

function sizeError(input: string | number, why?: string): InvalidArgumentError {
  const reason = why === undefined ? '' : ` (${why})`;
  return new InvalidArgumentError(`invalid size ${quote(input)}${reason}: expected ${SIZE_ACCEPTED}`, {
    input,
    accepted: SIZE_ACCEPTED,
  });
}

// 1.1 * 1000 is 1100.0000000000002 in binary floating point; a microsecond grid hides that.
function roundMicros(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * Parses a duration into milliseconds. A number (or a string of digits) is already milliseconds.
 * Strings may chain terms, largest first or not: "1h30m", "1m 30s", "1.5s", "250ms", "0".
 * Negative, non-finite or unit-less-but-mixed input throws InvalidArgumentError naming the input.
 */
export function parseDuration(s: string | number): number {
  if (typeof s === 'number') {
    if (!Number.isFinite(s) || s < 0) throw durationError(s, 'must be a finite number >= 0');
    return s;
  }
  if (typeof s !== 'string') throw durationError(String(s), `got ${typeof s}`);
  const text = s.trim();
  if (text === '') throw durationError(s, 'empty');
  if (BARE_NUMBER_RE.test(text)) return roundMicros(Number(text));
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    DURATION_TERM_RE.lastIndex = pos;
    const m = DURATION_TERM_RE.exec(text);
    if (m === null) {
      if (text.startsWith('-')) throw durationError(s, 'must not be negative');
      throw durationError(s);
    }
    total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    pos = DURATION_TERM_RE.lastIndex;
  }
  if (!Number.isFinite(total)) throw durationError(s, 'too large');
  return roundMicros(total);
}

/**
 * Parses a size into bytes. A number (or a string of digits) is already bytes. Units are case
 * sensitive on purpose: "Mb" would be megabits elsewhere, so it is refused rather than guessed.
 * The result must be a whole number of bytes ("1.5KiB" is fine, "1.5B" is not).
 */
export function parseSize(s: string | number): number {
  let bytes: number;
  if (typeof s === 'number') {
    bytes = s;
  } else if (typeof s === 'string') {
    const text = s.trim();
    if (text === '') throw sizeError(s, 'empty');
    if (BARE_NUMBER_RE.test(text)) {
      bytes = Number(text);
    } else {
      const m = SIZE_RE.exec(text);
      if (m === null) throw sizeError(s, text.startsWith('-') ? 'must not be negative' : undefined);
      const unit = SIZE_UNITS_BYTES[m[2]!];
      if (unit === undefined) throw sizeError(s, `unknown unit "${m[2]}"`);
      bytes = Number(m[1]) * unit;
      // 1.1 * 1e6 is 1100000.0000000002; anything within a millionth of a byte is that byte.
      const nearest = Math.round(bytes);
      if (Math.abs(bytes - nearest) < 1e-6) bytes = nearest;
    }
  } else {
    throw sizeError(String(s), `got ${typeof s}`);
  }
  if (!Number.isFinite(bytes) || bytes < 0) throw sizeError(s, 'must be a finite number >= 0');
  if (!Number.isInteger(bytes)) throw sizeError(s, 'not a whole number of bytes');
  if (!Number.isSafeInteger(bytes)) throw sizeError(s, 'too large');
  return bytes;
}

/** Bounds for zDuration, inclusive, in milliseconds. */
export interface DurationBounds {
  minMs?: number;
  maxMs?: number;
}

/** Bounds for zSize, inclusive, in bytes. */
export interface SizeBounds {
  minBytes?: number;
  maxBytes?: number;
}

function unitSchema(
  kind: 'duration' | 'size',
  parse: (v: string | number) => number,
  format: (n: number) => string,
  accepted: string,
  min: number | undefined,
  max: number | undefined,
) {
  return z
    .union([z.string(), z.number()], {
      error: (iss) => `expected a ${kind} (${accepted}), received ${iss.input === null ? 'null' : typeof iss.input}`,
    })
    .transform((v, ctx) => {
      let n: number;
      try {
        n = parse(v);
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          input: v,
          message: `invalid ${kind} ${quote(v)}: expected ${accepted}`,
          params: { cause: err instanceof Error ? err.message : String(err) },
        });
        return z.NEVER;
      }
      if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
        const range =
          min !== undefined && max !== undefined
            ? `between ${format(min)} and ${format(max)}`
            : min !== undefined
              ? `at least ${format(min)}`
              : `at most ${format(max!)}`;
        ctx.addIssue({ code: 'custom', input: v, message: `expected a ${kind} ${range}, received ${quote(v)}` });
        return z.NEVER;
      }
      return n;
    });
}

/** What zDuration and zSize build: string | number in, number out. */
export type UnitSchema = ReturnType<typeof unitSchema>;

function checkDefault(kind: string, parse: (v: string) => number, text: string, min?: number, max?: number): void {
  const n = parse(text);
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    throw new InvalidArgumentError(`default ${kind} ${quote(text)} is outside its own bounds`, { text, min, max });
  }
}

/**
 * A zod schema taking a duration as a string with a unit or a number of ms, giving milliseconds.
 * Bad input becomes a zod issue (so a config error lists it with its path), never a throw.
 * With `defaultText`, a missing value parses as that text; a bad default throws here, at
 * construction, since it is a programming error.
 */
export function zDuration(defaultText?: undefined, bounds?: DurationBounds): UnitSchema;
export function zDuration(defaultText: string, bounds?: DurationBounds): z.ZodPrefault<UnitSchema>;
export function zDuration(defaultText?: string, bounds: DurationBounds = {}): UnitSchema | z.ZodPrefault<UnitSchema> {
  const schema = unitSchema('duration', parseDuration, formatDuration, DURATION_ACCEPTED, bounds.minMs, bounds.maxMs);
  if (defaultText === undefined) return schema;
  checkDefault('duration', parseDuration, defaultText, bounds.minMs, bounds.maxMs);
  return schema.prefault(defaultText);
}

/** Like zDuration, for sizes: string with a unit or a number of bytes, giving bytes. */
export function zSize(defaultText?: undefined, bounds?: SizeBounds): UnitSchema;
export function zSize(defaultText: string, bounds?: SizeBounds): z.ZodPrefault<UnitSchema>;
export function zSize(defaultText?: string, bounds: SizeBounds = {}): UnitSchema | z.ZodPrefault<UnitSchema> {
  const schema = unitSchema('size', parseSize, formatSize, SIZE_ACCEPTED, bounds.minBytes, bounds.maxBytes);
  if (defaultText === undefined) return schema;
  checkDefault('size', parseSize, defaultText, bounds.minBytes, bounds.maxBytes);
  return schema.prefault(defaultText);
}

/** Formats milliseconds for messages: 1500 -> "1.5s", 250 -> "250ms", 90000 -> "1m30s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1000) return `${roundMicros(ms)}ms`;
  if (ms < 60_000) return `${roundMicros(ms / 1000)}s`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = roundMicros((ms % 60_000) / 1000);
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 ? `${s}s` : ''}`;
}

/** Formats bytes for messages with binary units: 65536 -> "64KiB", 1500 -> "1500B". */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
