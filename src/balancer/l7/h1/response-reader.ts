/**
 * A strict HTTP/1.1 response reader for the balancer's own upstream connections (h1/upstream.ts):
 * bytes in, one response out (head, body chunks with the framing removed, end), pure and
 * synchronous so every framing rule is tested on bytes alone.
 *
 * Framing follows RFC 9112 §6: no body for a HEAD request, 1xx, 204 and 304; `Transfer-Encoding:
 * chunked` decoded; `Content-Length` counted; neither means the body runs to the end of the
 * connection. What a proxy must not pass on is an error instead, and the connection is not reused:
 * Transfer-Encoding with Content-Length, differing Content-Lengths, a transfer coding other than
 * chunked, obs-fold, control characters, a head over `maxHeadBytes`, 101 to a request that asked for
 * no upgrade, and bytes after the response (HTTP/1.1 responses come only when asked for).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { FieldObject, fieldName, INVALID_FIELD_VALUE_CHAR } from '../../../core/http.js';

/** What the reader found wrong, with a short reason for logs and the 502 body. */
export class UpstreamProtocolError extends Error {
  readonly code = 'ARCHLAB_UPSTREAM_PROTOCOL';
}

export interface ResponseSink {
  /** The final (non-1xx) status and head; `reusable` says whether the connection may carry another exchange once this one ends. */
  onHead(status: number, message: string, headers: IncomingHttpHeaders): void;
  onBody(chunk: Buffer): void;
  /** The whole response is in; `reusable` is false when the connection must close (close-delimited body, `Connection: close`, HTTP/1.0). */
  onEnd(reusable: boolean): void;
}

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const HEX = /^[0-9a-fA-F]{1,12}$/;
/** Longest chunk-size line (with extensions) and trailer section accepted. */
const MAX_CHUNK_LINE = 4096;

const CONTENT_LENGTH = /^\d{1,15}$/;

type State = 'head' | 'fixed' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'until-close' | 'done';

export class ResponseReader {
  private state: State = 'head';
  /** Bytes of an incomplete head, chunk-size line or trailer section, kept across pushes. */
  private pending: Buffer | undefined;
  private remaining = 0;
  private reusable = true;

  constructor(
    private readonly sink: ResponseSink,
    private readonly headRequest: boolean,
    private readonly maxHeadBytes: number,
  ) {}

  /** True once the response has ended (onEnd was called). */
  get done(): boolean {
    return this.state === 'done';
  }

  /** True while the body runs to the end of the connection: EOF then ends it instead of failing it. */
  get untilClose(): boolean {
    return this.state === 'until-close';
  }

  /** The connection reached EOF. Ends a close-delimited body; anywhere else the response is cut short. */
  eof(): void {
    if (this.state === 'until-close') {
      this.state = 'done';
      this.sink.onEnd(false);
      return;
    }
    if (this.state !== 'done') throw new UpstreamProtocolError(this.state === 'head' ? 'connection closed before a response' : 'connection closed in the middle of the response body');
  }

  /** Feeds bytes; throws UpstreamProtocolError on a response that must not be passed on. */
  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let at = 0;
    while (at < buf.length) {
      switch (this.state) {
        case 'head': {
          const end = buf.indexOf(CRLFCRLF, at);
          if (end < 0) {
            if (buf.length - at > this.maxHeadBytes) throw new UpstreamProtocolError(`response head over ${this.maxHeadBytes} bytes`);
            this.pending = buf.subarray(at);
            return;
          }
          if (end - at > this.maxHeadBytes) throw new UpstreamProtocolError(`response head over ${this.maxHeadBytes} bytes`);
          const complete = this.head(buf.toString('latin1', at, end));
          at = end + 4;
          if (complete) return this.end(at < buf.length);
          break;
        }
        case 'fixed': {
          const n = Math.min(this.remaining, buf.length - at);
          this.remaining -= n;
          const part = n === buf.length && at === 0 ? buf : buf.subarray(at, at + n);
          at += n;
          this.sink.onBody(part);
          if (this.remaining === 0) return this.end(at < buf.length);
          break;
        }
        case 'until-close': {
          this.sink.onBody(at === 0 ? buf : buf.subarray(at));
          return;
        }
        case 'chunk-size': {
          const eol = buf.indexOf(CRLF, at);
          if (eol < 0) {
            if (buf.length - at > MAX_CHUNK_LINE) throw new UpstreamProtocolError('chunk-size line too long');
            this.pending = buf.subarray(at);
            return;
          }
          if (eol - at > MAX_CHUNK_LINE) throw new UpstreamProtocolError('chunk-size line too long');
          const line = buf.toString('latin1', at, eol);
          const semi = line.indexOf(';');
          const hex = (semi < 0 ? line : line.slice(0, semi)).trimEnd();
          if (!HEX.test(hex)) throw new UpstreamProtocolError('bad chunk size');
          this.remaining = parseInt(hex, 16);
          at = eol + 2;
          this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          const n = Math.min(this.remaining, buf.length - at);
          this.remaining -= n;
          this.sink.onBody(buf.subarray(at, at + n));
          at += n;
          if (this.remaining === 0) this.state = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf': {
          if (buf.length - at < 2) {
            this.pending = buf.subarray(at);
            return;
          }
          if (buf[at] !== 13 || buf[at + 1] !== 10) throw new UpstreamProtocolError('chunk data not followed by CRLF');
          at += 2;
          this.state = 'chunk-size';
          break;
        }
        case 'trailers': {
          // Trailer fields are dropped (a proxy MAY discard them, RFC 9110 §6.5.1); the section ends at an empty line.
          if (buf.length - at >= 2 && buf[at] === 13 && buf[at + 1] === 10) {
            at += 2;
            return this.end(at < buf.length);
          }
          const end = buf.indexOf(CRLFCRLF, at);
          if (end < 0) {
            if (buf.length - at > MAX_CHUNK_LINE) throw new UpstreamProtocolError('trailer section too long');
            this.pending = buf.subarray(at);
            return;
          }
          at = end + 4;
          return this.end(at < buf.length);
        }
        case 'done':
          throw new UpstreamProtocolError('bytes after the end of the response');
      }
    }
  }

  /**
   * The response is complete. Bytes after it (`trailing`) were not asked for: they are dropped and
   * the connection is not reused.
   */
  private end(trailing: boolean): void {
    this.state = 'done';
    this.pending = undefined;
    this.sink.onEnd(this.reusable && !trailing);
  }

  /** Takes one head; true when the response is complete with it (no body). */
  private head(text: string): boolean {
    let eol = text.indexOf('\r\n');
    if (eol < 0) eol = text.length;
    const m = STATUS_LINE.exec(eol === text.length ? text : text.slice(0, eol));
    if (m === null) throw new UpstreamProtocolError('malformed status line');
    const status = Number(m[2]);
    // No prototype: a backend's field named __proto__ is an ordinary field.
    const headers = new FieldObject<IncomingHttpHeaders>();
    let contentLength: number | undefined;
    let chunked = false;
    let close = m[1] === '0';
    // One field line per CRLF: a bare CR or LF stays inside its line and is refused there.
    for (let start = eol + 2; start < text.length; start = eol + 2) {
      eol = text.indexOf('\r\n', start);
      if (eol < 0) eol = text.length;
      const colon = text.indexOf(':', start);
      if (colon <= start || colon >= eol) {
        const c = text.charCodeAt(start);
        throw new UpstreamProtocolError(eol > start && (c === 32 || c === 9) ? 'obs-fold in response head' : 'malformed header line');
      }
      const name = fieldName(text.slice(start, colon));
      if (name === undefined) throw new UpstreamProtocolError('malformed header name');
      const value = text.slice(colon + 1, eol).trim();
      if (INVALID_FIELD_VALUE_CHAR.test(value)) throw new UpstreamProtocolError(`control character in header ${name}`);
      if (name === 'content-length') {
        for (const part of value.split(',')) {
          const v = part.trim();
          if (!CONTENT_LENGTH.test(v)) throw new UpstreamProtocolError('bad Content-Length');
          const n = Number(v);
          if (contentLength !== undefined && contentLength !== n) throw new UpstreamProtocolError('differing Content-Length values');
          contentLength = n;
        }
      } else if (name === 'transfer-encoding') {
        if (value.toLowerCase() !== 'chunked' || chunked) throw new UpstreamProtocolError(`unsupported Transfer-Encoding "${value}"`);
        chunked = true;
      } else if (name === 'connection') {
        for (const t of value.split(',')) if (t.trim().toLowerCase() === 'close') close = true;
      }
      const prev = headers[name];
      if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else headers[name] = `${prev}, ${value}`;
    }
    if (status < 200) {
      // 1xx: informational, another head follows. 101 only answers an upgrade, never asked for here.
      if (status === 101) throw new UpstreamProtocolError('101 Switching Protocols to a request without Upgrade');
      return false;
    }
    if (chunked && contentLength !== undefined) throw new UpstreamProtocolError('both Transfer-Encoding and Content-Length');
    this.reusable = !close;
    this.sink.onHead(status, m[3] ?? '', headers);
    if (this.headRequest || status === 204 || status === 304) return true;
    if (chunked) this.state = 'chunk-size';
    else if (contentLength !== undefined) {
      if (contentLength === 0) return true;
      this.remaining = contentLength;
      this.state = 'fixed';
    } else {
      this.reusable = false;
      this.state = 'until-close';
    }
    return false;
  }
}
