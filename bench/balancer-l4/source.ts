/**
 * The bulk backend of the L4 benchmark: a node:net server speaking just enough HTTP/1.1 for one
 * request per connection, so an L4 balancer (bytes) and an L7 one (HTTP) can both sit in front.
 *
 *   GET /bytes/N   -> 200 with Content-Length N and N pattern bytes (bulk.ts), written as fast as
 *                     the socket drains (write() until it returns false, then wait for 'drain'),
 *                     then the connection ends.
 *   PUT /sink      -> reads Content-Length N bytes, checks the pattern, answers
 *                     {"bytes":N,"patternOk":true} and ends.
 *
 *   node --import tsx bench/balancer-l4/source.ts
 *
 * Prints `{"port":N}` once listening. Bounded: heads of at most MAX_HEAD_BYTES, transfers of at
 * most MAX_TRANSFER_BYTES; anything else is answered 400/404 and closed.
 */
import { createServer, type Socket } from 'node:net';
import { printReady } from '../balancer-l7/common.js';
import { MAX_HEAD_BYTES, MAX_TRANSFER_BYTES, PatternCheck, parseHead, patternChunk, type Head } from './bulk.js';

const CHUNK = patternChunk();

function reply(socket: Socket, status: string, body: string): void {
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/** Writes `total` pattern bytes with backpressure, then ends the connection. */
function download(socket: Socket, total: number): void {
  socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\nconnection: close\r\n\r\n`);
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  pump();
}

/** Reads `total` body bytes (some may have come with the head), checks them, answers with the count. */
function upload(socket: Socket, total: number, first: Buffer): void {
  const check = new PatternCheck();
  let done = false;
  const take = (buf: Buffer): void => {
    if (done) return;
    check.feed(buf, 0, buf.length);
    if (check.offset < total) return;
    done = true;
    socket.off('data', take);
    if (check.offset > total) reply(socket, '400 Bad Request', `body longer than content-length ${total}: ${check.offset} bytes`);
    else reply(socket, '200 OK', JSON.stringify({ bytes: check.offset, patternOk: check.ok }));
  };
  socket.on('data', take);
  take(first);
}

function route(socket: Socket, head: Head, rest: Buffer): void {
  const [method, path] = head.startLine.split(' ');
  const get = /^\/bytes\/(\d+)$/.exec(path ?? '');
  if (method === 'GET' && get) {
    const n = Number(get[1]);
    if (n > MAX_TRANSFER_BYTES) return reply(socket, '400 Bad Request', `at most ${MAX_TRANSFER_BYTES} bytes`);
    return download(socket, n);
  }
  if (method === 'PUT' && path === '/sink') {
    const n = Number(head.headers.get('content-length') ?? 'NaN');
    if (!(Number.isSafeInteger(n) && n >= 0 && n <= MAX_TRANSFER_BYTES)) return reply(socket, '400 Bad Request', 'PUT /sink needs a content-length (chunked bodies are not read)');
    return upload(socket, n, rest);
  }
  reply(socket, '404 Not Found', 'GET /bytes/N or PUT /sink');
}

const server = createServer((socket) => {
  socket.on('error', () => socket.destroy());
  let buf: Buffer = Buffer.alloc(0);
  const onHead = (d: Buffer): void => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    const head = parseHead(buf);
    if (!head) {
      if (buf.length > MAX_HEAD_BYTES) {
        socket.off('data', onHead);
        reply(socket, '400 Bad Request', 'request head too large');
      }
      return;
    }
    socket.off('data', onHead);
    route(socket, head, buf.subarray(head.bodyStart));
  };
  socket.on('data', onHead);
});

server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  printReady({ port: typeof addr === 'object' && addr ? addr.port : 0 });
});
process.on('SIGTERM', () => process.exit(0));
