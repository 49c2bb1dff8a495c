/**
 * Byte ranges served from a stored full response (RFC 9110 14.1.2 and 14.2).
 *
 * Only one range is served. A Range field this tier does not understand (another unit, bad syntax,
 * several ranges) is ignored and the whole body is sent with 200, which RFC 9110 14.2 allows
 * ("a server MAY ignore the Range header field"). The caller also ignores Range when an If-Range
 * does not match the stored validator (RFC 9110 13.1.5).
 */

/** Longest Range field parsed; longer ones are ignored. */
export const MAX_RANGE_FIELD_CHARS = 1024;

/**
 * Parses `Range` against a body of `bodyBytes` bytes. Returns the inclusive byte positions to send
 * (206), `'unsatisfiable'` (416 with `Content-Range: bytes * /length`), or `undefined` (no Range,
 * or one to ignore: send the whole body with 200).
 */
export function parseRange(rangeHeader: string | undefined, bodyBytes: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (rangeHeader === undefined || rangeHeader.length > MAX_RANGE_FIELD_CHARS) return undefined;
  const eq = rangeHeader.indexOf('=');
  if (eq < 0 || rangeHeader.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const specs = rangeHeader
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0) return undefined;
  const parsed = specs.map((s) => parseSpec(s, bodyBytes));
  if (parsed.some((p) => p === 'invalid')) return undefined;
  // RFC 9110 14.1.1: unsatisfiable only when no range in the set is satisfiable.
  const satisfiable = parsed.filter((p): p is { start: number; end: number } => p !== 'unsatisfiable');
  if (satisfiable.length === 0) return 'unsatisfiable';
  if (parsed.length > 1) return undefined; // several ranges: multipart/byteranges is not served; whole body
  return satisfiable[0];
}

function num(s: string): number {
  // More than 15 digits is past any body we store; Infinity keeps the comparisons right.
  return s.length > 15 ? Infinity : Number(s);
}

function parseSpec(spec: string, len: number): { start: number; end: number } | 'unsatisfiable' | 'invalid' {
  const m = /^(\d*)-(\d*)$/.exec(spec);
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  if (m[1] === '') {
    // suffix-range: the last N bytes
    const n = num(m[2]!);
    if (n === 0 || len === 0) return 'unsatisfiable';
    return { start: Math.max(0, len - n), end: len - 1 };
  }
  const first = num(m[1]!);
  const last = m[2] === '' ? Infinity : num(m[2]!);
  if (last < first) return 'invalid'; // RFC 9110 14.1.1: an invalid int-range
  if (first >= len) return 'unsatisfiable';
  return { start: first, end: Math.min(last, len - 1) };
}
