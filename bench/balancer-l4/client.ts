/**
 * The bulk client of the L4 benchmark, a child process of its own (so it never shares an event loop
 * with the bench or a system under test): one transfer over one connection, checked, timed.
 *
 *   node --import tsx bench/balancer-l4/client.ts --port P --direction download|upload --bytes N \
 *     [--host 127.0.0.1] [--timeout-s T]
 *
 * download: `GET /bytes/N`; reads into one preallocated buffer (net `onread`, no allocation per
 * read), counts the body and checks its pattern (bulk.ts). Timed from connecting to the last byte.
 * upload: `PUT /sink` with Content-Length N, written from one preallocated chunk with
 * backpressure; timed from connecting to the sink's answer, which must report N bytes, pattern ok.
 *
 * A transfer that moves a different number of bytes, breaks the pattern, gets another status or
 * times out is a failure: prints one JSON line, a BulkResult, either way (exit code 0).
 */
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MAX_HEAD_BYTES, PatternCheck, parseHead, patternChunk, type BulkResult } from './bulk.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt?: string): string => {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`client: ${name} is required\n`);
    process.exit(2);
  }
  return v;
};
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port'));
const direction = opt('--direction');
const bytes = Number(opt('--bytes'));
const timeoutS = Number(opt('--timeout-s', '120'));
if (!(port > 0 && port < 65536 && Number.isSafeInteger(bytes) && bytes >= 0 && timeoutS > 0 && (direction === 'download' || direction === 'upload'))) {
  process.stderr.write('client: need --port 1..65535, --direction download|upload, --bytes >= 0, --timeout-s > 0\n');
  process.exit(2);
}

/** Reads land here, one buffer for the whole transfer. */
const READ_BYTES = 256 * 1024;

const fail = (error: string): BulkResult => ({ ok: false, error });

function download(): Promise<BulkResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const check = new PatternCheck();
    // The response head, copied out of the read buffer until it is complete; then undefined.
    let head: Buffer | undefined = Buffer.alloc(0);
    let settled = false;
    const finish = (r: BulkResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const body = (buf: Buffer, start: number, end: number): void => {
      check.feed(buf, start, end);
      if (check.offset < bytes) return;
      const ms = performance.now() - t0;
      if (check.offset > bytes) return finish(fail(`${check.offset - bytes} bytes more than the ${bytes} asked for`));
      if (!check.ok) return finish(fail(`body byte ${check.firstBad} does not match the pattern`));
      finish({ ok: true, direction: 'download', bytes: check.offset, ms });
    };
    const onHead = (h: Buffer): void => {
      const parsed = parseHead(h);
      if (!parsed) {
        if (h.length > MAX_HEAD_BYTES) finish(fail(`no response head within ${MAX_HEAD_BYTES} bytes`));
        return;
      }
      head = undefined;
      const cl = parsed.headers.get('content-length');
      if (!/^HTTP\/1\.[01] 200 /.test(parsed.startLine + ' ')) return finish(fail(`answered ${JSON.stringify(parsed.startLine)}: ${h.toString('latin1', parsed.bodyStart, parsed.bodyStart + 200)}`));
      if (cl !== String(bytes)) return finish(fail(`content-length ${cl ?? '(none)'}${parsed.headers.has('transfer-encoding') ? `, transfer-encoding ${parsed.headers.get('transfer-encoding')}` : ''} instead of ${bytes}`));
      if (bytes === 0) return finish({ ok: true, direction: 'download', bytes: 0, ms: performance.now() - t0 });
      body(h, parsed.bodyStart, h.length);
    };
    const socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BYTES),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (settled) return false;
          if (head !== undefined) {
            head = Buffer.concat([head, buf.subarray(0, n)]);
            onHead(head);
          } else body(buf as Buffer, 0, n);
          return true;
        },
      },
    });
    socket.on('connect', () => socket.write(`GET /bytes/${bytes} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`));
    socket.on('end', () => finish(fail(`the connection ended after ${check.offset} of ${bytes} body bytes`)));
    socket.on('close', () => finish(fail(`the connection closed after ${check.offset} of ${bytes} body bytes`)));
    socket.on('error', (err: NodeJS.ErrnoException) => finish(fail(`${err.code ?? 'error'}: ${err.message}`)));
    const timer = setTimeout(() => finish(fail(`timed out after ${timeoutS} s with ${check.offset} of ${bytes} body bytes`)), timeoutS * 1000);
  });
}

function upload(): Promise<BulkResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunk = patternChunk();
    let settled = false;
    let sent = 0;
    let answer = Buffer.alloc(0);
    const finish = (r: BulkResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const socket = connect({ host, port, noDelay: true });
    const pump = (): void => {
      while (sent < bytes && !settled) {
        const n = Math.min(bytes - sent, chunk.length);
        sent += n;
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    socket.on('connect', () => {
      socket.write(`PUT /sink HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${bytes}\r\nConnection: close\r\n\r\n`);
      pump();
    });
    socket.on('data', (d: Buffer) => {
      answer = Buffer.concat([answer, d]);
      const h = parseHead(answer);
      if (!h) {
        if (answer.length > MAX_HEAD_BYTES) finish(fail(`no response head within ${MAX_HEAD_BYTES} bytes`));
        return;
      }
      const cl = Number(h.headers.get('content-length') ?? 'NaN');
      if (!(cl >= 0 && cl <= MAX_HEAD_BYTES)) return finish(fail(`answer without a usable content-length: ${JSON.stringify(h.startLine)}`));
      if (answer.length < h.bodyStart + cl) return;
      const ms = performance.now() - t0;
      const text = answer.toString('utf8', h.bodyStart, h.bodyStart + cl);
      if (!/^HTTP\/1\.[01] 200 /.test(h.startLine + ' ')) return finish(fail(`answered ${JSON.stringify(h.startLine)} after ${sent} of ${bytes} bytes sent: ${text.slice(0, 200)}`));
      let got: { bytes?: unknown; patternOk?: unknown };
      try {
        got = JSON.parse(text) as typeof got;
      } catch {
        return finish(fail(`the sink answered ${JSON.stringify(text.slice(0, 200))}`));
      }
      if (got.bytes !== bytes) return finish(fail(`the sink counted ${String(got.bytes)} bytes of ${bytes}`));
      if (got.patternOk !== true) return finish(fail('the sink saw bytes that do not match the pattern'));
      finish({ ok: true, direction: 'upload', bytes, ms });
    });
    socket.on('end', () => finish(fail(`the connection ended after ${sent} of ${bytes} bytes sent, without a complete answer`)));
    socket.on('close', () => finish(fail(`the connection closed after ${sent} of ${bytes} bytes sent, without a complete answer`)));
    socket.on('error', (err: NodeJS.ErrnoException) => finish(fail(`${err.code ?? 'error'}: ${err.message}`)));
    const timer = setTimeout(() => finish(fail(`timed out after ${timeoutS} s, ${sent} of ${bytes} bytes sent`)), timeoutS * 1000);
  });
}

const result = await (direction === 'download' ? download() : upload());
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
