import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFastHead } from './fast-path.js';

const parse = (head: string): ReturnType<typeof parseFastHead> => {
  const buf = Buffer.from(`${head}\r\n\r\n`, 'latin1');
  return parseFastHead(buf, 0, buf.length - 4);
};

test('parseFastHead accepts the one shape it answers: GET or HEAD, origin-form, HTTP/1.1, one Host', () => {
  const r = parse('GET /o/1?a=b HTTP/1.1\r\nHost: cdn.test\r\nAccept: */*\r\nUser-Agent: wrk\r\nConnection: keep-alive');
  assert.deepEqual(r && { ...r, headers: { ...r.headers } }, {
    method: 'GET',
    url: '/o/1?a=b',
    host: 'cdn.test',
    headers: { host: 'cdn.test', accept: '*/*', 'user-agent': 'wrk', connection: 'keep-alive' },
  });
  assert.equal(parse('HEAD / HTTP/1.1\r\nHost: a')?.method, 'HEAD');
  assert.equal(parse('GET / HTTP/1.1\r\nhOsT:   a  ')?.host, 'a', 'names are case-insensitive, values trimmed');
  assert.equal(parse('GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nAccept: y')?.headers.accept, 'x, y', 'repeated fields are combined');
});

test('parseFastHead leaves everything else to node:http (undefined): other methods, versions, targets, bodies, smuggling shapes, conditionals', () => {
  const refused = [
    'POST / HTTP/1.1\r\nHost: a',
    'PURGE / HTTP/1.1\r\nHost: a',
    'get / HTTP/1.1\r\nHost: a',
    'GET / HTTP/1.0\r\nHost: a',
    'GET http://a/ HTTP/1.1\r\nHost: a',
    'GET * HTTP/1.1\r\nHost: a',
    'GET /a b HTTP/1.1\r\nHost: a',
    'GET /\x01 HTTP/1.1\r\nHost: a',
    'GET /é HTTP/1.1\r\nHost: a',
    'GET / HTTP/1.1',
    'GET / HTTP/1.1\r\nHost: a\r\nHost: b',
    'GET / HTTP/1.1\r\nHost: ',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0',
    'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked',
    'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue',
    'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade',
    'GET / HTTP/1.1\r\nHost: a\r\nConnection: close',
    'GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1',
    'GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x"',
    'GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sat, 28 Nov 2026 00:00:00 GMT',
    'GET / HTTP/1.1\r\nHost: a\r\nCache-Control: no-cache',
    'GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache',
    'GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x',
    'GET / HTTP/1.1\r\nHost: a\r\n folded: continuation',
    'GET / HTTP/1.1\r\nHost: a\r\nBad Name: x',
    'GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b',
    'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb',
    'GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9',
    'GET / HTTP/1.1\r\nHost: a\r\nNoColon',
    'GET / HTTP/1.1\r\nHost: a\r\n: empty name',
  ];
  for (const head of refused) assert.equal(parse(head), undefined, JSON.stringify(head));
});
