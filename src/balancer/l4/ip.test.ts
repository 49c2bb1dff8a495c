import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SocketAddress, isIP } from 'node:net';
import { SeededRandom } from '../../core/random.js';
import { formatIPv4, formatIPv6, writeIPv4, writeIPv6 } from './ip.js';

// Node's own formatting (libuv inet_ntop behind SocketAddress) is the reference: a parsed PROXY
// address must equal what socket.remoteAddress would have said.
function nodeFormat(bytes: Buffer): string {
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(bytes.readUInt16BE(2 * i).toString(16));
  return new SocketAddress({ address: words.join(':'), family: 'ipv6' }).address;
}

test('formatIPv6 matches Node on 20000 random addresses biased to zero runs and mapped forms', () => {
  const seed = 0x1b6e;
  const rnd = new SeededRandom(seed);
  const b = Buffer.alloc(16);
  for (let round = 0; round < 20000; round++) {
    for (let w = 0; w < 8; w++) {
      const r = rnd.int(8);
      const v = r < 4 ? 0 : r === 4 ? 0xffff : r === 5 ? 1 : rnd.int(0x10000);
      b.writeUInt16BE(v, 2 * w);
    }
    if (rnd.int(6) === 0) b.fill(0, 0, 10).writeUInt16BE(rnd.int(2) === 0 ? 0xffff : 0, 10);
    const ours = formatIPv6(b, 0);
    assert.equal(ours, nodeFormat(b), `seed ${seed} round ${round} bytes ${b.toString('hex')}`);
    const back = Buffer.alloc(16);
    assert.ok(writeIPv6(ours, back, 0), `seed ${seed} round ${round}: cannot re-parse ${ours}`);
    assert.deepEqual(back, b, `seed ${seed} round ${round}: ${ours}`);
  }
});

test('formatIPv6 edge cases', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00000000000000000000ffffc0000201', '::ffff:192.0.2.1'],
    ['000000000000000000000000c0000201', '::192.0.2.1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['00010000000100000001000000010000', '1:0:1:0:1:0:1:0'],
    ['fe800000000000000000000000000001', 'fe80::1'],
  ];
  for (const [hex, text] of cases) assert.equal(formatIPv6(Buffer.from(hex, 'hex'), 0), text);
  assert.equal(formatIPv4(Buffer.from([192, 0, 2, 1]), 0), '192.0.2.1');
});

test('writeIPv6 agrees with net.isIP on curated and random strings', () => {
  const curated = [
    '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6::8', 'FFFF::', '::ffff:1.2.3.4',
    '1:2:3:4:5:6:1.2.3.4', '::1.2.3.4', '1::1.2.3.4', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', ':1::', '1:::2', '1::2::3', '12345::',
    '::1.2.3.04', '::1.2.3', '::1.2.3.4.5', '1.2.3.4::', ':', '', 'g::', '::ffff:256.1.1.1', '1:2:3:4:5:6:7:1.2.3.4', '0::0',
  ];
  const b = Buffer.alloc(16);
  for (const s of curated) assert.equal(writeIPv6(s, b, 0), isIP(s) === 6, JSON.stringify(s));
  const seed = 77;
  const rnd = new SeededRandom(seed);
  const alphabet = '0123456789abcdefABCDEF:::..';
  for (let round = 0; round < 20000; round++) {
    let s = '';
    const len = 1 + rnd.int(24);
    for (let i = 0; i < len; i++) s += alphabet[rnd.int(alphabet.length)];
    assert.equal(writeIPv6(s, b, 0), isIP(s) === 6, `seed ${seed} round ${round}: ${JSON.stringify(s)}`);
  }
  // Near-valid shapes: 1..9 groups of 1..5 hex digits, one or two '::', maybe a dotted tail.
  let valid = 0;
  for (let round = 0; round < 20000; round++) {
    const groups: string[] = [];
    const count = 1 + rnd.int(9);
    for (let g = 0; g < count; g++) groups.push(rnd.int(12) === 0 ? '' : rnd.int(0x100000).toString(16).slice(0, 1 + rnd.int(5)));
    let s = groups.join(':');
    if (rnd.int(3) === 0) s += (s === '' ? '' : ':') + `${rnd.int(300)}.${rnd.int(256)}.${rnd.int(256)}.${rnd.int(256)}`;
    const ok = writeIPv6(s, b, 0);
    if (ok) valid++;
    assert.equal(ok, isIP(s) === 6, `seed ${seed} shaped round ${round}: ${JSON.stringify(s)}`);
    if (ok) assert.equal(formatIPv6(b, 0), new SocketAddress({ address: s, family: 'ipv6' }).address, s);
  }
  assert.ok(valid > 1000, `only ${valid} valid shaped addresses; the generator drifted`);
});

test('writeIPv6 rejects zones and brackets; writeIPv4 rejects leading zeros', () => {
  const b = Buffer.alloc(16);
  assert.equal(writeIPv6('fe80::1%eth0', b, 0), false);
  assert.equal(writeIPv6('[::1]', b, 0), false);
  for (const s of ['1.2.3.4', '0.0.0.0', '255.255.255.255', '10.0.0.100']) assert.ok(writeIPv4(s, b, 0), s);
  for (const s of ['01.2.3.4', '1.2.3.00', '256.1.1.1', '1.2.3', '1.2.3.4.5', '1..2.3', ' 1.2.3.4', '1.2.3.4 ', '', 'a.b.c.d']) {
    assert.equal(writeIPv4(s, b, 0), false, s);
    assert.equal(isIP(s), 0, `reference disagrees on ${s}`);
  }
  writeIPv4('198.51.100.7', b, 3);
  assert.deepEqual([...b.subarray(3, 7)], [198, 51, 100, 7]);
});
