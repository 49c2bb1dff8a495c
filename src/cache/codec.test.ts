import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeValue, encodeValue, jsonCodec, rawCodec, stringCodec } from './codec.js';
import { CacheError } from './errors.js';

function roundTrip(value: unknown): unknown {
  const encoded = jsonCodec.encode(value);
  return jsonCodec.decode(Buffer.isBuffer(encoded) ? encoded : Buffer.from(encoded));
}

function isCodecError(err: unknown, detail?: Record<string, unknown>): boolean {
  assert.ok(err instanceof CacheError, `expected a CacheError, got ${String(err)}`);
  assert.equal(err.code, 'ARCHLAB_CACHE_CODEC');
  assert.equal(err.retryable, false);
  for (const [k, v] of Object.entries(detail ?? {})) assert.deepEqual(err.details?.[k], v, `details.${k}`);
  return true;
}

test('json codec: plain JSON values round-trip unchanged', () => {
  const values: unknown[] = [
    'text',
    '',
    'unicode ✓ 日本語 😀',
    0,
    -1.5,
    Number.MAX_SAFE_INTEGER,
    true,
    false,
    null,
    [],
    {},
    [1, 'two', { three: [3] }],
    { a: 1, nested: { deep: { list: [null, true, 'x'] } }, '': 'empty key', $dollar: 'kept', 'with"quote': '"$b"' },
  ];
  for (const v of values) assert.deepEqual(roundTrip(v), v);
});

test('json codec: Buffers (and Uint8Arrays) come back as equal Buffers, anywhere in the value', () => {
  const bytes = Buffer.from([0, 1, 2, 250, 255, 0x22, 0x24]);
  const back = roundTrip({ bytes, list: [Buffer.alloc(0), new Uint8Array([9, 8, 7])], top: 1 }) as Record<string, unknown>;
  assert.ok(Buffer.isBuffer(back.bytes));
  assert.deepEqual(back.bytes, bytes);
  const list = back.list as unknown[];
  assert.ok(Buffer.isBuffer(list[0]) && (list[0] as Buffer).length === 0);
  assert.ok(Buffer.isBuffer(list[1]));
  assert.deepEqual([...(list[1] as Buffer)], [9, 8, 7]);
  const top = roundTrip(bytes);
  assert.ok(Buffer.isBuffer(top));
  assert.ok(bytes.equals(top as Buffer));
  // A Buffer that is a slice of a larger pool keeps only its own bytes.
  const pooled = Buffer.from('hello world').subarray(6);
  assert.equal((roundTrip(pooled) as Buffer).toString(), 'world');
});

test('json codec: Dates come back as equal Dates (to the millisecond), invalid ones as invalid Dates', () => {
  const d = new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 123));
  const back = roundTrip({ at: d, list: [d] }) as { at: Date; list: Date[] };
  assert.ok(back.at instanceof Date);
  assert.equal(back.at.getTime(), d.getTime());
  assert.equal(back.list[0]!.getTime(), d.getTime());
  const bad = roundTrip(new Date(NaN));
  assert.ok(bad instanceof Date && Number.isNaN(bad.getTime()));
});

test('json codec: user objects shaped like tags are not mistaken for Buffers or Dates', () => {
  const values = [{ $b: 'aGVsbG8=' }, { $d: '2020-01-01T00:00:00.000Z' }, { $o: { $b: 'x' } }, { $b: { $d: null } }, [{ $d: 'not a date' }]];
  for (const v of values) assert.deepEqual(roundTrip(v), v);
  // ... including when their content is itself a tagged value.
  const inner = roundTrip({ $b: Buffer.from('hi') }) as { $b: Buffer };
  assert.ok(Buffer.isBuffer(inner.$b));
  assert.equal(inner.$b.toString(), 'hi');
});

test('json codec: undefined follows JSON (dropped in objects, null in arrays); top-level undefined is refused', () => {
  assert.deepEqual(roundTrip({ a: 1, b: undefined }), { a: 1 });
  assert.deepEqual(roundTrip([1, undefined, 3]), [1, null, 3]);
  assert.throws(() => jsonCodec.encode(undefined), (e) => isCodecError(e, { direction: 'encode' }));
});

test('json codec: class instances use toJSON or come back as plain objects', () => {
  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }
  class Money {
    constructor(readonly cents: number) {}
    toJSON(): string {
      return `${this.cents / 100} EUR`;
    }
  }
  assert.deepEqual(roundTrip(new Point(1, 2)), { x: 1, y: 2 });
  assert.deepEqual(roundTrip({ price: new Money(1250) }), { price: '12.5 EUR' });
});

test('json codec: what JSON cannot keep is refused with ARCHLAB_CACHE_CODEC naming where', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const cases: [unknown, string][] = [
    [10n, '$'],
    [{ n: { big: 1n } }, '$.n.big'],
    [{ f: () => 1 }, '$.f'],
    [[Symbol('s')], '$[0]'],
    [{ x: NaN }, '$.x'],
    [{ x: Infinity }, '$.x'],
    [new Map([[1, 2]]), '$'],
    [{ s: new Set([1]) }, '$.s'],
    [{ f: new Float64Array(2) }, '$.f'],
    [cyclic, '$.self'],
  ];
  for (const [value, path] of cases) {
    assert.throws(() => jsonCodec.encode(value), (e) => isCodecError(e, { direction: 'encode', path }));
  }
  // A repeated (not cyclic) reference is fine.
  const shared = { v: 1 };
  assert.deepEqual(roundTrip({ a: shared, b: shared }), { a: { v: 1 }, b: { v: 1 } });
  // A throwing toJSON is reported as a codec error too.
  assert.throws(() => jsonCodec.encode({ toJSON: () => { throw new RangeError('nope'); } }), (e) => isCodecError(e));
});

test('json codec: garbled or hostile bytes give ARCHLAB_CACHE_CODEC, never a crash or prototype change', () => {
  const bad = [
    Buffer.from('{not json'),
    Buffer.from([0xff, 0xfe, 0x00]),
    Buffer.from(''),
    Buffer.from('{"$b": 12}'),
    Buffer.from('{"$d": "yesterday"}'),
    Buffer.from('{"$o": [1]}'),
    // Tagged values nested deeper than the decoder's stack: refused, not a crash.
    Buffer.from('{"a":'.repeat(200_000) + '{"$d":null}' + '}'.repeat(200_000)),
  ];
  for (const data of bad) assert.throws(() => jsonCodec.decode(data), (e) => isCodecError(e, { direction: 'decode' }));
  // Deep nesting without tags is plain JSON and decodes.
  assert.ok(Array.isArray(jsonCodec.decode(Buffer.from('['.repeat(100_000) + ']'.repeat(100_000)))));
  const proto = jsonCodec.decode(Buffer.from('{"__proto__": {"$b": "aGk="}, "x": {"$d": null}}')) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.ok(Buffer.isBuffer(Object.getOwnPropertyDescriptor(proto, '__proto__')?.value));
  assert.equal(({} as Record<string, unknown>).$b, undefined);
});

test('json codec: "__proto__" keys survive encoding as plain data', () => {
  const value = JSON.parse('{"__proto__": {"when": "x"}, "d": 1}') as Record<string, unknown>;
  const withDate = JSON.parse('{"__proto__": 1}') as Record<string, unknown>;
  withDate.at = new Date(0);
  const back = roundTrip(value) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.deepEqual(Object.getOwnPropertyDescriptor(back, '__proto__')?.value, { when: 'x' });
  const back2 = roundTrip(withDate) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back2), Object.prototype);
  assert.ok(back2.at instanceof Date);
});

test('raw and string codecs keep bytes and strings as they are and refuse the rest', () => {
  const bytes = Buffer.from([1, 2, 3]);
  assert.equal(rawCodec.encode(bytes), bytes);
  assert.equal(rawCodec.encode('é'), 'é');
  assert.deepEqual([...(rawCodec.encode(new Uint8Array([4, 5])) as Buffer)], [4, 5]);
  assert.equal(rawCodec.decode(bytes), bytes);
  assert.throws(() => rawCodec.encode({}), (e) => isCodecError(e));
  assert.throws(() => rawCodec.encode(null), (e) => isCodecError(e));
  assert.equal(stringCodec.decode(Buffer.from(stringCodec.encode('ünï') as string)), 'ünï');
  assert.throws(() => stringCodec.encode(1), (e) => isCodecError(e));
});

test('encodeValue / decodeValue name the key and the codec in the error', () => {
  assert.throws(
    () => encodeValue(jsonCodec, 'user:7', { n: 1n }),
    (e) => isCodecError(e, { key: 'user:7', direction: 'encode', codec: 'json', path: '$.n' }) && /user:7/.test((e as Error).message),
  );
  assert.throws(
    () => decodeValue(jsonCodec, 'user:8', Buffer.from('garbage')),
    (e) => isCodecError(e, { key: 'user:8', direction: 'decode', codec: 'json' }) && (e as Error).cause instanceof CacheError,
  );
  // A custom codec throwing anything at all is wrapped the same way.
  const broken = { name: 'broken', encode: () => { throw new TypeError('boom'); }, decode: () => { throw new TypeError('bang'); } };
  assert.throws(() => encodeValue(broken, 'k', 1), (e) => isCodecError(e, { key: 'k', codec: 'broken' }));
  assert.throws(() => decodeValue(broken, 'k', Buffer.alloc(0)), (e) => isCodecError(e, { key: 'k', codec: 'broken' }));
  assert.equal(decodeValue(jsonCodec, 'k', Buffer.from('{"a":1}')) !== undefined, true);
});
