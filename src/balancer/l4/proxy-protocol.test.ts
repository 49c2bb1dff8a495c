import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isArchlabError } from '../../core/errors.js';
import type { L4ErrorCode } from './errors.js';
import {
  PP2_TYPE,
  PROXY_V2_SIGNATURE,
  encodeV1,
  encodeV2,
  parseProxyHeader,
  type ProxyHeader,
  type ProxyParseOptions,
  type ProxyV1Info,
  type ProxyV2Info,
} from './proxy-protocol.js';

const SIG = PROXY_V2_SIGNATURE.toString('hex');

function parseHeader(buf: Buffer, options?: ProxyParseOptions): ProxyHeader {
  const r = parseProxyHeader(buf, options);
  assert.equal(r.kind, 'header', `expected a header, got ${r.kind}`);
  return r as ProxyHeader;
}

function throwsCode(fn: () => unknown, code: L4ErrorCode | 'ARCHLAB_INVALID_ARGUMENT', message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isArchlabError(err, code), `expected ${code}, got ${String(err)}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Every proper prefix is incomplete, the whole buffer parses to the same header as in one piece. */
function assertIncremental(buf: Buffer): void {
  for (let k = 0; k < buf.length; k++) {
    assert.deepEqual(parseProxyHeader(buf.subarray(0, k)), { kind: 'incomplete' }, `prefix of ${k}/${buf.length} bytes`);
  }
  assert.deepEqual(parseProxyHeader(buf), parseProxyHeader(Buffer.concat([buf, Buffer.from('GET / HTTP/1.1\r\n\r\n')])));
}

describe('PROXY protocol v1', () => {
  test('encodes the spec example exactly', () => {
    const info = { family: 'TCP4', srcAddr: '192.0.2.1', dstAddr: '198.51.100.1', srcPort: 56324, dstPort: 443 } as const;
    assert.equal(encodeV1(info).toString('latin1'), 'PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n');
  });

  test('accepts the brief shape (addresses required for every family) as its argument type', () => {
    const wide: { family: 'TCP4' | 'TCP6' | 'UNKNOWN'; srcAddr: string; dstAddr: string; srcPort: number; dstPort: number } = {
      family: 'UNKNOWN',
      srcAddr: '1.2.3.4',
      dstAddr: '5.6.7.8',
      srcPort: 1,
      dstPort: 2,
    };
    const asInfo: ProxyV1Info = wide;
    assert.equal(encodeV1(asInfo).toString('latin1'), 'PROXY UNKNOWN\r\n');
  });

  test('round trips TCP4 and TCP6, canonicalising IPv6 like socket.remoteAddress', () => {
    const h4 = parseHeader(encodeV1({ family: 'TCP4', srcAddr: '203.0.113.7', dstAddr: '10.0.0.1', srcPort: 4242, dstPort: 0 }));
    assert.deepEqual(h4, {
      kind: 'header', length: 'PROXY TCP4 203.0.113.7 10.0.0.1 4242 0\r\n'.length, version: 1, command: 'PROXY', family: 'inet', protocol: 'stream',
      srcAddr: '203.0.113.7', dstAddr: '10.0.0.1', srcPort: 4242, dstPort: 0, tlvs: [],
    });
    const v6 = encodeV1({ family: 'TCP6', srcAddr: '2001:DB8:0:0:0:0:0:7', dstAddr: '::ffff:c000:0201', srcPort: 65535, dstPort: 8443 });
    assert.equal(v6.toString('latin1'), 'PROXY TCP6 2001:db8::7 ::ffff:192.0.2.1 65535 8443\r\n');
    const h6 = parseHeader(v6);
    assert.equal(h6.family, 'inet6');
    assert.equal(h6.srcAddr, '2001:db8::7');
    assert.equal(h6.dstAddr, '::ffff:192.0.2.1');
    assert.equal(h6.srcPort, 65535);
    assert.equal(h6.length, v6.length);
    // A peer that writes IPv6 uncompressed or in upper case still yields the canonical text.
    const loose = parseHeader(Buffer.from('PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::1 1 2\r\n'));
    assert.equal(loose.srcAddr, '2001:db8::1');
  });

  test('TCP4 takes an IPv4-mapped address (what a dual-stack socket reports) and writes the dotted quad', () => {
    const buf = encodeV1({ family: 'TCP4', srcAddr: '::ffff:192.0.2.9', dstAddr: '192.0.2.10', srcPort: 1, dstPort: 2 });
    assert.equal(buf.toString('latin1'), 'PROXY TCP4 192.0.2.9 192.0.2.10 1 2\r\n');
  });

  test('UNKNOWN: short form encoded, long form parsed, both unspec without addresses', () => {
    assert.equal(encodeV1({ family: 'UNKNOWN' }).toString('latin1'), 'PROXY UNKNOWN\r\n');
    const short = parseHeader(Buffer.from('PROXY UNKNOWN\r\nHELLO'));
    assert.equal(short.length, 15);
    assert.equal(short.family, 'unspec');
    assert.equal(short.srcAddr, undefined);
    assert.equal(short.protocol, undefined);
    const worst = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    assert.equal(worst.length, 107);
    assert.equal(parseHeader(Buffer.from(worst)).length, 107);
  });

  test('the longest TCP6 line (104 bytes) parses', () => {
    const line = `PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    assert.equal(line.length, 104);
    assert.equal(parseHeader(Buffer.from(line)).srcAddr, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  });

  test('incremental: incomplete for every prefix, fed byte by byte', () => {
    assertIncremental(encodeV1({ family: 'TCP4', srcAddr: '192.0.2.1', dstAddr: '198.51.100.1', srcPort: 56324, dstPort: 443 }));
    assertIncremental(encodeV1({ family: 'TCP6', srcAddr: '2001:db8::1', dstAddr: '2001:db8::2', srcPort: 1, dstPort: 2 }));
    assertIncremental(encodeV1({ family: 'UNKNOWN' }));
  });

  const malformed: [string, string, L4ErrorCode, RegExp][] = [
    ['bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /byte 0x0a/],
    ['CR without LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /CR not followed by LF/],
    ['no space after PROXY', 'PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /space after "PROXY"/],
    ['unknown protocol', 'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /protocol "TCP5"/],
    ['lower-case protocol', 'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /protocol "tcp4"/],
    ['UNKNOWN with a suffix', 'PROXY UNKNOWNX\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /protocol "UNKNOWNX"/],
    ['empty line', 'PROXY \r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /protocol ""/],
    ['double space', 'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /single spaces/],
    ['missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /single spaces/],
    ['extra field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /single spaces/],
    ['trailing space', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /single spaces/],
    ['leading zero in address', 'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /source address "01.2.3.4"/],
    ['octet over 255', 'PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /destination address/],
    ['IPv6 under TCP4', 'PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /not an IPv4 address/],
    ['IPv4 under TCP6', 'PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /not an IPv6 address/],
    ['IPv6 zone', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /not an IPv6 address/],
    ['bracketed IPv6', 'PROXY TCP6 [::1] ::1 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /not an IPv6 address/],
    ['hostname', 'PROXY TCP4 localhost 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /not an IPv4 address/],
    ['port over 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /source port "65536"/],
    ['port with leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /destination port "080"/],
    ['negative port', 'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /source port "-1"/],
    ['hex port', 'PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /source port/],
    ['NUL byte', 'PROXY TCP4 1.2.3.4\0', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /byte 0x00/],
    ['non-ASCII byte', 'PROXY TCP4 1.2.3.\u00e9 5.6.7.8 1 2\r\n', 'ARCHLAB_PROXY_PROTOCOL_INVALID', /byte 0xe9/],
    ['no CRLF in 107 bytes', `PROXY UNKNOWN ${'x'.repeat(100)}`, 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', /within 107 bytes/],
    ['CRLF at bytes 107-108', `PROXY UNKNOWN ${'x'.repeat(92)}\r\n`, 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', /within 107 bytes/],
  ];
  for (const [name, text, code, message] of malformed) {
    test(`rejects: ${name}`, () => throwsCode(() => parseProxyHeader(Buffer.from(text, 'latin1')), code, message));
  }

  test('a bad byte fails as soon as it arrives, without waiting for the CRLF', () => {
    throwsCode(() => parseProxyHeader(Buffer.from('PROXY TCP4 1.2\n')), 'ARCHLAB_PROXY_PROTOCOL_INVALID');
    throwsCode(() => parseProxyHeader(Buffer.from('PROXY\t')), 'ARCHLAB_PROXY_PROTOCOL_INVALID');
    // ... and a line that can no longer fit fails at byte 106 without a CR.
    throwsCode(() => parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'a'.repeat(92)}`)), 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE');
    assert.equal(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'a'.repeat(91)}`)).kind, 'incomplete');
  });
});

describe('PROXY protocol v2', () => {
  test('encodes TCP over IPv4 byte for byte as in the spec layout', () => {
    const buf = encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '172.19.0.1', dstAddr: '172.19.0.3', srcPort: 42578, dstPort: 80 });
    assert.equal(buf.toString('hex'), `${SIG}2111000cac130001ac130003a6520050`);
  });

  test('round trips TCP4, UDP6, LOCAL and TLVs', () => {
    const cases: { info: ProxyV2Info; expect: Partial<ProxyHeader> }[] = [
      {
        info: { command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '203.0.113.7', dstAddr: '127.0.0.1', srcPort: 4242, dstPort: 8080 },
        expect: { length: 28, version: 2, command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '203.0.113.7', dstAddr: '127.0.0.1', srcPort: 4242, dstPort: 8080 },
      },
      {
        info: { command: 'PROXY', family: 'inet6', protocol: 'dgram', srcAddr: '2001:DB8:0:0:0:1:0:0', dstAddr: '::ffff:10.1.2.3', srcPort: 53, dstPort: 65535 },
        expect: { length: 52, family: 'inet6', protocol: 'dgram', srcAddr: '2001:db8::1:0:0', dstAddr: '::ffff:10.1.2.3', srcPort: 53, dstPort: 65535 },
      },
      {
        info: { command: 'LOCAL', family: 'unspec' },
        expect: { length: 16, command: 'LOCAL', family: 'unspec', protocol: undefined, srcAddr: undefined, tlvs: [] },
      },
    ];
    for (const { info, expect } of cases) {
      const h = parseHeader(encodeV2(info));
      for (const [k, v] of Object.entries(expect)) assert.deepEqual(h[k as keyof ProxyHeader], v, `${JSON.stringify(info)}: ${k}`);
    }
    // The leftmost of two equally long zero runs is the one compressed (RFC 5952, libuv).
    assert.equal(parseHeader(encodeV2({ ...cases[1]!.info, srcAddr: '2001:db8:0:0:1::' } as ProxyV2Info)).srcAddr, '2001:db8:0:0:1::');
  });

  test('TLVs round trip in order, empty values included, as views of the input', () => {
    const tlvs = [
      { type: PP2_TYPE.AUTHORITY, value: Buffer.from('example.test') },
      { type: PP2_TYPE.NOOP, value: Buffer.alloc(0) },
      { type: PP2_TYPE.UNIQUE_ID, value: Buffer.from([0, 1, 2, 255]) },
      { type: 0xe0, value: Buffer.alloc(1000, 7) },
    ];
    const buf = encodeV2({ command: 'PROXY', family: 'inet6', protocol: 'stream', srcAddr: '2001:db8::7', dstAddr: '2001:db8::8', srcPort: 1, dstPort: 2, tlvs });
    assert.equal(buf.length, 16 + 36 + 3 * 4 + 12 + 0 + 4 + 1000);
    const h = parseHeader(buf);
    assert.deepEqual(h.tlvs, tlvs);
    assert.equal(h.tlvs[0]!.value.buffer, buf.buffer, 'TLV values are views, not copies');
    const local = parseHeader(encodeV2({ command: 'LOCAL', family: 'unspec', tlvs }));
    assert.deepEqual(local.tlvs, tlvs);
    assert.equal(local.srcAddr, undefined);
  });

  test('LOCAL with an address block: addresses ignored (spec), TLVs after the block still read', () => {
    const tlvs = [{ type: PP2_TYPE.UNIQUE_ID, value: Buffer.from('abc') }];
    const h = parseHeader(encodeV2({ command: 'LOCAL', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2, tlvs }));
    assert.equal(h.command, 'LOCAL');
    assert.equal(h.family, 'inet');
    assert.equal(h.srcAddr, undefined);
    assert.equal(h.srcPort, undefined);
    assert.deepEqual(h.tlvs, tlvs);
    // A LOCAL header whose length is shorter than its family's block is accepted and skipped whole.
    const short = Buffer.from(`${SIG}20110002abcd`, 'hex');
    assert.equal(parseHeader(short).length, 18);
  });

  test('unix family: NUL-padded paths', () => {
    const block = Buffer.alloc(216);
    block.write('/run/client.sock', 0);
    block.write('/run/haproxy.sock', 108);
    const buf = Buffer.concat([Buffer.from(`${SIG}213100d8`, 'hex'), block]);
    const h = parseHeader(buf);
    assert.deepEqual([h.family, h.protocol, h.srcAddr, h.dstAddr, h.srcPort, h.length], ['unix', 'stream', '/run/client.sock', '/run/haproxy.sock', undefined, 232]);
  });

  test('a family with protocol 0 has no layout: reported, addresses and TLVs skipped by length', () => {
    const h = parseHeader(Buffer.from(`${SIG}21100004deadbeef`, 'hex'));
    assert.deepEqual([h.family, h.protocol, h.srcAddr, h.tlvs.length, h.length], ['inet', undefined, undefined, 0, 20]);
  });

  test('incremental: incomplete for every prefix, fed byte by byte', () => {
    assertIncremental(encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2 }));
    assertIncremental(
      encodeV2({ command: 'PROXY', family: 'inet6', protocol: 'stream', srcAddr: '::1', dstAddr: '::2', srcPort: 1, dstPort: 2, tlvs: [{ type: 1, value: Buffer.from('h2') }] }),
    );
    assertIncremental(encodeV2({ command: 'LOCAL', family: 'unspec' }));
  });

  test('the length field says where the stream data starts', () => {
    const head = encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2 });
    const buf = Buffer.concat([head, Buffer.from('SSH-2.0-OpenSSH\r\n')]);
    assert.equal(buf.subarray(parseHeader(buf).length).toString(), 'SSH-2.0-OpenSSH\r\n');
  });

  const malformed: [string, string, L4ErrorCode, RegExp][] = [
    ['version 1 in the binary format', `${SIG}1111000c`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /version 1, expected 2/],
    ['version 3', `${SIG}31`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /version 3/],
    ['command 2', `${SIG}22`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /command 0x2/],
    ['command 0xf', `${SIG}2f11000c`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /command 0xf/],
    ['family 4', `${SIG}2141`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /address family 0x4/],
    ['protocol 3', `${SIG}2113`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /transport protocol 0x3/],
    ['PROXY inet with a short address block', `${SIG}2111000401020304`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /need 12 bytes but the header length is 4/],
    ['PROXY inet6 with an IPv4-sized block', `${SIG}2121000c${'00'.repeat(12)}`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /inet6 addresses need 36/],
    ['2 trailing bytes after the addresses', `${SIG}2111000e${'00'.repeat(12)}0100`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /2 trailing bytes/],
    ['TLV overrunning the header', `${SIG}2111000f${'00'.repeat(12)}020005`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /overruns the header by 5/],
    ['unspec TLV overrunning the header', `${SIG}20000004020002ff`, 'ARCHLAB_PROXY_PROTOCOL_INVALID', /overruns/],
    ['length over the default 4096', `${SIG}21110ff1`, 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', /4097 bytes exceeds maxV2Bytes 4096/],
    ['length 65535', `${SIG}2111ffff`, 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE', /65551 bytes/],
  ];
  for (const [name, hex, code, message] of malformed) {
    test(`rejects: ${name}`, () => throwsCode(() => parseProxyHeader(Buffer.from(hex, 'hex')), code, message));
  }

  test('maxV2Bytes is configurable and validated', () => {
    const big = encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2, tlvs: [{ type: 0xe0, value: Buffer.alloc(5000) }] });
    throwsCode(() => parseProxyHeader(big), 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE');
    assert.equal(parseHeader(big, { maxV2Bytes: 65551 }).tlvs[0]!.value.length, 5000);
    throwsCode(() => parseProxyHeader(encodeV2({ command: 'LOCAL', family: 'unspec', tlvs: [{ type: 4, value: Buffer.alloc(1) }] }), { maxV2Bytes: 16 }), 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE');
    for (const bad of [15, 65552, 1.5, Number.NaN]) throwsCode(() => parseProxyHeader(Buffer.alloc(0), { maxV2Bytes: bad }), 'ARCHLAB_INVALID_ARGUMENT');
  });

  test('the TOO_LARGE verdict comes from the 16 fixed bytes, before the body arrives', () => {
    throwsCode(() => parseProxyHeader(Buffer.from(`${SIG}21111000`, 'hex')), 'ARCHLAB_PROXY_PROTOCOL_TOO_LARGE');
  });

  test('encoder refuses what it cannot write', () => {
    const base = { command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2 } as const;
    throwsCode(() => encodeV2({ ...base, srcAddr: '::1' }), 'ARCHLAB_INVALID_ARGUMENT', /srcAddr "::1"/);
    throwsCode(() => encodeV2({ ...base, family: 'inet6' }), 'ARCHLAB_INVALID_ARGUMENT', /srcAddr "1.2.3.4".*IPv6/);
    throwsCode(() => encodeV2({ ...base, dstPort: 65536 }), 'ARCHLAB_INVALID_ARGUMENT', /dstPort 65536/);
    throwsCode(() => encodeV2({ ...base, srcPort: -1 }), 'ARCHLAB_INVALID_ARGUMENT', /srcPort/);
    throwsCode(() => encodeV2({ ...base, tlvs: [{ type: 256, value: Buffer.alloc(0) }] }), 'ARCHLAB_INVALID_ARGUMENT', /TLV type/);
    throwsCode(() => encodeV2({ ...base, tlvs: [{ type: 1, value: Buffer.alloc(65536) }] }), 'ARCHLAB_INVALID_ARGUMENT', /65535 bytes/);
    throwsCode(() => encodeV2({ ...base, tlvs: [{ type: 1, value: Buffer.alloc(65000) }, { type: 2, value: Buffer.alloc(1000) }] }), 'ARCHLAB_INVALID_ARGUMENT', /format allows 65535/);
    throwsCode(() => encodeV2({ ...base, command: 'NOPE' as 'PROXY' }), 'ARCHLAB_INVALID_ARGUMENT', /command/);
    throwsCode(() => encodeV2({ ...base, protocol: 'seqpacket' as 'stream' }), 'ARCHLAB_INVALID_ARGUMENT', /protocol/);
    throwsCode(() => encodeV1({ family: 'TCP4', srcAddr: '1.2.3.4', dstAddr: '1.2.3.04', srcPort: 1, dstPort: 2 }), 'ARCHLAB_INVALID_ARGUMENT', /dstAddr/);
    throwsCode(() => encodeV1({ family: 'TCP6', srcAddr: 'fe80::1%lo', dstAddr: '::1', srcPort: 1, dstPort: 2 }), 'ARCHLAB_INVALID_ARGUMENT', /srcAddr/);
    throwsCode(() => encodeV1({ family: 'TCP4', srcAddr: '1.2.3.4', dstAddr: '1.2.3.4', srcPort: 1.5, dstPort: 2 }), 'ARCHLAB_INVALID_ARGUMENT', /srcPort/);
    throwsCode(() => encodeV1({ family: 'UDP4' as 'TCP4', srcAddr: '1.2.3.4', dstAddr: '1.2.3.4', srcPort: 1, dstPort: 2 }), 'ARCHLAB_INVALID_ARGUMENT', /family/);
  });

  test('unspec ignores the protocol and writes family/protocol byte 0x00', () => {
    const buf = encodeV2({ command: 'PROXY', family: 'unspec', protocol: 'stream' });
    assert.equal(buf.toString('hex'), `${SIG}21000000`);
  });
});

describe('detection', () => {
  test('bytes that cannot start a PROXY header are none, as early as possible', () => {
    for (const text of ['GET / HTTP/1.1\r\n', 'POST', 'SSH-2.0', 'PRI * HTTP/2.0', 'PROXZ', 'PX', '\r\n\r\n\r', '\r\nGET']) {
      assert.deepEqual(parseProxyHeader(Buffer.from(text)), { kind: 'none' }, JSON.stringify(text));
    }
    assert.deepEqual(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b])), { kind: 'none' });
  });

  test('prefixes of either signature are incomplete', () => {
    for (const text of ['', 'P', 'PR', 'PROX', 'PROXY', 'PROXY ', '\r', '\r\n\r\n\0']) {
      assert.deepEqual(parseProxyHeader(Buffer.from(text)), { kind: 'incomplete' }, JSON.stringify(text));
    }
  });

  test('results of one kind share one shape', () => {
    const a = parseHeader(encodeV1({ family: 'UNKNOWN' }));
    const b = parseHeader(encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 1, dstPort: 2 }));
    assert.deepEqual(Object.keys(a), Object.keys(b));
    assert.equal(parseProxyHeader(Buffer.alloc(0)), parseProxyHeader(Buffer.from('P')), 'incomplete is one frozen object');
  });
});
