/**
 * SNI peek: the server name (and ALPN list) of a TLS ClientHello, read without terminating TLS, so
 * an L4 listener can route a TLS stream by name and forward its bytes untouched.
 *
 * Format (RFC 8446 §5.1 and §4.1.2, RFC 6066 §3, RFC 7301 §3.1): the stream starts with TLS
 * records, each `type u8 (22 = handshake) | version u16 (0x03xx) | length u16 (1..16384) | fragment`.
 * The fragments concatenated hold the handshake message `type u8 (1 = ClientHello) | length u24 |
 * body`, and a client may split it over several records. The body is `legacy_version u16 | random
 * [32] | session_id <0..32> | cipher_suites <2..2^16-2> | compression_methods <1..2^8-1> |
 * extensions <0..2^16-1>`; extension 0 (server_name) holds a list of `(name_type u8, name <u16>)`
 * where name_type 0 is host_name; extension 16 holds the ALPN protocol list; extension 43
 * (supported_versions) the versions offered.
 *
 * Like parseProxyHeader, the parser is incremental and pure: pass everything received so far; it
 * answers `incomplete` (read more and call again), `not-tls` (the bytes do not start a TLS
 * handshake record — including SSLv2-style hellos, which carry no SNI), or `hello`. It throws
 * L4ProtocolError `ARCHLAB_TLS_HELLO_INVALID` for records or a ClientHello that break the RFCs, and
 * `ARCHLAB_TLS_HELLO_TOO_LARGE` when the hello would not be complete within `maxBytes` bytes of the
 * stream (default 16384, record headers included; real hellos are 0.2-2 KiB, post-quantum key
 * shares included). The buffer is never consumed or changed: forward all of it to the backend.
 *
 * Results: `serverName` is the host_name lower-cased, or undefined without SNI. It must be a DNS
 * name: 1-253 bytes, labels of 1-63 letters, digits, '-' (not first or last) or '_', no trailing
 * dot, and not an IP literal (RFC 6066 forbids them) — otherwise the hello is invalid. `alpn` is
 * the client's list in its order (empty without the extension). `version` is the highest version
 * the client offers: the largest non-GREASE entry of supported_versions, else legacy_version
 * (0x0304 = TLS 1.3, 0x0303 = TLS 1.2). Only server_name, ALPN and supported_versions are checked
 * for duplicates; other extensions are skipped by length.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { L4ProtocolError } from './errors.js';

export interface ClientHelloInfo {
  kind: 'hello';
  /** The SNI host_name, lower-cased; undefined when the client sent none. */
  serverName: string | undefined;
  /** ALPN protocol names in the client's order; empty when the client sent none. */
  alpn: string[];
  /** Highest TLS version offered: 0x0304 TLS 1.3, 0x0303 TLS 1.2, 0x0302 TLS 1.1, ... */
  version: number;
}

export type ClientHelloResult = { kind: 'incomplete' } | { kind: 'not-tls' } | ClientHelloInfo;

export interface ClientHelloOptions {
  /**
   * Most bytes of the stream (record headers included) the hello may take. Default 16384; at
   * least 64 (no valid ClientHello is shorter than 50 bytes), at most 1 MiB.
   */
  maxBytes?: number;
}

/** Default of ClientHelloOptions.maxBytes. */
export const DEFAULT_CLIENT_HELLO_MAX_BYTES = 16384;

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 8446 §5.1: a plaintext fragment is at most 2^14 bytes. */
const MAX_FRAGMENT = 16384;
/** version 2 + random 32 + session_id length 1 + one cipher suite 2+2 + one compression method 1+1. */
const MIN_HELLO_BODY = 41;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const MAX_HOSTNAME = 253;

const INCOMPLETE: { kind: 'incomplete' } = Object.freeze({ kind: 'incomplete' });
const NOT_TLS: { kind: 'not-tls' } = Object.freeze({ kind: 'not-tls' });

function invalid(message: string, offset: number): L4ProtocolError {
  return new L4ProtocolError('ARCHLAB_TLS_HELLO_INVALID', `invalid TLS ClientHello: ${message}`, { offset });
}

function tooLarge(needBytes: number, maxBytes: number): L4ProtocolError {
  return new L4ProtocolError(
    'ARCHLAB_TLS_HELLO_TOO_LARGE',
    `TLS ClientHello needs more than maxBytes ${maxBytes} bytes${needBytes > 0 ? ` (at least ${needBytes})` : ''}`,
    { offset: maxBytes, maxBytes },
  );
}

/**
 * Reads the ClientHello at the start of `buf` (everything received so far on the connection).
 * See the module comment for the answers, the errors and the limits.
 */
export function parseClientHello(buf: Buffer, options?: ClientHelloOptions): ClientHelloResult {
  let maxBytes = DEFAULT_CLIENT_HELLO_MAX_BYTES;
  if (options?.maxBytes !== undefined) {
    maxBytes = options.maxBytes;
    if (!Number.isInteger(maxBytes) || maxBytes < 64 || maxBytes > 1 << 20) {
      throw new InvalidArgumentError(`maxBytes must be an integer 64..1048576, got ${String(maxBytes)}`);
    }
  }
  const n = buf.length;
  if (n === 0) return INCOMPLETE;
  // A handshake record with a 3.x version is the only start of a TLS 1.0-1.3 connection.
  if (buf[0] !== CONTENT_HANDSHAKE) return NOT_TLS;
  if (n >= 2 && buf[1] !== 3) return NOT_TLS;
  if (n >= 3 && buf[2]! > 4) return NOT_TLS;

  // Walk the records until the handshake message is complete. Nothing is copied yet: the common
  // case, a hello inside the first record, is parsed in place.
  let pos = 0; // start of the current record
  let got = 0; // handshake bytes available in the records walked so far
  let need = -1; // total handshake message bytes (4 + body), once its header has been read
  let bodyLen = 0;
  let records = 0;
  for (;;) {
    if (pos + RECORD_HEADER > n) {
      if (pos < n) checkRecordStart(buf, pos, n);
      return incompleteWithin(n, maxBytes);
    }
    checkRecordStart(buf, pos, n);
    const rlen = buf.readUInt16BE(pos + 3);
    if (rlen === 0) throw invalid('empty handshake record', pos + 3);
    if (rlen > MAX_FRAGMENT) throw invalid(`record length ${rlen} exceeds 16384`, pos + 3);
    records++;
    const frag = pos + RECORD_HEADER;
    const avail = n - frag < rlen ? n - frag : rlen;
    // The handshake header may itself be split across records: read its 4 bytes as they come.
    for (let i = 0; need < 0 && i < avail; i++) {
      const b = buf[frag + i]!;
      const k = got + i;
      if (k === 0) {
        if (b !== HANDSHAKE_CLIENT_HELLO) throw invalid(`handshake type ${b}, expected 1 (ClientHello)`, frag + i);
      } else {
        bodyLen = (bodyLen << 8) | b;
        if (k === 3) {
          if (bodyLen < MIN_HELLO_BODY) throw invalid(`ClientHello body of ${bodyLen} bytes is shorter than ${MIN_HELLO_BODY}`, frag + i - 2);
          need = HANDSHAKE_HEADER + bodyLen;
          // The rest of the message needs at least this many stream bytes.
          const minStream = frag + (need - got);
          if (minStream > maxBytes) throw tooLarge(minStream, maxBytes);
        }
      }
    }
    got += avail;
    if (need >= 0 && got >= need) break;
    if (avail < rlen) return incompleteWithin(n, maxBytes);
    pos = frag + rlen;
  }

  if (records === 1) return parseHello(buf, RECORD_HEADER, RECORD_HEADER + need, RECORD_HEADER);
  // Reassemble the fragments (already validated above) into one message.
  const msg = Buffer.allocUnsafe(need);
  let copied = 0;
  pos = 0;
  while (copied < need) {
    const rlen = buf.readUInt16BE(pos + 3);
    const take = need - copied < rlen ? need - copied : rlen;
    buf.copy(msg, copied, pos + RECORD_HEADER, pos + RECORD_HEADER + take);
    copied += take;
    pos += RECORD_HEADER + rlen;
  }
  return parseHello(msg, 0, need, -1);
}

/** Validates the type and version bytes of the record header at `pos` that have arrived. */
function checkRecordStart(buf: Buffer, pos: number, n: number): void {
  // Handshake messages may not be interleaved with other record types (RFC 8446 §5.1).
  if (buf[pos] !== CONTENT_HANDSHAKE) throw invalid(`record type ${buf[pos]} before the ClientHello ended`, pos);
  if (pos + 1 < n && buf[pos + 1] !== 3) throw invalid(`record version major ${buf[pos + 1]}, expected 3`, pos + 1);
}

function incompleteWithin(n: number, maxBytes: number): ClientHelloResult {
  if (n >= maxBytes) throw tooLarge(0, maxBytes);
  return INCOMPLETE;
}

/**
 * Parses the ClientHello message msg[start, end) (handshake header included). `base` maps an
 * offset in msg back to the caller's buffer for error details (-1 when msg was reassembled).
 */
function parseHello(msg: Buffer, start: number, end: number, base: number): ClientHelloInfo {
  const at = (p: number): number => (base < 0 ? -1 : p - start + base);
  const need = (p: number, k: number, what: string): void => {
    if (p + k > end) throw invalid(`${what} runs past the end of the ClientHello`, at(p));
  };
  let p = start + HANDSHAKE_HEADER;
  const legacyVersion = msg.readUInt16BE(p);
  if (legacyVersion >> 8 !== 3) throw invalid(`legacy_version 0x${legacyVersion.toString(16)}, expected 0x03xx`, at(p));
  p += 2 + 32; // random
  const sidLen = msg[p]!;
  if (sidLen > 32) throw invalid(`session_id of ${sidLen} bytes, at most 32`, at(p));
  need(p + 1, sidLen, 'session_id');
  p += 1 + sidLen;
  need(p, 2, 'cipher_suites length');
  const csLen = msg.readUInt16BE(p);
  if (csLen < 2 || (csLen & 1) !== 0) throw invalid(`cipher_suites length ${csLen}, expected a positive even number`, at(p));
  need(p + 2, csLen, 'cipher_suites');
  p += 2 + csLen;
  need(p, 1, 'compression_methods length');
  const compLen = msg[p]!;
  if (compLen < 1) throw invalid('no compression_methods', at(p));
  need(p + 1, compLen, 'compression_methods');
  p += 1 + compLen;

  let serverName: string | undefined;
  let alpn: string[] | undefined;
  let version = legacyVersion;
  let sawSupportedVersions = false;
  if (p < end) {
    need(p, 2, 'extensions length');
    const extLen = msg.readUInt16BE(p);
    p += 2;
    if (p + extLen !== end) throw invalid(`extensions length ${extLen} does not match the ${end - p} bytes left`, at(p - 2));
    while (p < end) {
      need(p, 4, 'extension header');
      const type = msg.readUInt16BE(p);
      const len = msg.readUInt16BE(p + 2);
      const data = p + 4;
      need(data, len, `extension ${type}`);
      const dataEnd = data + len;
      if (type === EXT_SERVER_NAME) {
        if (serverName !== undefined) throw invalid('two server_name extensions', at(p));
        serverName = readServerName(msg, data, dataEnd, at);
      } else if (type === EXT_ALPN) {
        if (alpn !== undefined) throw invalid('two ALPN extensions', at(p));
        alpn = readAlpn(msg, data, dataEnd, at);
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        if (sawSupportedVersions) throw invalid('two supported_versions extensions', at(p));
        sawSupportedVersions = true;
        version = readSupportedVersions(msg, data, dataEnd, legacyVersion, at);
      }
      p = dataEnd;
    }
  }
  return { kind: 'hello', serverName, alpn: alpn ?? [], version };
}

function readServerName(msg: Buffer, p: number, end: number, at: (p: number) => number): string {
  if (end - p < 2) throw invalid('server_name extension without a server name list', at(p));
  const listLen = msg.readUInt16BE(p);
  if (listLen === 0 || p + 2 + listLen !== end) throw invalid(`server_name list length ${listLen} does not fill the extension`, at(p));
  let q = p + 2;
  let host: string | undefined;
  while (q < end) {
    if (q + 3 > end) throw invalid('truncated server_name entry', at(q));
    const nameType = msg[q]!;
    const len = msg.readUInt16BE(q + 1);
    q += 3;
    if (q + len > end) throw invalid('server_name entry runs past its extension', at(q - 2));
    if (nameType === 0) {
      // RFC 6066 §3: no more than one name of the same name_type.
      if (host !== undefined) throw invalid('two host_name entries in server_name', at(q - 3));
      host = readHostName(msg, q, q + len, at);
    }
    q += len;
  }
  if (host === undefined) throw invalid('server_name extension without a host_name', at(p));
  return host;
}

/** Validates a DNS name byte by byte, then makes one string (lower-cased only if needed). */
function readHostName(msg: Buffer, p: number, end: number, at: (p: number) => number): string {
  const len = end - p;
  const fail = (why: string): L4ProtocolError => invalid(`server name ${JSON.stringify(msg.toString('latin1', p, end))} ${why}`, at(p));
  if (len === 0) throw fail('is empty');
  if (len > MAX_HOSTNAME) throw fail(`is ${len} bytes, a DNS name has at most ${MAX_HOSTNAME}`);
  let labelStart = p;
  let upper = false;
  let labelAllDigits = true;
  for (let i = p; i <= end; i++) {
    const c = i < end ? msg[i]! : 0x2e;
    if (c === 0x2e) {
      const labelLen = i - labelStart;
      if (labelLen === 0) throw fail(i === end ? 'ends with a dot' : 'has an empty label');
      if (labelLen > 63) throw fail('has a label over 63 bytes');
      if (msg[labelStart] === 0x2d || msg[i - 1] === 0x2d) throw fail('has a label starting or ending with "-"');
      // An all-numeric last label means an IPv4 literal (RFC 6066 forbids IP literals) or no DNS name.
      if (i === end && labelAllDigits) throw fail('is an IP literal or has an all-numeric top-level label');
      labelStart = i + 1;
      labelAllDigits = true;
      continue;
    }
    if (c >= 0x61 && c <= 0x7a) {
      labelAllDigits = false;
    } else if (c >= 0x41 && c <= 0x5a) {
      upper = true;
      labelAllDigits = false;
    } else if (c >= 0x30 && c <= 0x39) {
      // digit
    } else if (c === 0x2d || c === 0x5f) {
      labelAllDigits = false;
    } else {
      throw fail(`has byte 0x${c.toString(16).padStart(2, '0')}, expected letters, digits, "-", "_" and dots`);
    }
  }
  const name = msg.toString('latin1', p, end);
  return upper ? name.toLowerCase() : name;
}

function readAlpn(msg: Buffer, p: number, end: number, at: (p: number) => number): string[] {
  if (end - p < 2) throw invalid('ALPN extension without a protocol list', at(p));
  const listLen = msg.readUInt16BE(p);
  if (listLen < 2 || p + 2 + listLen !== end) throw invalid(`ALPN list length ${listLen} does not fill the extension`, at(p));
  const out: string[] = [];
  let q = p + 2;
  while (q < end) {
    const len = msg[q]!;
    if (len === 0) throw invalid('empty ALPN protocol name', at(q));
    if (q + 1 + len > end) throw invalid('ALPN protocol name runs past its extension', at(q));
    out.push(msg.toString('latin1', q + 1, q + 1 + len));
    q += 1 + len;
  }
  return out;
}

function readSupportedVersions(msg: Buffer, p: number, end: number, legacy: number, at: (p: number) => number): number {
  const len = end > p ? msg[p]! : 0;
  if (len < 2 || (len & 1) !== 0 || p + 1 + len !== end) throw invalid('malformed supported_versions extension', at(p));
  let best = -1;
  for (let q = p + 1; q < end; q += 2) {
    const v = msg.readUInt16BE(q);
    // GREASE values (RFC 8701) are 0x?a?a with equal bytes: ignore them.
    if ((v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff)) continue;
    if (v > best) best = v;
  }
  return best < 0 ? legacy : best;
}
