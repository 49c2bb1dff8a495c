import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { test } from 'node:test';
import { ResponseReader, UpstreamProtocolError } from './response-reader.js';

interface Got {
  status?: number;
  message?: string;
  headers?: IncomingHttpHeaders;
  body: Buffer[];
  ended?: boolean;
  reusable?: boolean;
  events: string[];
}

function reader(headRequest = false, maxHeadBytes = 1024): { r: ResponseReader; got: Got } {
  const got: Got = { body: [], events: [] };
  const r = new ResponseReader(
    {
      onHead(status, message, headers) {
        got.status = status;
        got.message = message;
        got.headers = { ...headers };
        got.events.push('head');
      },
      onBody(chunk) {
        got.body.push(Buffer.from(chunk));
        got.events.push('body');
      },
      onEnd(reusable) {
        got.ended = true;
        got.reusable = reusable;
        got.events.push('end');
      },
    },
    headRequest,
    maxHeadBytes,
  );
  return { r, got };
}

/** Feeds `text` in pieces of `step` bytes (every split point is a boundary some read could make). */
function feed(r: ResponseReader, text: string | Buffer, step = Infinity): void {
  const buf = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  for (let i = 0; i < buf.length; i += step === Infinity ? buf.length : step) r.push(buf.subarray(i, Math.min(buf.length, i + step)));
}

const body = (g: Got): string => Buffer.concat(g.body).toString('latin1');

test('Content-Length bodies are counted, whatever the read boundaries', () => {
  const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello world';
  for (const step of [1, 2, 3, 7, 16, Infinity]) {
    const { r, got } = reader();
    feed(r, text, step);
    assert.equal(got.status, 200, `step ${step}`);
    assert.equal(got.message, 'OK');
    assert.equal(body(got), 'hello world', `step ${step}`);
    assert.equal(got.reusable, true);
    assert.equal(r.done, true);
    assert.deepEqual(got.headers!['set-cookie'], ['a=1', 'b=2'], 'Set-Cookie stays a list');
    assert.equal(got.headers!['x-a'], '1, 2', 'other repeated fields are joined');
    assert.equal(got.headers!['content-type'], 'text/plain', 'names come out lowercase');
  }
});

test('chunked bodies are decoded (extensions and trailers dropped), whatever the read boundaries', () => {
  const text = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n';
  for (const step of [1, 2, 5, 9, Infinity]) {
    const { r, got } = reader();
    feed(r, text, step);
    assert.equal(body(got), 'hello 0123456789', `step ${step}`);
    assert.equal(got.ended, true, `step ${step}`);
    assert.equal(got.reusable, true);
  }
  const { r, got } = reader();
  feed(r, 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
  assert.equal(got.ended, true, 'an empty chunked body');
  assert.equal(body(got), '');
});

test('no body for HEAD, 204, 304 and Content-Length 0; 1xx heads are skipped', () => {
  for (const [text, head] of [
    ['HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n', true],
    ['HTTP/1.1 204 No Content\r\n\r\n', false],
    ['HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n', false],
    ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', false],
    ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n', false],
  ] as const) {
    const { r, got } = reader(head);
    feed(r, text);
    assert.equal(got.ended, true, text);
    assert.equal(got.body.length, 0, text);
    assert.equal(got.reusable, true, text);
    assert.deepEqual(got.events, ['head', 'end'], 'one head reaches the sink, never a 1xx');
  }
});

test('a body without framing runs to EOF and the connection is not reused', () => {
  const { r, got } = reader();
  feed(r, 'HTTP/1.1 200 OK\r\n\r\nsome');
  feed(r, ' bytes');
  assert.equal(got.ended, undefined);
  assert.equal(r.untilClose, true);
  r.eof();
  assert.equal(body(got), 'some bytes');
  assert.equal(got.reusable, false);
});

test('Connection: close and HTTP/1.0 make the connection single-use', () => {
  for (const text of ['HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx']) {
    const { r, got } = reader();
    feed(r, text);
    assert.equal(got.ended, true);
    assert.equal(got.reusable, false, text);
  }
});

test('bytes after the response are not taken as the next response: the connection is not reused', () => {
  const { r, got } = reader();
  feed(r, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!');
  assert.equal(body(got), 'ok');
  assert.equal(got.reusable, false);
  assert.deepEqual(got.events, ['head', 'body', 'end']);
});

test('what a proxy must not pass on is an UpstreamProtocolError', () => {
  const bad = [
    'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\n: 1\r\n\r\n',
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 2000 OK\r\n\r\n',
    'HTTP/1.1 099 Odd\r\n\r\n',
    'ICY 200 OK\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY',
  ];
  for (const text of bad) {
    const { r, got } = reader();
    assert.throws(() => feed(r, text), UpstreamProtocolError, JSON.stringify(text));
    assert.equal(got.ended, undefined, 'nothing ends on a rejected response');
  }
});

test('heads and chunk-size lines over their limits are refused without waiting for their end', () => {
  const { r } = reader(false, 64);
  assert.throws(() => feed(r, `HTTP/1.1 200 OK\r\nX-Long: ${'a'.repeat(100)}`), /head over 64 bytes/);
  const chunk = reader();
  assert.throws(() => feed(chunk.r, `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;${'e'.repeat(5000)}`), /chunk-size line too long/);
});

test('EOF before the end of a framed response is an error, after it is not', () => {
  const head = reader();
  feed(head.r, 'HTTP/1.1 200 OK\r\nContent-');
  assert.throws(() => head.r.eof(), /before a response/);
  const short = reader();
  feed(short.r, 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
  assert.throws(() => short.r.eof(), /middle of the response body/);
  const chunked = reader();
  feed(chunked.r, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
  assert.throws(() => chunked.r.eof(), /middle of the response body/);
  const whole = reader();
  feed(whole.r, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc');
  whole.r.eof();
  assert.equal(whole.got.ended, true);
});

test('random bodies and random read boundaries: what comes out is what went in', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const payload = Buffer.alloc(rnd(3000));
    for (let i = 0; i < payload.length; i++) payload[i] = rnd(256);
    let wire: Buffer;
    if (rnd(2) === 0) {
      wire = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${payload.length}\r\n\r\n`), payload]);
    } else {
      const parts: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
      for (let at = 0; at < payload.length; ) {
        const n = Math.min(payload.length - at, 1 + rnd(700));
        parts.push(Buffer.from(`${n.toString(16)}\r\n`), payload.subarray(at, at + n), Buffer.from('\r\n'));
        at += n;
      }
      parts.push(Buffer.from('0\r\n\r\n'));
      wire = Buffer.concat(parts);
    }
    const { r, got } = reader();
    for (let at = 0; at < wire.length; ) {
      const n = 1 + rnd(400);
      r.push(wire.subarray(at, at + n));
      at += n;
    }
    assert.equal(got.ended, true, `round ${round}`);
    assert.ok(Buffer.concat(got.body).equals(payload), `round ${round}: body differs`);
  }
});

test('a backend\'s field names are data: "__proto__" and "constructor" are own fields, nothing is inherited', () => {
  let headers: IncomingHttpHeaders | undefined;
  const r = new ResponseReader({ onHead: (_s, _m, h) => (headers = h), onBody: () => {}, onEnd: () => {} }, false, 1024);
  feed(r, 'HTTP/1.1 200 OK\r\n__proto__: p\r\nConstructor: c\r\nContent-Length: 0\r\n\r\n');
  assert.ok(headers);
  assert.deepEqual(Object.keys(headers).sort(), ['__proto__', 'constructor', 'content-length']);
  assert.equal(headers['__proto__'], 'p');
  assert.equal(headers.constructor, 'c');
  assert.equal('toString' in headers, false);
});
