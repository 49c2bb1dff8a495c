import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { checkFraming } from './framing.js';

/** [name, rawHeaders, httpVersion, expected reason (RegExp) or null for ok] */
type Row = [string, string[], string, RegExp | null];

const H = ['Host', 'example.com'];

const rows: Row[] = [
  ['no body headers', [...H], '1.1', null],
  ['a Content-Length', [...H, 'Content-Length', '5'], '1.1', null],
  ['Content-Length 0', [...H, 'content-length', '0'], '1.1', null],
  ['two equal Content-Lengths', [...H, 'Content-Length', '5', 'Content-Length', '5'], '1.1', null],
  ['equal Content-Lengths written with leading zeros', [...H, 'Content-Length', '005', 'content-length', '5'], '1.1', null],
  ['chunked', [...H, 'Transfer-Encoding', 'chunked'], '1.1', null],
  ['CHUNKED, any case, with OWS', [...H, 'TRANSFER-ENCODING', ' \tChunked '], '1.1', null],
  ['chunked with an empty list element', [...H, 'Transfer-Encoding', ', chunked,'], '1.1', null],
  ['HTTP/1.0 with Content-Length', [...H, 'Content-Length', '3'], '1.0', null],
  ['HTTP/2 with Content-Length and no Host', [':authority', 'example.com', 'content-length', '3'], '2.0', null],
  ['HTTP/2 with :authority and Host', [':authority', 'example.com', 'host', 'example.com'], '2.0', null],
  ['Content-Length and Transfer-Encoding', [...H, 'Content-Length', '5', 'Transfer-Encoding', 'chunked'], '1.1', /both Content-Length and Transfer-Encoding/],
  ['Transfer-Encoding then Content-Length', [...H, 'transfer-encoding', 'chunked', 'content-length', '0'], '1.1', /both Content-Length and Transfer-Encoding/],
  ['differing Content-Lengths', [...H, 'Content-Length', '5', 'Content-Length', '6'], '1.1', /conflicting Content-Length/],
  ['Content-Length list', [...H, 'Content-Length', '5, 5'], '1.1', /invalid Content-Length/],
  ['Content-Length with a sign', [...H, 'Content-Length', '+5'], '1.1', /invalid Content-Length/],
  ['negative Content-Length', [...H, 'Content-Length', '-1'], '1.1', /invalid Content-Length/],
  ['empty Content-Length', [...H, 'Content-Length', ''], '1.1', /invalid Content-Length/],
  ['hex Content-Length', [...H, 'Content-Length', '0x10'], '1.1', /invalid Content-Length/],
  ['valid then invalid Content-Length', [...H, 'Content-Length', '5', 'Content-Length', '5a'], '1.1', /invalid Content-Length/],
  ['chunked, identity', [...H, 'Transfer-Encoding', 'chunked, identity'], '1.1', /unsupported Transfer-Encoding/],
  ['xchunked', [...H, 'Transfer-Encoding', 'xchunked'], '1.1', /unsupported Transfer-Encoding/],
  ['chunked with a parameter', [...H, 'Transfer-Encoding', 'chunked;q=1'], '1.1', /unsupported Transfer-Encoding/],
  ['gzip, chunked (not decoded by the proxy)', [...H, 'Transfer-Encoding', 'gzip, chunked'], '1.1', /unsupported Transfer-Encoding/],
  ['identity', [...H, 'Transfer-Encoding', 'identity'], '1.1', /unsupported Transfer-Encoding/],
  ['empty Transfer-Encoding', [...H, 'Transfer-Encoding', ''], '1.1', /unsupported Transfer-Encoding/],
  ['chunked twice in two fields', [...H, 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'], '1.1', /unsupported Transfer-Encoding/],
  ['chunked with a vertical tab (not OWS)', [...H, 'Transfer-Encoding', '\vchunked'], '1.1', /unsupported Transfer-Encoding/],
  ['Transfer-Encoding in HTTP/1.0', [...H, 'Transfer-Encoding', 'chunked'], '1.0', /HTTP\/1\.0/],
  ['Transfer-Encoding in HTTP/2', [':authority', 'a', 'transfer-encoding', 'chunked'], '2.0', /HTTP\/2\.0/],
  ['two Host fields', [...H, 'Host', 'other.example'], '1.1', /more than one Host/],
  ['two Host fields in HTTP/1.0', ['host', 'a', 'HOST', 'a'], '1.0', /more than one Host/],
  ['a name with trailing whitespace', [...H, 'Transfer-Encoding ', 'chunked'], '1.1', /whitespace around header name/],
  ['a name with leading tab', [...H, '\tContent-Length', '5'], '1.1', /whitespace around header name/],
  ['an empty name', [...H, '', 'x'], '1.1', /empty header name/],
];

describe('checkFraming', () => {
  for (const [name, raw, version, reason] of rows) {
    test(`${reason === null ? 'accepts' : 'rejects'} ${name}`, () => {
      const r = checkFraming(raw, version);
      if (reason === null) assert.deepEqual(r, { ok: true });
      else {
        assert.equal(r.ok, false);
        if (!r.ok) {
          assert.equal(r.status, 400);
          assert.match(r.reason, reason);
        }
      }
    });
  }
});

/**
 * What reaches the proxy at all: a real node:http server on loopback, sent raw bytes. The handler
 * runs checkFraming as the proxy does and marks its own refusals, so each case says who refused.
 */
interface Probe {
  status: number;
  by: 'node' | 'archlab' | 'none';
}

function serve(options: http.ServerOptions): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(options, (req, res) => {
    const r = checkFraming(req.rawHeaders, req.httpVersion);
    res.setHeader('connection', 'close');
    if (!r.ok) {
      res.writeHead(r.status, { 'x-rejected-by': 'archlab' });
      res.end(r.reason);
    } else {
      res.writeHead(200);
      res.end('ok');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as net.AddressInfo).port }));
  });
}

function probe(port: number, raw: string): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new assert.AssertionError({ message: `no answer to ${JSON.stringify(raw)}` }));
    }, 5000);
    socket.on('connect', () => socket.end(raw, 'latin1'));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // a reset after the answer is fine; "close" decides
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (m === null) return resolve({ status: 0, by: 'none' });
      const status = Number(m[1]);
      const head = text.slice(0, text.indexOf('\r\n\r\n')).toLowerCase();
      resolve({ status, by: status === 200 ? 'none' : head.includes('x-rejected-by: archlab') ? 'archlab' : 'node' });
    });
  });
}

const req = (...lines: string[]): string => `${lines.join('\r\n')}\r\n\r\n`;
const POST = 'POST / HTTP/1.1';
const HOST = 'Host: example.com';

describe('Node 20 parser and checkFraming together, over a real socket', () => {
  let strict: { server: http.Server; port: number };
  let lenient: { server: http.Server; port: number };
  before(async () => {
    strict = await serve({});
    lenient = await serve({ insecureHTTPParser: true });
  });
  after(() => {
    for (const s of [strict, lenient]) {
      s.server.closeAllConnections();
      s.server.close();
    }
  });

  test('a well-framed request passes both', async () => {
    assert.deepEqual(await probe(strict.port, req(POST, HOST, 'Content-Length: 2', '') + 'hi'), { status: 200, by: 'none' });
    assert.deepEqual(await probe(strict.port, req(POST, HOST, 'Transfer-Encoding: chunked', '') + '2\r\nhi\r\n0\r\n\r\n'), { status: 200, by: 'none' });
  });

  // Node 20 (llhttp 9, strict by default) refuses these itself: the proxy never sees them.
  const nodeRejects: Array<[string, string]> = [
    ['obs-fold (continuation line with SP)', req('GET / HTTP/1.1', HOST, 'X-A: b', ' c')],
    ['obs-fold (continuation line with HTAB)', req('GET / HTTP/1.1', HOST, 'X-A: b', '\tc')],
    ['obs-fold in Transfer-Encoding', req(POST, HOST, 'Transfer-Encoding:', ' chunked') + '0\r\n\r\n'],
    ['Content-Length with Transfer-Encoding', req(POST, HOST, 'Content-Length: 5', 'Transfer-Encoding: chunked') + '0\r\n\r\n'],
    ['differing duplicate Content-Length', req(POST, HOST, 'Content-Length: 5', 'Content-Length: 6') + 'hello!'],
    ['equal duplicate Content-Length', req(POST, HOST, 'Content-Length: 5', 'Content-Length: 5') + 'hello'],
    ['Transfer-Encoding: chunked, identity', req(POST, HOST, 'Transfer-Encoding: chunked, identity') + '0\r\n\r\n'],
    ['space before the colon', req(POST, HOST, 'Transfer-Encoding : chunked') + '0\r\n\r\n'],
  ];
  for (const [name, raw] of nodeRejects) {
    test(`Node itself rejects ${name}`, async () => {
      assert.deepEqual(await probe(strict.port, raw), { status: 400, by: 'node' });
    });
  }

  // Node lets these through; checkFraming must catch them.
  const oursRejects: Array<[string, string]> = [
    ['Transfer-Encoding: xchunked', req(POST, HOST, 'Transfer-Encoding: xchunked')],
    ['Transfer-Encoding: gzip, chunked', req(POST, HOST, 'Transfer-Encoding: gzip, chunked') + '0\r\n\r\n'],
    ['Transfer-Encoding: chunked;q=1', req(POST, HOST, 'Transfer-Encoding: chunked;q=1') + '0\r\n\r\n'],
    ['Transfer-Encoding in HTTP/1.0', req('POST / HTTP/1.0', HOST, 'Transfer-Encoding: chunked') + '0\r\n\r\n'],
    ['two Host headers', req('GET / HTTP/1.1', 'Host: a.example', 'Host: b.example')],
  ];
  for (const [name, raw] of oursRejects) {
    test(`checkFraming rejects ${name}, which Node passes`, async () => {
      assert.deepEqual(await probe(strict.port, raw), { status: 400, by: 'archlab' });
    });
  }

  // Behind a lenient parser the structural rules are still enforced by checkFraming.
  const lenientCases: Array<[string, string]> = [
    ['Content-Length with Transfer-Encoding', req(POST, HOST, 'Content-Length: 5', 'Transfer-Encoding: chunked') + '0\r\n\r\n'],
    ['Transfer-Encoding: chunked, identity', req(POST, HOST, 'Transfer-Encoding: chunked, identity') + '0\r\n\r\n'],
    ['Transfer-Encoding twice', req(POST, HOST, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked') + '0\r\n\r\n'],
    ['space before the colon', req(POST, HOST, 'Transfer-Encoding : chunked') + '0\r\n\r\n'],
  ];
  for (const [name, raw] of lenientCases) {
    test(`behind insecureHTTPParser, ${name} is still refused`, async () => {
      assert.deepEqual(await probe(lenient.port, raw), { status: 400, by: 'archlab' });
    });
  }
});
