/**
 * The hit path below node:http. node:http costs about 21 µs of CPU per request here, nearly twice
 * what nginx spends on a whole cache hit, so a fresh in-memory hit is answered straight from the
 * socket: the request head is parsed by a strict, small parser that accepts one shape only, and
 * everything else (a miss, a stale or soft-purged object, a body, Range, conditionals, Cache-Control,
 * a partial head, anything unusual) hands the connection to node:http with the bytes not yet
 * answered, and node:http serves it for the rest of the connection's life.
 *
 * The shape: `GET` or `HEAD`, an origin-form target of visible ASCII, `HTTP/1.1`, header lines of
 * token names and values without control characters (no obs-fold), exactly one Host, and no
 * Content-Length, Transfer-Encoding, Expect, Upgrade, Connection (other than keep-alive), Range,
 * If-*, Cache-Control, Pragma or Authorization. A request the parser does not accept is never
 * answered by it, so smuggling and malformed input meet node:http's parser as before.
 *
 * Pipelined requests are answered in order; a partial head at the end of a read is handed off
 * (no timer of its own: node:http's header timeout applies from then on).
 */
import type * as http from 'node:http';
import type * as net from 'node:net';
import { FRAMING_FIELDS, parseSimpleRequestHead, type SimpleRequestHead } from '../../core/http.js';
import { CdnError } from '../errors.js';
import type { Headers } from '../types.js';

/** What the fast path asks of the edge: a fresh in-memory hit as a response head and body, or undefined. */
export type FastHitFn = (method: 'GET' | 'HEAD', host: string, url: string, headers: Headers, t0: number) => { head: string; body: Buffer | undefined } | undefined;

const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Request fields that send a request to the full path. */
const FULL_PATH_FIELDS: ReadonlySet<string> = new Set([
  ...FRAMING_FIELDS,
  'range',
  'if-range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'cache-control',
  'pragma',
  'authorization',
]);
/** At most this many header lines in a fast request. */
const MAX_FIELDS = 100;

export interface FastPathOptions {
  /** node:http's own 'connection' listener, taken off the server: called for a handed-off socket. */
  handOff: (socket: net.Socket) => void;
  hit: FastHitFn;
  maxHeaderBytes: number;
  idleMs: number;
}

/** Parses one request head (`buf[start, end)`, end at the blank line); undefined when it is not the accepted shape. */
export function parseFastHead(buf: Buffer, start: number, end: number): SimpleRequestHead | undefined {
  return parseSimpleRequestHead(buf, start, end, FULL_PATH_FIELDS, MAX_FIELDS);
}

/**
 * Takes over `server`'s connections: each socket starts on the fast path and moves to node:http (for
 * good) at the first request the fast path does not answer. Returns the sockets still on the fast
 * path, which close() ends (they are idle between reads: the fast path answers within the read).
 */
export function installFastPath(server: http.Server, o: Omit<FastPathOptions, 'handOff'>): { sockets: Set<net.Socket>; closeAll(): void } {
  const internal = server.listeners('connection')[0] as ((socket: net.Socket) => void) | undefined;
  if (internal === undefined) throw new CdnError('ARCHLAB_CDN_CLOSED', 'fast path: node:http has no connection listener to hand off to');
  server.removeListener('connection', internal);
  const sockets = new Set<net.Socket>();
  let closing = false;
  server.prependListener('connection', (socket: net.Socket) => {
    if (closing) {
      internal.call(server, socket);
      return;
    }
    fastConnection(socket, sockets, { ...o, handOff: (s) => internal.call(server, s) });
  });
  return {
    sockets,
    closeAll: () => {
      closing = true;
      for (const s of sockets) s.end();
    },
  };
}

function fastConnection(socket: net.Socket, sockets: Set<net.Socket>, o: FastPathOptions): void {
  sockets.add(socket);
  socket.setNoDelay(true);
  socket.setTimeout(o.idleMs);
  const onTimeout = (): void => {
    socket.destroy();
  };
  const onError = (): void => {
    socket.destroy();
  };
  const onClose = (): void => {
    sockets.delete(socket);
  };
  const handOff = (rest: Buffer | undefined): void => {
    socket.removeListener('data', onData);
    socket.removeListener('timeout', onTimeout);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
    sockets.delete(socket);
    socket.setTimeout(0);
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    o.handOff(socket);
  };
  const onData = (chunk: Buffer): void => {
    const t0 = performance.now();
    let off = 0;
    socket.cork();
    try {
      while (off < chunk.length) {
        const end = chunk.indexOf(CRLFCRLF, off);
        if (end < 0 || end - off > o.maxHeaderBytes) {
          handOff(chunk.subarray(off));
          return;
        }
        const req = parseFastHead(chunk, off, end);
        const res = req === undefined ? undefined : o.hit(req.method, req.host, req.url, req.headers, t0);
        if (res === undefined) {
          handOff(chunk.subarray(off));
          return;
        }
        socket.write(res.head + `connection: keep-alive\r\nkeep-alive: timeout=${Math.max(1, Math.floor(o.idleMs / 1000))}\r\n\r\n`, 'latin1');
        if (res.body !== undefined && res.body.length > 0) socket.write(res.body);
        off = end + 4;
      }
    } finally {
      socket.uncork();
    }
  };
  socket.on('data', onData);
  socket.on('timeout', onTimeout);
  socket.on('error', onError);
  socket.on('close', onClose);
}
