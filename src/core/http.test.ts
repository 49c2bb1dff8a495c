import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { readAtMost, sseEvent } from './http.js';

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
