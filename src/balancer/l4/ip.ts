/**
 * IP address text <-> bytes for the L4 wire formats (PROXY protocol v1 text, v2 binary).
 *
 * Formatting matches what Node reports as `socket.remoteAddress` (libuv's inet_ntop): IPv4 as a
 * dotted quad; IPv6 lower-case with the longest run (two or more, leftmost on a tie) of zero groups
 * compressed to `::`, and the last 32 bits written as a dotted quad for IPv4-mapped
 * (`::ffff:192.0.2.1`) and IPv4-compatible (`::192.0.2.1`) addresses. So an address parsed from a
 * PROXY header compares equal, as a string, to the one Node gives for a direct connection.
 *
 * Parsing is strict where the PROXY spec is: no leading zeros in IPv4 numbers, no IPv6 zone
 * (`%eth0`), no brackets. The parsers write into a caller's buffer and return false on bad input,
 * so callers choose the error (and no exception is allocated on the happy path).
 */

/** Writes the 4 bytes of a strict dotted quad ("192.0.2.1": no leading zeros) at `offset`. */
export function writeIPv4(text: string, out: Uint8Array, offset: number): boolean {
  return writeDotted(text, 0, text.length, out, offset);
}

/** Writes the 16 bytes of an IPv6 address ("2001:db8::1", "::ffff:192.0.2.1") at `offset`. */
export function writeIPv6(text: string, out: Uint8Array, offset: number): boolean {
  const n = text.length;
  if (n < 2 || n > 45) return false;
  const gap = text.indexOf('::');
  if (gap >= 0 && text.indexOf('::', gap + 1) >= 0) return false;
  // Groups before the gap go left to right from word 0; groups after it are parsed into the tail
  // of the address and then moved right so the zeros of the gap sit between.
  let word = 0;
  if (gap !== 0) {
    const r = parseGroups(text, 0, gap >= 0 ? gap : n, out, offset, 0, gap < 0);
    if (r < 0) return false;
    word = r;
  }
  if (gap < 0) return word === 8;
  const pos = gap + 2;
  const tailStart = word;
  let tailWords = 0;
  if (pos < n) {
    const r = parseGroups(text, pos, n, out, offset, tailStart, true);
    if (r < 0) return false;
    tailWords = r - tailStart;
  }
  if (tailStart + tailWords > 7) return false; // '::' stands for at least one zero group
  const shift = 8 - tailStart - tailWords;
  for (let i = tailStart + tailWords - 1; i >= tailStart; i--) {
    out[offset + 2 * (i + shift)] = out[offset + 2 * i]!;
    out[offset + 2 * (i + shift) + 1] = out[offset + 2 * i + 1]!;
  }
  for (let i = tailStart; i < tailStart + shift; i++) {
    out[offset + 2 * i] = 0;
    out[offset + 2 * i + 1] = 0;
  }
  return true;
}

/**
 * Parses colon-separated hex groups in text[from, to) into words starting at `word`. The last group
 * may be a dotted quad when `allowV4` is set (worth two words). Returns the next word index, or -1.
 */
function parseGroups(text: string, from: number, to: number, out: Uint8Array, offset: number, word: number, allowV4: boolean): number {
  let start = from;
  for (;;) {
    let end = text.indexOf(':', start);
    if (end < 0 || end > to) end = to;
    if (end === start) return -1; // empty group: a leading, trailing or doubled ':'
    if (end === to && allowV4 && text.indexOf('.', start) >= 0 && text.indexOf('.', start) < to) {
      if (word > 6 || !writeDotted(text, start, to, out, offset + 2 * word)) return -1;
      return word + 2;
    }
    if (end - start > 4 || word > 7) return -1;
    let v = 0;
    for (let i = start; i < end; i++) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) return -1;
      v = (v << 4) | h;
    }
    out[offset + 2 * word] = v >> 8;
    out[offset + 2 * word + 1] = v & 0xff;
    word++;
    if (end === to) return word;
    start = end + 1;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function writeDotted(text: string, from: number, to: number, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let v = 0;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    const c = i < to ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || part > 3) return false;
      out[offset + part] = v;
      part++;
      v = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && v === 0) return false; // leading zero: "01" could be read as octal
      v = v * 10 + (c - 0x30);
      digits++;
      if (v > 255) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** "192.0.2.1" from 4 bytes at `offset`. */
export function formatIPv4(buf: Uint8Array, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/** Canonical text of the 16 bytes at `offset`, as Node formats `socket.remoteAddress`. */
export function formatIPv6(buf: Uint8Array, offset: number): string {
  // Find the longest run of zero words (two or more; leftmost wins a tie).
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  for (let i = 0; i <= 8; i++) {
    const zero = i < 8 && buf[offset + 2 * i] === 0 && buf[offset + 2 * i + 1] === 0;
    if (zero) {
      if (curBase < 0) curBase = i;
    } else if (curBase >= 0) {
      if (i - curBase > bestLen) {
        bestBase = curBase;
        bestLen = i - curBase;
      }
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d), as libuv's inet_ntop writes them.
  if (bestBase === 0 && (bestLen === 6 || (bestLen === 5 && buf[offset + 10] === 0xff && buf[offset + 11] === 0xff))) {
    return `${bestLen === 6 ? '::' : '::ffff:'}${formatIPv4(buf, offset + 12)}`;
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestBase) {
      s += '::';
      i += bestLen - 1;
      continue;
    }
    if (i > 0 && i !== bestBase + bestLen) s += ':';
    s += ((buf[offset + 2 * i]! << 8) | buf[offset + 2 * i + 1]!).toString(16);
  }
  return s;
}
