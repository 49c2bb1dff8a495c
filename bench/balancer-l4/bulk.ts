/**
 * What the bulk source (source.ts) and the bulk client (client.ts) share: the byte pattern every
 * transfer carries, a cheap check of it, and the minimal HTTP/1.1 both speak.
 *
 * Bulk transfers are framed as one HTTP/1.1 request per connection (`GET /bytes/N` downloads N
 * bytes, `PUT /sink` with Content-Length N uploads them), so the same source works behind an L4
 * balancer (which only relays the bytes) and an L7 one (which parses and re-frames them).
 */

/** Byte i of every body is i % PERIOD. A prime period never lines up with power-of-two reads, so a lost, repeated or shifted block shows. */
export const PERIOD = 251;

/** What the source writes per write() and the client per write(): a whole number of periods, so each write continues the pattern. */
export const CHUNK_BYTES = PERIOD * 1024;

/** Stride of the bytes sampled inside each chunk, besides its first and last (prime, so the samples wander over the period). */
const SAMPLE_STRIDE = 4093;

/** Largest request or response head either side accepts, bytes. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Largest transfer the source serves or accepts, bytes (16 GiB). */
export const MAX_TRANSFER_BYTES = 16 * 2 ** 30;

/** One preallocated chunk of the pattern, written over and over (never mutated). */
export function patternChunk(): Buffer {
  const b = Buffer.allocUnsafe(CHUNK_BYTES);
  for (let i = 0; i < b.length; i++) b[i] = i % PERIOD;
  return b;
}

/**
 * Follows a body as it arrives and checks, for every piece, its first and last byte and one every
 * SAMPLE_STRIDE bytes against the pattern: a few comparisons per 64 KiB read, so checking costs
 * the measured transfer nothing that shows, and still catches a lost, repeated or shifted block
 * whose length is not a multiple of the period (the byte count catches the rest).
 */
export class PatternCheck {
  /** Body bytes seen so far. */
  offset = 0;
  /** Body offset of the first byte that did not match, or -1. */
  firstBad = -1;

  feed(buf: Uint8Array, start: number, end: number): void {
    if (end <= start) return;
    if (this.firstBad < 0) {
      const base = this.offset - start;
      for (let i = start; i < end; i += SAMPLE_STRIDE) {
        if (buf[i] !== (base + i) % PERIOD) {
          this.firstBad = base + i;
          break;
        }
      }
      if (this.firstBad < 0 && buf[end - 1] !== (base + end - 1) % PERIOD) this.firstBad = base + end - 1;
    }
    this.offset += end - start;
  }

  get ok(): boolean {
    return this.firstBad < 0;
  }
}

/** A parsed head: the start line, lower-cased header names, and where the body starts in the buffer. */
export interface Head {
  startLine: string;
  headers: Map<string, string>;
  bodyStart: number;
}

/** The head at the start of `buf` once complete (CRLF CRLF seen); undefined while incomplete. */
export function parseHead(buf: Buffer): Head | undefined {
  const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  if (end < 0) return undefined;
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { startLine: lines[0] ?? '', headers, bodyStart: end + 4 };
}

/** Bytes as the bench names them: 1073741824 -> "1 GiB", 268435456 -> "256 MiB". */
export function sizeLabel(bytes: number): string {
  if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30} GiB`;
  if (bytes >= 2 ** 20 && bytes % 2 ** 20 === 0) return `${bytes / 2 ** 20} MiB`;
  return `${bytes} B`;
}

/** What client.ts prints when done: one JSON line. */
export type BulkResult =
  | {
      ok: true;
      direction: 'download' | 'upload';
      /** Body bytes moved and checked. */
      bytes: number;
      /** Wall time from connecting to the last byte (download) or to the sink's answer (upload), ms. */
      ms: number;
    }
  | { ok: false; error: string };
