import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { FieldObject, fieldName, FRAMING_FIELDS, parseSimpleRequestHead, readAtMost, sseEvent } from './http.js';

test('readAtMost: the whole body up to the limit; past it null, and the body is destroyed', async () => {
  const chunks = () => [Buffer.from('abc'), Buffer.from('def'), Buffer.from('g')];
  assert.equal((await readAtMost(Readable.from(chunks()), 7))?.toString(), 'abcdefg');
  assert.equal((await readAtMost(Readable.from([]), 0))?.length, 0);
  const over = Readable.from(chunks());
  assert.equal(await readAtMost(over, 6), null);
  assert.equal(over.destroyed, true);
});

test('sseEvent: an event line, an optional id, the data as one JSON line, a blank line', () => {
  assert.equal(sseEvent('frame', { a: 'x\ny' }), 'event: frame\ndata: {"a":"x\\ny"}\n\n');
  assert.equal(sseEvent('record', 1, '42'), 'id: 42\nevent: record\ndata: 1\n\n');
});

test('parseSimpleRequestHead: field names are data: "__proto__" and "constructor" are own fields, nothing is inherited', () => {
  const head = Buffer.from('GET /a HTTP/1.1\r\nHost: x\r\n__proto__: p\r\nConstructor: c\r\n', 'latin1');
  const req = parseSimpleRequestHead(head, 0, head.length - 2, new Set(FRAMING_FIELDS), 10);
  assert.ok(req);
  assert.deepEqual(Object.keys(req.headers).sort(), ['__proto__', 'constructor', 'host']);
  assert.equal(req.headers['__proto__'], 'p');
  assert.equal(req.headers.constructor, 'c');
  assert.equal('toString' in req.headers, false);
});

test('FieldObject: a fresh one has no keys and inherits nothing', () => {
  const o = new FieldObject();
  assert.deepEqual(Object.keys(o), []);
  assert.equal('hasOwnProperty' in o, false);
  o['__proto__'] = 'x';
  assert.deepEqual(Object.keys(o), ['__proto__']);
});

test('fieldName: tokens lowercased, the same answer every time; anything else undefined', () => {
  for (let i = 0; i < 2; i++) {
    assert.equal(fieldName('Content-Length'), 'content-length');
    assert.equal(fieldName('X-A_b'), 'x-a_b');
    assert.equal(fieldName('Bad Name'), undefined);
    assert.equal(fieldName('Bad:'), undefined);
    assert.equal(fieldName(''), undefined);
    assert.equal(fieldName('Ünicode'), undefined);
  }
  const long = `X-${'A'.repeat(100)}`;
  assert.equal(fieldName(long), long.toLowerCase());
  // Many invented names: still right after the cache stops learning.
  for (let i = 0; i < 600; i++) assert.equal(fieldName(`X-Made-Up-${i}`), `x-made-up-${i}`);
  assert.equal(fieldName('Bad Name'), undefined);
});
