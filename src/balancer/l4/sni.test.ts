import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { ArchlabError, isArchlabError } from '../../core/errors.js';
import type { L4ErrorCode } from './errors.js';
import { parseClientHello, type ClientHelloInfo, type ClientHelloOptions } from './sni.js';

// ---------------------------------------------------------------------------------------------
// Real ClientHellos, captured from Node's own TLS client (OpenSSL) on loopback.

/**
 * Starts tls.connect against a TCP server that never answers and returns the first TLS record the
 * client sent (OpenSSL writes the whole ClientHello in one record). Bounded by `timeoutMs`.
 */
async function captureNodeHello(options: tls.ConnectionOptions, timeoutMs = 5000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let client: tls.TLSSocket | undefined;
  const server = net.createServer();
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ArchlabError('TEST_TIMEOUT', `no ClientHello within ${timeoutMs} ms`)), timeoutMs);
      server.on('connection', (sock) => {
        sock.on('data', (d: Buffer) => {
          chunks.push(d);
          const all = Buffer.concat(chunks);
          if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
            clearTimeout(timer);
            resolve(all.subarray(0, 5 + all.readUInt16BE(3)));
            sock.destroy();
          }
        });
        sock.on('error', () => {});
      });
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
        client.on('error', () => {}); // the server hangs up mid-handshake on purpose
      });
    });
  } finally {
    client?.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

function hello(buf: Buffer, options?: ClientHelloOptions): ClientHelloInfo {
  const r = parseClientHello(buf, options);
  assert.equal(r.kind, 'hello', `expected a hello, got ${r.kind}`);
  return r as ClientHelloInfo;
}

function throwsCode(fn: () => unknown, code: L4ErrorCode | 'ARCHLAB_INVALID_ARGUMENT', message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isArchlabError(err, code), `expected ${code}, got ${String(err)}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Splits one record's handshake payload into records of `size` bytes. */
function refragment(record: Buffer, size: number): Buffer {
  const payload = record.subarray(5);
  const parts: Buffer[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const frag = payload.subarray(off, Math.min(off + size, payload.length));
    const head = Buffer.from([0x16, record[1]!, record[2]!, 0, 0]);
    head.writeUInt16BE(frag.length, 3);
    parts.push(head, frag);
  }
  return Buffer.concat(parts);
}

/** Every proper prefix of `buf` is incomplete; `buf` itself gives the same hello as `expected`. */
function assertIncremental(buf: Buffer, expected: ClientHelloInfo): void {
  for (let k = 0; k < buf.length; k++) {
    assert.deepEqual(parseClientHello(buf.subarray(0, k)), { kind: 'incomplete' }, `prefix of ${k}/${buf.length} bytes`);
  }
  assert.deepEqual(parseClientHello(buf), expected);
}

// ---------------------------------------------------------------------------------------------
// Hand-built ClientHellos, for the cases no sane client sends.

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), u16(data.length), data]);
const sniExt = (...names: (string | Buffer)[]): Buffer => {
  const entries = Buffer.concat(names.map((n) => (typeof n === 'string' ? Buffer.from(n, 'latin1') : n)).map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), n])));
  return ext(0, Buffer.concat([u16(entries.length), entries]));
};
const alpnExt = (...names: string[]): Buffer => {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([n.length]), Buffer.from(n, 'latin1')])));
  return ext(16, Buffer.concat([u16(list.length), list]));
};
const versionsExt = (...versions: number[]): Buffer => ext(43, Buffer.concat([Buffer.from([versions.length * 2]), ...versions.map(u16)]));

interface Build {
  legacyVersion?: number;
  sessionId?: Buffer;
  extensions?: Buffer[] | null;
  recordVersion?: number;
}

/** A ClientHello in one record; `extensions: null` leaves out the extensions block. */
function buildHello(b: Build = {}): Buffer {
  const sid = b.sessionId ?? Buffer.alloc(32, 0xaa);
  const parts = [u16(b.legacyVersion ?? 0x0303), Buffer.alloc(32, 0x11), Buffer.from([sid.length]), sid, u16(4), u16(0x1301), u16(0xc02f), Buffer.from([1, 0])];
  if (b.extensions !== null) {
    const exts = Buffer.concat(b.extensions ?? []);
    parts.push(u16(exts.length), exts);
  }
  const body = Buffer.concat(parts);
  const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16]), u16(b.recordVersion ?? 0x0301), u16(hs.length), hs]);
}

// ---------------------------------------------------------------------------------------------

describe('parseClientHello on hellos captured from Node tls.connect', () => {
  const LONG = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(56)}.test`;
  const captured: Record<string, Buffer> = {};
  before(async () => {
    captured.sni = await captureNodeHello({ servername: 'example.test' });
    captured.alpn = await captureNodeHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] });
    captured.none = await captureNodeHello({}); // host is an IP: Node sends no SNI
    captured.long = await captureNodeHello({ servername: LONG });
    captured.upper = await captureNodeHello({ servername: 'WWW.Example.TEST' });
    captured.tls12 = await captureNodeHello({ servername: 'old.example.test', maxVersion: 'TLSv1.2' });
  });

  test('servername example.test, TLS 1.3 offered', () => {
    assert.deepEqual(hello(captured.sni!), { kind: 'hello', serverName: 'example.test', alpn: [], version: 0x0304 });
  });

  test('ALPN h2 and http/1.1 in the client order', () => {
    assert.deepEqual(hello(captured.alpn!), { kind: 'hello', serverName: 'example.test', alpn: ['h2', 'http/1.1'], version: 0x0304 });
  });

  test('no SNI', () => {
    assert.equal(hello(captured.none!).serverName, undefined);
  });

  test('a 253-byte name (the DNS maximum)', () => {
    assert.equal(LONG.length, 253);
    assert.equal(hello(captured.long!).serverName, LONG);
  });

  test('the name is lower-cased', () => {
    assert.ok(captured.upper!.includes('WWW.Example.TEST'), 'Node sends the name as given');
    assert.equal(hello(captured.upper!).serverName, 'www.example.test');
  });

  test('a TLS 1.2-only client reports 0x0303', () => {
    assert.deepEqual(hello(captured.tls12!), { kind: 'hello', serverName: 'old.example.test', alpn: [], version: 0x0303 });
  });

  test('fed byte by byte: incomplete until the last byte', () => {
    for (const key of ['sni', 'alpn', 'none']) assertIncremental(captured[key]!, hello(captured[key]!));
  });

  test('split over many records (down to one byte each): same answer, incomplete until complete', () => {
    const whole = hello(captured.alpn!);
    for (const size of [1, 3, 4, 5, 64, 200]) {
      const split = refragment(captured.alpn!, size);
      assert.deepEqual(hello(split), whole, `fragments of ${size}`);
    }
    assertIncremental(refragment(captured.alpn!, 7), whole);
  });

  test('bytes after the hello (early data, the next record) do not matter', () => {
    const more = Buffer.concat([captured.sni!, Buffer.from([23, 3, 3, 0, 5, 1, 2, 3, 4, 5])]);
    assert.equal(hello(more).serverName, 'example.test');
  });

  test('the buffer is not changed', () => {
    const copy = Buffer.from(captured.alpn!);
    hello(refragment(captured.alpn!, 10));
    hello(captured.alpn!);
    assert.deepEqual(captured.alpn, copy);
  });

  test('truncated inside: the handshake length cut short so the extensions overrun it', () => {
    const rec = Buffer.from(captured.sni!);
    const cut = 10;
    const short = rec.subarray(0, rec.length - cut);
    short.writeUInt16BE(rec.readUInt16BE(3) - cut, 3);
    const hsLen = rec.readUIntBE(6, 3) - cut;
    short.writeUIntBE(hsLen, 6, 3);
    throwsCode(() => parseClientHello(short), 'ARCHLAB_TLS_HELLO_INVALID', /extensions length \d+ does not match/);
  });

  test('maxBytes below the hello size: too large', () => {
    throwsCode(() => parseClientHello(captured.alpn!, { maxBytes: 64 }), 'ARCHLAB_TLS_HELLO_TOO_LARGE');
    assert.equal(hello(captured.alpn!, { maxBytes: captured.alpn!.length }).serverName, 'example.test');
  });
});

describe('parseClientHello detection and limits', () => {
  test('not TLS', () => {
    const cases: [string, Buffer][] = [
      ['HTTP', Buffer.from('GET / HTTP/1.1\r\n')],
      ['PROXY v1', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
      ['SSLv2-style hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])],
      ['alert record', Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])],
      ['handshake type byte with version major 2', Buffer.from([0x16, 0x02])],
      ['version 3.9', Buffer.from([0x16, 0x03, 0x09])],
      ['random garbage', Buffer.from('5cd1e2f00a9b', 'hex')],
    ];
    for (const [name, buf] of cases) assert.deepEqual(parseClientHello(buf), { kind: 'not-tls' }, name);
  });

  test('incomplete prefixes', () => {
    for (const bytes of [[], [0x16], [0x16, 0x03], [0x16, 0x03, 0x01, 0x02], [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]]) {
      assert.deepEqual(parseClientHello(Buffer.from(bytes)), { kind: 'incomplete' }, JSON.stringify(bytes));
    }
  });

  test('a hello announcing more than maxBytes fails at its 9th byte', () => {
    throwsCode(() => parseClientHello(Buffer.from([0x16, 3, 1, 0x40, 0x00, 1, 0x00, 0x50, 0x00])), 'ARCHLAB_TLS_HELLO_TOO_LARGE', /at least/);
  });

  test('one-byte records cannot stretch the stream past maxBytes', () => {
    const h = buildHello({ extensions: [sniExt('a.test'), ext(0xffce, Buffer.alloc(3000))] });
    const split = refragment(h, 1);
    assert.ok(split.length > 16384);
    throwsCode(() => parseClientHello(split.subarray(0, 16384)), 'ARCHLAB_TLS_HELLO_TOO_LARGE');
    assert.equal(hello(split, { maxBytes: split.length }).serverName, 'a.test');
  });

  test('maxBytes is validated', () => {
    for (const bad of [0, 63, 1.5, (1 << 20) + 1]) throwsCode(() => parseClientHello(Buffer.alloc(0), { maxBytes: bad }), 'ARCHLAB_INVALID_ARGUMENT');
  });

  test('results without extensions and with GREASE versions', () => {
    assert.deepEqual(hello(buildHello({ extensions: null })), { kind: 'hello', serverName: undefined, alpn: [], version: 0x0303 });
    assert.equal(hello(buildHello({ extensions: [versionsExt(0x7a7a, 0x0304, 0x0303)] })).version, 0x0304);
    assert.equal(hello(buildHello({ extensions: [versionsExt(0x2a2a)] })).version, 0x0303, 'only GREASE: legacy_version');
    assert.equal(hello(buildHello({ legacyVersion: 0x0301, extensions: [] })).version, 0x0301);
  });

  test('names: underscores and digits allowed; unknown name types skipped', () => {
    assert.equal(hello(buildHello({ extensions: [sniExt('_acme-challenge.x1.example.test')] })).serverName, '_acme-challenge.x1.example.test');
    assert.equal(hello(buildHello({ extensions: [sniExt('xn--bcher-kva.example')] })).serverName, 'xn--bcher-kva.example');
    const otherType = Buffer.concat([Buffer.from([7]), u16(3), Buffer.from('abc')]);
    const hostEntry = Buffer.concat([Buffer.from([0]), u16(6), Buffer.from('a.test')]);
    const list = Buffer.concat([otherType, hostEntry]);
    assert.equal(hello(buildHello({ extensions: [ext(0, Buffer.concat([u16(list.length), list]))] })).serverName, 'a.test');
  });

  const LABEL64 = `${'a'.repeat(64)}.test`;
  const NAME254 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.test`;
  const invalidNames: [string, string | Buffer, RegExp][] = [
    ['trailing dot', 'example.test.', /ends with a dot/],
    ['empty label', 'example..test', /empty label/],
    ['leading dot', '.example.test', /empty label/],
    ['leading hyphen', '-example.test', /starting or ending with "-"/],
    ['trailing hyphen in a label', 'example-.test', /starting or ending with "-"/],
    ['a 64-byte label', LABEL64, /label over 63/],
    ['254 bytes', NAME254, /254 bytes/],
    ['IPv4 literal', '192.0.2.1', /IP literal/],
    ['IPv6 literal', '2001:db8::1', /byte 0x3a/],
    ['space', 'exa mple.test', /byte 0x20/],
    ['NUL', Buffer.from('example.test\0evil.test', 'latin1'), /byte 0x00/],
    ['UTF-8', Buffer.from('bücher.test', 'utf8'), /byte 0xc3/],
    ['empty', '', /is empty/],
  ];
  for (const [name, value, message] of invalidNames) {
    test(`rejects server name: ${name}`, () => {
      assert.equal(NAME254.length, 254);
      throwsCode(() => parseClientHello(buildHello({ extensions: [sniExt(value)] })), 'ARCHLAB_TLS_HELLO_INVALID', message);
    });
  }

  const malformed: [string, () => Buffer, RegExp][] = [
    ['handshake type 2 (ServerHello)', () => patch(buildHello(), 5, 2), /handshake type 2/],
    ['empty record', () => Buffer.from([0x16, 3, 1, 0, 0]), /empty handshake record/],
    ['record over 2^14', () => Buffer.from([0x16, 3, 1, 0x40, 0x01]), /record length 16385/],
    ['handshake body too short', () => Buffer.from([0x16, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0]), /shorter than 41/],
    ['legacy_version 2.0', () => buildHello({ legacyVersion: 0x0200 }), /legacy_version 0x200/],
    ['session id of 33 bytes', () => buildHello({ sessionId: Buffer.alloc(33) }), /session_id of 33/],
    ['odd cipher_suites length', () => patchU16(buildHello({ sessionId: Buffer.alloc(0) }), 5 + 4 + 34 + 1, 3), /cipher_suites length 3/],
    ['extensions length too long', () => patchU16(buildHello({ extensions: [sniExt('a.test')] }), 5 + 4 + 34 + 1 + 32 + 2 + 4 + 2, 100), /extensions length 100/],
    ['extension running past the hello', () => buildHello({ extensions: [Buffer.concat([u16(0xfe00), u16(50), Buffer.alloc(4)])] }), /extension 65024 runs past/],
    ['two server_name extensions', () => buildHello({ extensions: [sniExt('a.test'), sniExt('b.test')] }), /two server_name extensions/],
    ['two host_names', () => buildHello({ extensions: [sniExt('a.test', 'b.test')] }), /two host_name entries/],
    ['server_name with an empty list', () => buildHello({ extensions: [ext(0, u16(0))] }), /list length 0/],
    ['server_name without data', () => buildHello({ extensions: [ext(0, Buffer.alloc(0))] }), /without a server name list/],
    ['server_name entry overrunning', () => buildHello({ extensions: [ext(0, Buffer.concat([u16(5), Buffer.from([0]), u16(9), Buffer.from('ab')]))] }), /runs past its extension/],
    ['server_name list of other types only', () => buildHello({ extensions: [ext(0, Buffer.concat([u16(4), Buffer.from([1]), u16(1), Buffer.from('x')]))] }), /without a host_name/],
    ['empty ALPN name', () => buildHello({ extensions: [alpnExt('h2', '')] }), /empty ALPN protocol name/],
    ['ALPN list shorter than its extension', () => buildHello({ extensions: [ext(16, Buffer.concat([u16(2), Buffer.from([1, 0x61, 0x62])]))] }), /ALPN list length 2/],
    ['ALPN name overrunning', () => buildHello({ extensions: [ext(16, Buffer.concat([u16(3), Buffer.from([5, 0x61, 0x62])]))] }), /runs past/],
    ['two ALPN extensions', () => buildHello({ extensions: [alpnExt('h2'), alpnExt('h2')] }), /two ALPN/],
    ['odd supported_versions', () => buildHello({ extensions: [ext(43, Buffer.from([3, 3, 4, 3]))] }), /supported_versions/],
    ['another record type before the hello ends', () => Buffer.concat([refragment(buildHello(), 10).subarray(0, 15), Buffer.from([23, 3, 3, 0, 1, 0])]), /record type 23/],
    ['record version major 2 in a later record', () => patch(refragment(buildHello(), 10), 16, 2), /record version major 2/],
  ];
  for (const [name, make, message] of malformed) {
    test(`rejects: ${name}`, () => throwsCode(() => parseClientHello(make()), 'ARCHLAB_TLS_HELLO_INVALID', message));
  }

  test('a record problem is reported as soon as its bytes arrive', () => {
    const split = refragment(buildHello({ extensions: [sniExt('a.test')] }), 10);
    const bad = patch(split, 15, 23);
    throwsCode(() => parseClientHello(bad.subarray(0, 16)), 'ARCHLAB_TLS_HELLO_INVALID', /record type 23/);
  });
});

function patch(buf: Buffer, offset: number, value: number): Buffer {
  const out = Buffer.from(buf);
  out[offset] = value;
  return out;
}

function patchU16(buf: Buffer, offset: number, value: number): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt16BE(value, offset);
  return out;
}

// Keep the suite honest about its own fixtures: the builder's output is what a client would send.
describe('hand-built hellos are accepted by a real TLS server', () => {
  let server: tls.Server | undefined;
  after(() => server?.close());
  test('OpenSSL reads buildHello output as a ClientHello (answers with a handshake or an alert, not a decode error)', async () => {
    // No certificate: the server fails the handshake after parsing the hello, with an alert that says why.
    server = tls.createServer({});
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(buildHello({ extensions: [sniExt('a.test'), alpnExt('h2')] })));
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ArchlabError('TEST_TIMEOUT', 'no reply from the TLS server within 5 s'));
      }, 5000);
      sock.once('data', (d: Buffer) => {
        clearTimeout(timer);
        sock.destroy();
        resolve(d);
      });
      sock.on('error', reject);
    });
    // An alert record (21): level 2, description anything but decode_error (50) / illegal_parameter (47).
    assert.equal(reply[0], 21, `reply ${reply.toString('hex')}`);
    assert.ok(reply[6] !== 50 && reply[6] !== 47, `alert ${reply[6]} says our hello is malformed`);
  });
});
