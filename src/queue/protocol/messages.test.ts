import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isQueueError, QueueError } from '../errors.js';
import type { Delivery } from '../types.js';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameType, RESPONSE_BIT, type Frame } from './frame.js';
import * as m from './messages.js';

/** Encoded buffers -> the one frame they make, through the decoder (checks the length field too). */
function one(parts: Buffer | Buffer[]): Frame {
  const dec = new FrameDecoder();
  for (const p of Array.isArray(parts) ? parts : [parts]) dec.push(p);
  const f = dec.next();
  assert.ok(f, 'a whole frame');
  assert.equal(dec.next(), null, 'exactly one frame');
  assert.equal(dec.bufferedBytes, 0);
  return f;
}

const protocolError = (e: unknown): boolean => isQueueError(e, 'ARCHLAB_QUEUE_PROTOCOL');

test('HELLO and HELLO_OK round trip', () => {
  const f = one(m.encodeHello(1, { version: 1, token: 'sécret', clientId: 'c' }));
  assert.equal(f.type, FrameType.HELLO);
  assert.deepEqual(m.decodeHello(f.payload), { version: 1, token: 'sécret', clientId: 'c' });
  const ok = { version: 1, maxFrameBytes: 1 << 24, maxInFlight: 1024, idleTimeoutMs: 60_000, server: 'x' };
  assert.deepEqual(m.decodeHelloOk(one(m.encodeHelloOk(1, ok)).payload), ok);
});

test('PRODUCE sends the batch without copying it; PRODUCE_OK carries int64 offsets', () => {
  const batch = Buffer.from('0123456789abcdef');
  const parts = m.encodeProduce(9, 'orders', 3, 'fsync', batch);
  assert.equal(parts[1], batch, 'the batch is passed through');
  const f = one(parts);
  assert.equal(f.requestId, 9);
  const p = m.decodeProduce(f.payload);
  assert.deepEqual({ ...p, batch: p.batch.toString() }, { topic: 'orders', partition: 3, acks: 'fsync', batch: batch.toString() });
  const big = { baseOffset: 2 ** 40 + 5, lastOffset: 2 ** 52, duplicate: true };
  assert.deepEqual(m.decodeProduceOk(one(m.encodeProduceOk(9, big)).payload), big);
  assert.deepEqual(m.decodeProduceOk(one(m.encodeProduceOk(9, { baseOffset: -1, lastOffset: 0, duplicate: false })).payload), {
    baseOffset: -1,
    lastOffset: 0,
    duplicate: false,
  });
});

test('FETCH and FETCH_OK round trip with several batches', () => {
  const req = { topic: 't', partition: 0, offset: 123456789012, maxBytes: 1 << 20, maxWaitMs: 500 };
  assert.deepEqual(m.decodeFetch(one(m.encodeFetch(2, req)).payload), req);
  const batches = [Buffer.from('aaa'), Buffer.alloc(70_000, 7), Buffer.from('c')];
  const res = m.decodeFetchOk(one(m.encodeFetchOk(2, { batches, nextOffset: 10, highWatermark: 11, logStartOffset: 1 })).payload);
  assert.deepEqual(res.batches.map((b) => b.length), [3, 70_000, 1]);
  assert.equal(res.batches[1]![69_999], 7);
  assert.deepEqual([res.nextOffset, res.highWatermark, res.logStartOffset], [10, 11, 1]);
  const empty = m.decodeFetchOk(one(m.encodeFetchOk(2, { batches: [], nextOffset: 0, highWatermark: 0, logStartOffset: 0 })).payload);
  assert.deepEqual(empty.batches, []);
});

test('CONTROL carries JSON with Buffers as base64; undefined results are empty', () => {
  const f = one(m.encodeControl(3, 'partitionFor', ['t', Buffer.from([0, 255, 1])]));
  const c = m.decodeControl(f.payload);
  assert.equal(c.method, 'partitionFor');
  assert.deepEqual(c.args[1], Buffer.from([0, 255, 1]));
  assert.equal(m.decodeControlOk(one(m.encodeControlOk(3, undefined)).payload), undefined);
  assert.deepEqual(m.decodeControlOk(one(m.encodeControlOk(3, { a: [1, null] })).payload), { a: [1, null] });
  assert.throws(() => m.decodeControl(Buffer.from('{"method": 1}')), protocolError);
  assert.throws(() => m.decodeControl(Buffer.from('not json')), protocolError);
});

test('PUBLISH round trips every optional field; small bodies are inlined, big ones passed through', () => {
  const message = { body: Buffer.from('hi'), headers: { a: '1', 'ü': 'ß' }, priority: 7, ttlMs: 1000, delayMs: 5, messageId: 'm-1' };
  const parts = m.encodePublish(4, 'events', 'order.placed', message, true);
  assert.equal(parts.length, 1);
  const p = m.decodePublish(one(parts).payload);
  assert.deepEqual({ ...p, message: { ...p.message, body: p.message.body.toString() } }, {
    exchange: 'events',
    routingKey: 'order.placed',
    mandatory: true,
    message: { ...message, body: 'hi' },
  });
  const body = Buffer.alloc(10_000, 1);
  const bigParts = m.encodePublish(4, '', 'q', { body }, false);
  assert.equal(bigParts[1], body);
  const q = m.decodePublish(one(bigParts).payload);
  assert.deepEqual(q.message, { body, headers: {} });
  assert.equal(q.mandatory, false);
  assert.equal(m.decodePublishOk(one(m.encodePublishOk(4, 3)).payload).routed, 3);
  assert.throws(() => m.encodePublish(4, '', 'q', { body, priority: 300 }, false), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.throws(() => m.encodePublish(4, 'x'.repeat(70_000), 'q', { body }, false), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('DELIVERY and GET_OK round trip a delivery', () => {
  const d: Delivery = {
    deliveryTag: 2 ** 45,
    queue: 'email',
    messageId: 'id',
    body: Buffer.from('body'),
    headers: { 'x-death-reason': 'expired' },
    priority: 3,
    deliveryCount: 2,
    redelivered: true,
    publishedAt: 1_700_000_000_000,
  };
  const f = one(m.encodeDelivery(5, d));
  assert.equal(f.type, FrameType.DELIVERY);
  assert.equal(f.requestId, 0, 'pushed frames carry id 0');
  assert.deepEqual(m.decodeDelivery(f.payload), { subscriptionId: 5, delivery: d });
  assert.deepEqual(m.decodeGetOk(one(m.encodeGetOk(6, d)).payload), d);
  assert.equal(m.decodeGetOk(one(m.encodeGetOk(6, null)).payload), null);
  const big = { ...d, body: Buffer.alloc(50_000, 2) };
  assert.deepEqual(m.decodeDelivery(one(m.encodeDelivery(5, big)).payload).delivery, big);
});

test('CONSUME, CANCEL, ACK (several tags), ACK_OK failures, NACK, GET, GOAWAY round trip', () => {
  assert.deepEqual(m.decodeConsume(one(m.encodeConsume(1, { subscriptionId: 9, prefetch: 50, queue: 'q' })).payload), { subscriptionId: 9, prefetch: 50, queue: 'q' });
  assert.deepEqual(m.decodeConsumeOk(one(m.encodeConsumeOk(1, 'ctag')).payload), { consumerTag: 'ctag' });
  assert.deepEqual(m.decodeCancel(one(m.encodeCancel(1, 9)).payload), { subscriptionId: 9 });
  assert.deepEqual(m.decodeAck(one(m.encodeAck(1, [1, 2 ** 40, 3])).payload), [1, 2 ** 40, 3]);
  assert.throws(() => m.encodeAck(1, []), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_BAD_ARGUMENT'));
  assert.deepEqual(m.decodeAckOk(one(m.encodeAckOk(1, [])).payload), []);
  const failures = m.decodeAckOk(
    one(m.encodeAckOk(1, [{ index: 2, error: { code: 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY', message: 'gone', retryable: false, details: { deliveryTag: 3 } } }])).payload,
  );
  assert.equal(failures.length, 1);
  assert.equal(failures[0]!.index, 2);
  assert.ok(isQueueError(failures[0]!.error, 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY'));
  assert.deepEqual(m.decodeNack(one(m.encodeNack(1, 77, false)).payload), { deliveryTag: 77, requeue: false });
  assert.deepEqual(m.decodeGet(one(m.encodeGet(1, 'q')).payload), { queue: 'q' });
  assert.deepEqual(m.decodeGoaway(one(m.encodeGoaway('bye')).payload), { reason: 'bye' });
  assert.equal(one(m.encodeEmpty(FrameType.PING | RESPONSE_BIT, 4)).payload.length, 0);
});

test('ERROR frames become QueueErrors with the same code, message, retryable flag and details', () => {
  const f = one(m.encodeError(8, { code: 'ARCHLAB_QUEUE_FULL', message: 'full', retryable: true, details: { queue: 'q' } }));
  const e = m.decodeError(f.payload);
  assert.ok(e instanceof QueueError);
  assert.equal(e.code, 'ARCHLAB_QUEUE_FULL');
  assert.equal(e.message, 'full');
  assert.equal(e.retryable, true);
  assert.deepEqual(e.details, { queue: 'q' });
  // A code outside the queue block keeps the flag the server sent.
  const other = m.decodeError(one(m.encodeError(8, { code: 'ARCHLAB_SOMETHING', message: 'x', retryable: true })).payload);
  assert.equal(other.code, 'ARCHLAB_SOMETHING');
  assert.equal(other.retryable, true);
  assert.ok(protocolError(m.decodeError(Buffer.from('{}'))));
});

test('truncated and trailing payloads are PROTOCOL errors for every decoder', () => {
  const frames: [string, Buffer | Buffer[], (p: Buffer) => unknown][] = [
    ['HELLO', m.encodeHello(1, { version: 1, token: 't', clientId: 'c' }), m.decodeHello],
    ['FETCH', m.encodeFetch(1, { topic: 't', partition: 0, offset: 0, maxBytes: 1, maxWaitMs: 0 }), m.decodeFetch],
    ['CONSUME', m.encodeConsume(1, { subscriptionId: 1, prefetch: 1, queue: 'q' }), m.decodeConsume],
    ['ACK', m.encodeAck(1, [1, 2]), m.decodeAck],
    ['NACK', m.encodeNack(1, 1, true), m.decodeNack],
    ['PRODUCE_OK', m.encodeProduceOk(1, { baseOffset: 0, lastOffset: 0, duplicate: false }), m.decodeProduceOk],
    ['FETCH_OK', m.encodeFetchOk(1, { batches: [Buffer.from('abc')], nextOffset: 0, highWatermark: 0, logStartOffset: 0 }), m.decodeFetchOk],
    ['DELIVERY header', m.encodeDelivery(1, { deliveryTag: 1, queue: 'q', messageId: 'm', body: Buffer.alloc(0), headers: { a: 'b' }, priority: 0, deliveryCount: 1, redelivered: false, publishedAt: 0 }), m.decodeDelivery],
  ];
  for (const [name, parts, decode] of frames) {
    const payload = Buffer.concat(Array.isArray(parts) ? parts : [parts]).subarray(FRAME_HEADER_BYTES);
    const cut = name === 'DELIVERY header' ? 20 : payload.length - 1;
    assert.throws(() => decode(payload.subarray(0, cut)), protocolError, `${name} truncated`);
    if (name !== 'DELIVERY header') assert.throws(() => decode(Buffer.concat([payload, Buffer.from([0])])), protocolError, `${name} with a trailing byte`);
  }
  assert.throws(() => m.decodeProduce(Buffer.from([0, 1, 0x74, 0, 0, 0, 0, 9])), protocolError, 'unknown acks code');
  assert.throws(() => m.decodeProduce(Buffer.from([0, 1, 0x74, 0, 0, 0, 0, 1])), protocolError, 'no batch');
});
