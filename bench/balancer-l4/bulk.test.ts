import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_BYTES, PERIOD, PatternCheck, parseHead, patternChunk, sizeLabel } from './bulk.js';

/** `total` pattern bytes as a transfer carries them: whole chunks, then a partial one. */
function body(total: number): Buffer {
  const chunk = patternChunk();
  const parts: Buffer[] = [];
  for (let left = total; left > 0; left -= CHUNK_BYTES) parts.push(chunk.subarray(0, Math.min(left, CHUNK_BYTES)));
  return Buffer.concat(parts);
}

/** Feeds `b` in reads of `size` bytes, as a socket would deliver it. */
function feed(b: Buffer, size: number): PatternCheck {
  const c = new PatternCheck();
  for (let i = 0; i < b.length; i += size) c.feed(b, i, Math.min(b.length, i + size));
  return c;
}

test('an intact body passes whatever the read size, and every byte is counted', () => {
  const b = body(3 * CHUNK_BYTES + 1234);
  for (const size of [1, 1000, 65536, 100_003, b.length]) {
    const c = feed(b, size);
    assert.equal(c.ok, true, `reads of ${size}`);
    assert.equal(c.offset, b.length);
  }
});

test('a lost, repeated or corrupted stretch breaks the pattern', () => {
  const b = body(2 * CHUNK_BYTES);
  // A read lost in the middle (not a whole number of periods).
  assert.equal(feed(Buffer.concat([b.subarray(0, 65536), b.subarray(2 * 65536)]), 65536).ok, false);
  // A read delivered twice.
  assert.equal(feed(Buffer.concat([b.subarray(0, 65536), b.subarray(0, 65536), b.subarray(65536)]), 65536).ok, false);
  // One byte changed at a sampled position (the last of a read).
  const bad = Buffer.from(b);
  bad[65535] = (bad[65535]! + 1) % 256;
  const c = feed(bad, 65536);
  assert.equal(c.ok, false);
  assert.equal(c.firstBad, 65535);
  assert.equal(PERIOD % 2, 1);
});

test('parseHead waits for the blank line, then splits start line, headers and body', () => {
  assert.equal(parseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n')), undefined);
  const h = parseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello'));
  assert.ok(h);
  assert.equal(h.startLine, 'HTTP/1.1 200 OK');
  assert.equal(h.headers.get('content-length'), '5');
  assert.equal(h.headers.get('x-a'), 'b');
  assert.equal(h.bodyStart, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n'.length);
});

test('sizeLabel names the bench sizes', () => {
  assert.equal(sizeLabel(2 ** 30), '1 GiB');
  assert.equal(sizeLabel(256 * 2 ** 20), '256 MiB');
  assert.equal(sizeLabel(1000), '1000 B');
});
