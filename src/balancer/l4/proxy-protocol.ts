/**
 * HAProxy's PROXY protocol, versions 1 and 2 (haproxy doc/proxy-protocol.txt): a header a proxy
 * puts in front of a relayed TCP stream so the next hop learns the original client's address.
 *
 * - v1 is one US-ASCII line, at most 107 bytes with its CRLF:
 *   `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, `PROXY TCP6 ...`, or `PROXY UNKNOWN ...\r\n`
 *   (everything after UNKNOWN is ignored). Numbers never have leading zeros.
 * - v2 is binary: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, a version/command byte (0x20 LOCAL,
 *   0x21 PROXY), a family/protocol byte (0x11 TCP4, 0x12 UDP4, 0x21 TCP6, 0x22 UDP6, 0x31/0x32
 *   UNIX, 0x00 unspecified), a big-endian u16 length, then that many bytes: the address block
 *   (12, 36 or 216 bytes) followed by TLVs (type u8, length u16, value).
 *
 * The parser is incremental and never copies: call it with everything received so far; it answers
 * `incomplete` (read more, then call again with the longer buffer), `none` (these bytes are not a
 * PROXY header: a listener with optional acceptance passes them on untouched), or `header` with the
 * number of bytes to skip. Bytes that start like a header but break the spec throw
 * L4ProtocolError `ARCHLAB_PROXY_PROTOCOL_INVALID`; a v1 line without CRLF in 107 bytes or a v2
 * block longer than `maxV2Bytes` (default 4096, the spec allows 16 + 65535) throws
 * `ARCHLAB_PROXY_PROTOCOL_TOO_LARGE`. Both versions report one vocabulary: `family` is 'inet' |
 * 'inet6' | 'unix' | 'unspec' (v1 TCP4 -> inet, TCP6 -> inet6, UNKNOWN -> unspec) and `protocol`
 * 'stream' | 'dgram'. Addresses are formatted as Node formats `socket.remoteAddress`.
 *
 * What the receiver should do with a header (spec §2.1, §2.2): for command LOCAL, or family
 * 'unspec', use the real connection's endpoints; no addresses are reported then. v2 combinations
 * the spec leaves without a layout (a family with protocol 0) report neither addresses nor TLVs.
 * TLV values are views into the caller's buffer (no copy): copy them to keep them past the buffer's
 * reuse. CRC32C TLVs (type 0x03) are returned, not verified.
 *
 * Security (spec §2): a listener must only accept PROXY headers from trusted peers; this module
 * parses, the shell decides whom to believe.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { L4ProtocolError } from './errors.js';
import { formatIPv4, formatIPv6, writeIPv4, writeIPv6 } from './ip.js';

export type ProxyCommand = 'PROXY' | 'LOCAL';
/** Address family, v2 vocabulary (v1's TCP4/TCP6/UNKNOWN map to inet/inet6/unspec). */
export type ProxyFamily = 'inet' | 'inet6' | 'unix' | 'unspec';
export type ProxyTransport = 'stream' | 'dgram';

/** One v2 Type-Length-Value; `value` is at most 65535 bytes. Registered types: see PP2_TYPE. */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** TLV types registered by the spec (§2.2). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** What encodeV1 writes. For UNKNOWN the short form `PROXY UNKNOWN\r\n` is sent; addresses are ignored. */
export type ProxyV1Info =
  | { family: 'TCP4' | 'TCP6'; srcAddr: string; dstAddr: string; srcPort: number; dstPort: number }
  | { family: 'UNKNOWN'; srcAddr?: string; dstAddr?: string; srcPort?: number; dstPort?: number };

/**
 * What encodeV2 writes. For family 'unspec' no address block is written and the family/protocol
 * byte is 0x00, as the spec asks for LOCAL and unsupported families.
 */
export type ProxyV2Info = {
  command: ProxyCommand;
  tlvs?: readonly ProxyTlv[];
} & (
  | { family: 'inet' | 'inet6'; protocol: ProxyTransport; srcAddr: string; dstAddr: string; srcPort: number; dstPort: number }
  | { family: 'unspec'; protocol?: ProxyTransport; srcAddr?: string; dstAddr?: string; srcPort?: number; dstPort?: number }
);

/** A complete, valid header at the start of the buffer. */
export interface ProxyHeader {
  kind: 'header';
  /** Bytes the header occupies at the start of the buffer: skip them, the stream's data follows. */
  length: number;
  version: 1 | 2;
  command: ProxyCommand;
  family: ProxyFamily;
  /** Undefined when the family is 'unspec' or v2 sent protocol 0. */
  protocol: ProxyTransport | undefined;
  /** Set only for command PROXY with family inet/inet6 (ports too) or unix (paths, no ports). */
  srcAddr: string | undefined;
  dstAddr: string | undefined;
  srcPort: number | undefined;
  dstPort: number | undefined;
  /** v2 TLVs in wire order (always empty for v1). Values are views into the parsed buffer. */
  tlvs: readonly ProxyTlv[];
}

export type ProxyParseResult = { kind: 'incomplete' } | { kind: 'none' } | ProxyHeader;

export interface ProxyParseOptions {
  /**
   * Largest v2 header accepted, signature and length field included (16 + length), in bytes.
   * Default 4096; at least 16, at most 65551 (the format's own limit). A v1 line is always
   * limited to 107 bytes by the spec.
   */
  maxV2Bytes?: number;
}

/** Default of ProxyParseOptions.maxV2Bytes. */
export const DEFAULT_PROXY_V2_MAX_BYTES = 4096;
/** Longest v1 line the spec allows, CRLF included. */
export const PROXY_V1_MAX_BYTES = 107;
/** The 12 bytes every v2 header starts with. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

const V2_FIXED = 16;
const V2_MAX_TOTAL = V2_FIXED + 0xffff;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_UNKNOWN_SHORT = Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
const FAMILIES: readonly ProxyFamily[] = ['unspec', 'inet', 'inet6', 'unix'];
/** Address block length of each v2 family (index = family nibble) when the protocol is stream/dgram. */
const ADDR_LEN = [0, 12, 36, 216] as const;
const UNIX_PATH = 108;

const INCOMPLETE: { kind: 'incomplete' } = Object.freeze({ kind: 'incomplete' });
const NONE: { kind: 'none' } = Object.freeze({ kind: 'none' });
const NO_TLVS: readonly ProxyTlv[] = Object.freeze([]);
/** Scratch for address validation while encoding and parsing v1; never escapes a call. */
const scratch = Buffer.alloc(16);
const PORT_TEXT = /^(?:0|[1-9][0-9]{0,4})$/;

// ---------------------------------------------------------------------------------------------
// Encoding

/** `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`. Throws InvalidArgumentError on a bad address or port. */
export function encodeV1(info: ProxyV1Info): Buffer {
  if (info.family === 'UNKNOWN') return Buffer.from(V1_UNKNOWN_SHORT);
  if (info.family !== 'TCP4' && info.family !== 'TCP6') {
    throw new InvalidArgumentError(`PROXY v1 family must be TCP4, TCP6 or UNKNOWN, got ${JSON.stringify(info.family)}`);
  }
  const v4 = info.family === 'TCP4';
  const src = v4 ? ipv4Text(info.srcAddr, 'srcAddr') : ipv6Text(info.srcAddr, 'srcAddr');
  const dst = v4 ? ipv4Text(info.dstAddr, 'dstAddr') : ipv6Text(info.dstAddr, 'dstAddr');
  checkPort(info.srcPort, 'srcPort');
  checkPort(info.dstPort, 'dstPort');
  return Buffer.from(`PROXY ${info.family} ${src} ${dst} ${info.srcPort} ${info.dstPort}\r\n`, 'latin1');
}

/** The binary v2 header, TLVs included, in one buffer. Throws InvalidArgumentError on bad input. */
export function encodeV2(info: ProxyV2Info): Buffer {
  const { command, family } = info;
  if (command !== 'PROXY' && command !== 'LOCAL') {
    throw new InvalidArgumentError(`PROXY v2 command must be PROXY or LOCAL, got ${JSON.stringify(command)}`);
  }
  let famNibble: number;
  if (family === 'inet') famNibble = 1;
  else if (family === 'inet6') famNibble = 2;
  else if (family === 'unspec') famNibble = 0;
  else throw new InvalidArgumentError(`PROXY v2 family must be inet, inet6 or unspec, got ${JSON.stringify(family)}`);
  let famProto = 0;
  if (famNibble !== 0) {
    const { protocol } = info;
    if (protocol !== 'stream' && protocol !== 'dgram') {
      throw new InvalidArgumentError(`PROXY v2 protocol must be stream or dgram, got ${JSON.stringify(protocol)}`);
    }
    famProto = (famNibble << 4) | (protocol === 'stream' ? 1 : 2);
  }
  const addrLen = ADDR_LEN[famNibble as 0 | 1 | 2]!;
  const tlvs = info.tlvs ?? NO_TLVS;
  let tlvLen = 0;
  for (let i = 0; i < tlvs.length; i++) {
    const tlv = tlvs[i]!;
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xff) {
      throw new InvalidArgumentError(`PROXY v2 TLV type must be an integer 0..255, got ${String(tlv.type)}`, { index: i });
    }
    if (!(tlv.value instanceof Uint8Array) || tlv.value.length > 0xffff) {
      throw new InvalidArgumentError('PROXY v2 TLV value must be a Buffer of at most 65535 bytes', { index: i, type: tlv.type });
    }
    tlvLen += 3 + tlv.value.length;
  }
  const len = addrLen + tlvLen;
  if (len > 0xffff) {
    throw new InvalidArgumentError(`PROXY v2 header would be ${len} bytes after the fixed part; the format allows 65535`);
  }
  const out = Buffer.allocUnsafe(V2_FIXED + len);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = command === 'PROXY' ? 0x21 : 0x20;
  out[13] = famProto;
  out.writeUInt16BE(len, 14);
  if (info.family === 'inet') {
    writeAddr4(info.srcAddr, out, 16, 'srcAddr');
    writeAddr4(info.dstAddr, out, 20, 'dstAddr');
    writePort(info.srcPort, out, 24, 'srcPort');
    writePort(info.dstPort, out, 26, 'dstPort');
  } else if (info.family === 'inet6') {
    writeAddr6(info.srcAddr, out, 16, 'srcAddr');
    writeAddr6(info.dstAddr, out, 32, 'dstAddr');
    writePort(info.srcPort, out, 48, 'srcPort');
    writePort(info.dstPort, out, 50, 'dstPort');
  }
  let off = V2_FIXED + addrLen;
  for (let i = 0; i < tlvs.length; i++) {
    const tlv = tlvs[i]!;
    out[off] = tlv.type;
    out.writeUInt16BE(tlv.value.length, off + 1);
    out.set(tlv.value, off + 3);
    off += 3 + tlv.value.length;
  }
  return out;
}

function bad(what: string, value: unknown, expected: string): InvalidArgumentError {
  return new InvalidArgumentError(`invalid ${what} ${JSON.stringify(value)}: expected ${expected}`, { [what]: value });
}

function checkPort(port: unknown, what: string): asserts port is number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) throw bad(what, port, 'an integer 0..65535');
}

function writePort(port: number, out: Buffer, offset: number, what: string): void {
  checkPort(port, what);
  out.writeUInt16BE(port, offset);
}

/** IPv4 bytes of a dotted quad, or of an IPv4-mapped IPv6 address (what a dual-stack socket reports). */
function writeAddr4(text: string, out: Uint8Array, offset: number, what: string): void {
  if (typeof text === 'string') {
    if (writeIPv4(text, out, offset)) return;
    if (writeIPv6(text, scratch, 0) && isV4Mapped(scratch)) {
      out.set(scratch.subarray(12, 16), offset);
      return;
    }
  }
  throw bad(what, text, 'an IPv4 address such as "192.0.2.1" (or "::ffff:192.0.2.1")');
}

function writeAddr6(text: string, out: Uint8Array, offset: number, what: string): void {
  if (typeof text !== 'string' || !writeIPv6(text, out, offset)) {
    throw bad(what, text, 'an IPv6 address such as "2001:db8::1", without zone or brackets');
  }
}

function ipv4Text(text: string, what: string): string {
  writeAddr4(text, scratch, 0, what);
  return formatIPv4(scratch, 0);
}

function ipv6Text(text: string, what: string): string {
  writeAddr6(text, scratch, 0, what);
  return formatIPv6(scratch, 0);
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Looks for a PROXY header (v1 or v2) at the start of `buf`, which holds everything received so
 * far on the connection. See the module comment for the three answers and the errors.
 */
export function parseProxyHeader(buf: Buffer, options?: ProxyParseOptions): ProxyParseResult {
  let maxV2 = DEFAULT_PROXY_V2_MAX_BYTES;
  if (options?.maxV2Bytes !== undefined) {
    maxV2 = options.maxV2Bytes;
    if (!Number.isInteger(maxV2) || maxV2 < V2_FIXED || maxV2 > V2_MAX_TOTAL) {
      throw new InvalidArgumentError(`maxV2Bytes must be an integer ${V2_FIXED}..${V2_MAX_TOTAL}, got ${String(maxV2)}`);
    }
  }
  if (buf.length === 0) return INCOMPLETE;
  const first = buf[0];
  if (first === 0x0d) return parseV2(buf, maxV2);
  if (first === 0x50) return parseV1(buf);
  return NONE;
}

function invalid(message: string, version: 1 | 2, offset: number): L4ProtocolError {
  return new L4ProtocolError('ARCHLAB_PROXY_PROTOCOL_INVALID', `invalid PROXY protocol v${version} header: ${message}`, { version, offset });
}

function header(
  length: number,
  version: 1 | 2,
  command: ProxyCommand,
  family: ProxyFamily,
  protocol: ProxyTransport | undefined,
  srcAddr: string | undefined,
  dstAddr: string | undefined,
  srcPort: number | undefined,
  dstPort: number | undefined,
  tlvs: readonly ProxyTlv[],
): ProxyHeader {
  // One constructor, one property order: every result shares a hidden class.
  return { kind: 'header', length, version, command, family, protocol, srcAddr, dstAddr, srcPort, dstPort, tlvs };
}

function parseV2(buf: Buffer, maxV2: number): ProxyParseResult {
  const n = buf.length;
  const sigEnd = n < 12 ? n : 12;
  for (let i = 1; i < sigEnd; i++) if (buf[i] !== PROXY_V2_SIGNATURE[i]) return NONE;
  // Check each fixed byte as soon as it arrives, so a bad header fails before the length is read.
  if (n < 13) return INCOMPLETE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) throw invalid(`version ${verCmd >> 4}, expected 2`, 2, 12);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw invalid(`command 0x${cmd.toString(16)}, expected 0x0 (LOCAL) or 0x1 (PROXY)`, 2, 12);
  if (n < 14) return INCOMPLETE;
  const famProto = buf[13]!;
  const fam = famProto >> 4;
  const proto = famProto & 0x0f;
  if (fam > 3) throw invalid(`address family 0x${fam.toString(16)}, expected 0x0..0x3`, 2, 13);
  if (proto > 2) throw invalid(`transport protocol 0x${proto.toString(16)}, expected 0x0..0x2`, 2, 13);
  if (n < V2_FIXED) return INCOMPLETE;
  const len = buf.readUInt16BE(14);
  const total = V2_FIXED + len;
  if (total > maxV2) {
    throw new L4ProtocolError('ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', `PROXY protocol v2 header of ${total} bytes exceeds maxV2Bytes ${maxV2}`, {
      version: 2,
      offset: 14,
      length: total,
      maxV2Bytes: maxV2,
    });
  }
  if (n < total) return INCOMPLETE;

  const command: ProxyCommand = cmd === 1 ? 'PROXY' : 'LOCAL';
  const family = FAMILIES[fam]!;
  if (fam === 0) return header(total, 2, command, 'unspec', undefined, undefined, undefined, undefined, undefined, parseTlvs(buf, V2_FIXED, total));
  const protocol: ProxyTransport | undefined = proto === 1 ? 'stream' : proto === 2 ? 'dgram' : undefined;
  // A family with protocol 0 has no defined address layout, so where TLVs would start is unknown.
  if (protocol === undefined) return header(total, 2, command, family, undefined, undefined, undefined, undefined, undefined, NO_TLVS);
  const addrLen = ADDR_LEN[fam as 1 | 2 | 3];
  if (len < addrLen) {
    // LOCAL: the receiver ignores the block anyway (spec §2.2), so a short one is harmless.
    if (command === 'LOCAL') return header(total, 2, command, family, protocol, undefined, undefined, undefined, undefined, NO_TLVS);
    throw invalid(`${family} addresses need ${addrLen} bytes but the header length is ${len}`, 2, 14);
  }
  const tlvs = parseTlvs(buf, V2_FIXED + addrLen, total);
  if (command === 'LOCAL') return header(total, 2, command, family, protocol, undefined, undefined, undefined, undefined, tlvs);
  const a = V2_FIXED;
  if (fam === 1) {
    return header(total, 2, command, family, protocol, formatIPv4(buf, a), formatIPv4(buf, a + 4), buf.readUInt16BE(a + 8), buf.readUInt16BE(a + 10), tlvs);
  }
  if (fam === 2) {
    return header(total, 2, command, family, protocol, formatIPv6(buf, a), formatIPv6(buf, a + 16), buf.readUInt16BE(a + 32), buf.readUInt16BE(a + 34), tlvs);
  }
  return header(total, 2, command, family, protocol, unixPath(buf, a), unixPath(buf, a + UNIX_PATH), undefined, undefined, tlvs);
}

/** A NUL-padded AF_UNIX path of 108 bytes. */
function unixPath(buf: Buffer, offset: number): string {
  let end = buf.indexOf(0, offset);
  if (end < 0 || end > offset + UNIX_PATH) end = offset + UNIX_PATH;
  return buf.toString('utf8', offset, end);
}

function parseTlvs(buf: Buffer, from: number, to: number): readonly ProxyTlv[] {
  if (from === to) return NO_TLVS;
  const tlvs: ProxyTlv[] = [];
  let off = from;
  while (off < to) {
    if (off + 3 > to) throw invalid(`${to - off} trailing bytes cannot hold a TLV header (3 bytes)`, 2, off);
    const vlen = buf.readUInt16BE(off + 1);
    if (off + 3 + vlen > to) throw invalid(`TLV type 0x${buf[off]!.toString(16)} of ${vlen} bytes overruns the header by ${off + 3 + vlen - to}`, 2, off);
    tlvs.push({ type: buf[off]!, value: buf.subarray(off + 3, off + 3 + vlen) });
    off += 3 + vlen;
  }
  return tlvs;
}

function parseV1(buf: Buffer): ProxyParseResult {
  const n = buf.length;
  const prefixEnd = n < V1_PREFIX.length ? n : V1_PREFIX.length;
  for (let i = 1; i < prefixEnd; i++) {
    if (buf[i] !== V1_PREFIX[i]) {
      // "PROXY" identifies v1 (spec §2.2); after it, anything but a space is a broken header.
      if (i < 5) return NONE;
      throw invalid('expected a space after "PROXY"', 1, i);
    }
  }
  if (n <= V1_PREFIX.length) return INCOMPLETE;
  // The CR must sit at index 105 at the latest so that the line, CRLF included, fits 107 bytes.
  const lastCr = PROXY_V1_MAX_BYTES - 2;
  const scanEnd = n - 1 < lastCr ? n - 1 : lastCr;
  let cr = -1;
  for (let i = V1_PREFIX.length; i <= scanEnd; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      cr = i;
      break;
    }
    // Printable US-ASCII only; this also refuses a bare LF as the line's end.
    if (c < 0x20 || c > 0x7e) throw invalid(`byte 0x${c.toString(16).padStart(2, '0')} in the header line`, 1, i);
  }
  if (cr < 0) {
    if (n > lastCr) {
      throw new L4ProtocolError('ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', `PROXY protocol v1 line has no CRLF within ${PROXY_V1_MAX_BYTES} bytes`, {
        version: 1,
        offset: PROXY_V1_MAX_BYTES,
      });
    }
    return INCOMPLETE;
  }
  if (cr + 1 >= n) return INCOMPLETE;
  if (buf[cr + 1] !== 0x0a) throw invalid('CR not followed by LF', 1, cr + 1);
  const length = cr + 2;

  const fields = buf.toString('latin1', V1_PREFIX.length, cr).split(' ');
  const fam = fields[0];
  if (fam === 'UNKNOWN') {
    // The receiver "must ignore anything presented before the CRLF" (spec §2.1).
    return header(length, 1, 'PROXY', 'unspec', undefined, undefined, undefined, undefined, undefined, NO_TLVS);
  }
  if (fam !== 'TCP4' && fam !== 'TCP6') throw invalid(`protocol ${JSON.stringify(fam)}, expected TCP4, TCP6 or UNKNOWN`, 1, V1_PREFIX.length);
  if (fields.length !== 5) throw invalid(`expected "${fam} <src> <dst> <srcport> <dstport>" separated by single spaces`, 1, V1_PREFIX.length);
  const v4 = fam === 'TCP4';
  const src = v1Address(fields[1]!, v4, 'source');
  const dst = v1Address(fields[2]!, v4, 'destination');
  const srcPort = v1Port(fields[3]!, 'source');
  const dstPort = v1Port(fields[4]!, 'destination');
  return header(length, 1, 'PROXY', v4 ? 'inet' : 'inet6', 'stream', src, dst, srcPort, dstPort, NO_TLVS);
}

function v1Address(text: string, v4: boolean, which: string): string {
  if (v4) {
    // A strict dotted quad is already canonical.
    if (writeIPv4(text, scratch, 0)) return text;
    throw invalid(`${which} address ${JSON.stringify(text)} is not an IPv4 address (dotted quad, no leading zeros)`, 1, V1_PREFIX.length);
  }
  if (writeIPv6(text, scratch, 0)) return formatIPv6(scratch, 0);
  throw invalid(`${which} address ${JSON.stringify(text)} is not an IPv6 address`, 1, V1_PREFIX.length);
}

function v1Port(text: string, which: string): number {
  const port = PORT_TEXT.test(text) ? Number(text) : -1;
  if (port < 0 || port > 0xffff) throw invalid(`${which} port ${JSON.stringify(text)}, expected 0..65535 without leading zeros`, 1, V1_PREFIX.length);
  return port;
}
