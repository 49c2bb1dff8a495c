import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom, freshSeed } from '../../core/random.js';
import { isQueueError } from '../errors.js';
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame, frameHeader, frameTypeName, type Frame } from './frame.js';

interface Plain {
  type: number;
  requestId: number;
  payload: string;
}

/** The obviously-correct reference: parse a whole stream held in one buffer. */
function referenceParse(stream: Buffer): Plain[] {
  const out: Plain[] = [];
  let at = 0;
  while (at + 4 <= stream.length) {
    const length = stream.readUInt32BE(at);
    if (at + 4 + length > stream.length) break;
    out.push({ type: stream[at + 4]!, requestId: stream.readUInt32BE(at + 5), payload: stream.subarray(at + 9, at + 4 + length).toString('hex') });
    at += 4 + length;
  }
  return out;
}

function plain(f: Frame): Plain {
  return { type: f.type, requestId: f.requestId, payload: f.payload.toString('hex') };
}

test('the streaming decoder matches a whole-buffer reference for any chunking (fuzzed)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  for (let round = 0; round < 200; round++) {
    const frames: Buffer[] = [];
    const n = 1 + rnd.int(40);
    for (let i = 0; i < n; i++) {
      const size = rnd.next() < 0.05 ? rnd.int(20_000) : rnd.int(64);
      const payload = Buffer.alloc(size);
      for (let k = 0; k < size; k++) payload[k] = rnd.int(256);
      frames.push(encodeFrame(rnd.int(256), rnd.int(0x1_0000_0000), payload));
    }
    const stream = Buffer.concat(frames);
    const expected = referenceParse(stream);
    assert.equal(expected.length, n);
    const dec = new FrameDecoder(1024 * 1024);
    const got: Plain[] = [];
    let at = 0;
    // Chunk sizes from 1 byte (every field split) to bigger than many frames (frames coalesced).
    const style = rnd.int(3);
    while (at < stream.length) {
      const len = style === 0 ? 1 + rnd.int(3) : style === 1 ? 1 + rnd.int(200) : 1 + rnd.int(40_000);
      dec.push(stream.subarray(at, at + len));
      at += len;
      for (let f = dec.next(); f !== null; f = dec.next()) got.push(plain(f));
    }
    assert.deepEqual(got, expected, `seed ${seed}, round ${round}`);
    assert.equal(dec.bufferedBytes, 0, `seed ${seed}`);
    assert.equal(dec.hasFrame(), false);
  }
});

test('large frames assembled as their chunks arrive match the reference, however often next() is called (fuzzed)', () => {
  const seed = freshSeed();
  const rnd = new SeededRandom(seed);
  for (let round = 0; round < 40; round++) {
    const frames: Buffer[] = [];
    const n = 1 + rnd.int(12);
    for (let i = 0; i < n; i++) {
      // Record-batch-sized frames (up to 300 KB) among small ones, so frames start mid-chunk.
      const size = rnd.next() < 0.5 ? 64 * 1024 + rnd.int(240_000) : rnd.int(2000);
      const payload = Buffer.allocUnsafe(size);
      for (let k = 0; k < size; k++) payload[k] = (k * 31 + i + round) & 0xff;
      frames.push(encodeFrame(rnd.int(256), 1 + rnd.int(1000), payload));
    }
    const stream = Buffer.concat(frames);
    const expected = referenceParse(stream);
    const dec = new FrameDecoder(1024 * 1024);
    const got: Plain[] = [];
    let at = 0;
    // Socket-read-sized chunks (64 KiB and less); the reader sometimes stops taking frames for a
    // while, as the server does when too many requests are in flight.
    while (at < stream.length) {
      const len = rnd.next() < 0.7 ? 65_536 : 1 + rnd.int(70_000);
      // Copy each chunk into a buffer that is then overwritten: frames must not keep views of
      // chunks the decoder copied from (a socket may reuse its read buffer).
      const chunk = Buffer.from(stream.subarray(at, at + len));
      dec.push(chunk);
      at += len;
      if (rnd.next() < 0.6) for (let f = dec.next(); f !== null; f = dec.next()) got.push(plain(f));
    }
    for (let f = dec.next(); f !== null; f = dec.next()) got.push(plain(f));
    assert.deepEqual(got, expected, `seed ${seed}, round ${round}`);
    assert.equal(dec.bufferedBytes, 0, `seed ${seed}`);
    assert.equal(dec.hasFrame(), false);
  }
});

test('a big frame is assembled once a sixteenth of it and two chunks are in; the bytes after it stay in order', () => {
  const big = encodeFrame(0x10, 1, Buffer.alloc(160_000, 0xab));
  const small = encodeFrame(0x02, 2, Buffer.from('after'));
  const dec = new FrameDecoder();
  dec.push(big.subarray(0, 4000));
  dec.push(big.subarray(4000, 9000));
  assert.equal(dec.hasFrame(), false);
  assert.equal(dec.bufferedBytes, 9000);
  dec.push(big.subarray(9000, 100_000));
  dec.push(Buffer.concat([big.subarray(100_000), small]));
  assert.equal(dec.bufferedBytes, big.length + small.length);
  assert.equal(dec.hasFrame(), true);
  const f = dec.next()!;
  assert.equal(f.requestId, 1);
  assert.equal(f.payload.length, 160_000);
  assert.ok(f.payload.every((b) => b === 0xab));
  assert.equal(dec.next()!.payload.toString(), 'after');
  assert.equal(dec.next(), null);
  assert.equal(dec.bufferedBytes, 0);
});

test('a frame within one chunk is a view of it; one split across chunks is reassembled', () => {
  const a = encodeFrame(0x10, 7, Buffer.from('hello'));
  const dec = new FrameDecoder();
  dec.push(a);
  const f = dec.next()!;
  assert.equal(f.payload.buffer, a.buffer, 'no copy');
  assert.equal(f.payload.toString(), 'hello');
  dec.push(a.subarray(0, 2));
  assert.equal(dec.next(), null, 'the length itself is split');
  assert.equal(dec.hasFrame(), false);
  dec.push(a.subarray(2, 10));
  assert.equal(dec.next(), null);
  dec.push(a.subarray(10));
  assert.equal(dec.hasFrame(), true);
  assert.equal(dec.next()!.payload.toString(), 'hello');
});

test('a length below 5 is a PROTOCOL error; the decoder stays failed', () => {
  const dec = new FrameDecoder();
  dec.push(Buffer.from([0, 0, 0, 2, 1, 2]));
  assert.equal(dec.hasFrame(), true, 'reports a frame so the caller calls next() and sees the error');
  assert.throws(() => dec.next(), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_PROTOCOL'));
  dec.push(encodeFrame(1, 1));
  assert.throws(() => dec.next(), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_PROTOCOL'));
});

test('an oversized length fails as soon as the 4 length bytes are in, before the body is buffered', () => {
  const dec = new FrameDecoder(4096);
  dec.push(frameHeader(0x10, 1, 5000));
  assert.throws(
    () => dec.next(),
    (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE') && (e.details as { maxBytes: number }).maxBytes === 4096,
  );
  const ok = new FrameDecoder(4096);
  ok.push(frameHeader(0x10, 1, 4096 - 5));
  assert.equal(ok.next(), null, 'exactly at the limit is fine (waiting for the body)');
});

test('frame type names', () => {
  assert.equal(frameTypeName(0x10), 'PRODUCE');
  assert.equal(frameTypeName(0x90), 'PRODUCE_OK');
  assert.equal(frameTypeName(0x40), 'DELIVERY');
  assert.equal(frameTypeName(0x7f), 'ERROR');
  assert.equal(frameTypeName(0x55), undefined);
  assert.equal(FRAME_HEADER_BYTES, 9);
});
