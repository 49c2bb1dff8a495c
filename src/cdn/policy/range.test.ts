/** Byte ranges served from a stored full response (RFC 9110 14). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRange } from './index.js';

test('RFC 9110 14.1.2: first-last, open-ended and suffix ranges over a stored body', () => {
  assert.deepEqual(parseRange('bytes=0-499', 1000), { start: 0, end: 499 });
  assert.deepEqual(parseRange('bytes=500-', 1000), { start: 500, end: 999 });
  assert.deepEqual(parseRange('bytes=-200', 1000), { start: 800, end: 999 });
  assert.deepEqual(parseRange('bytes=990-2000', 1000), { start: 990, end: 999 }, 'last-pos past the end is clamped');
  assert.deepEqual(parseRange('bytes=-5000', 1000), { start: 0, end: 999 }, 'suffix longer than the body is the whole body');
  assert.deepEqual(parseRange('Bytes = 3-3', 10), { start: 3, end: 3 }, 'unit is case-insensitive; whitespace around "=" tolerated');
});

test('RFC 9110 14.1.1: unsatisfiable when no range starts inside the body', () => {
  assert.equal(parseRange('bytes=1000-', 1000), 'unsatisfiable');
  assert.equal(parseRange('bytes=1000-1001', 1000), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 1000), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable');
  assert.equal(parseRange('bytes=-10', 0), 'unsatisfiable');
  assert.equal(parseRange('bytes=2000-, 3000-', 1000), 'unsatisfiable');
  assert.equal(parseRange(`bytes=${'9'.repeat(40)}-`, 1000), 'unsatisfiable');
});

test('RFC 9110 14.2: a Range the server does not serve is ignored (whole body): other units, bad syntax, several ranges', () => {
  assert.equal(parseRange(undefined, 1000), undefined);
  for (const h of ['items=0-1', 'bytes=5-1', 'bytes=a-b', 'bytes=', 'bytes=-', 'bytes 0-1', 'bytes=0-1,5-6', 'bytes=0-1, 2000-', `bytes=0-1${','.repeat(2000)}`]) {
    assert.equal(parseRange(h, 1000), undefined, h);
  }
});
