import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isQueueError } from '../errors.js';
import { ProducerStateMap, lastSequence } from './producer-state.js';

test('in-order batches append; a retry of any of the last five is a duplicate with its offsets', () => {
  const m = new ProducerStateMap(100);
  let offset = 0;
  for (let seq = 0; seq < 70; seq += 10) {
    assert.deepEqual(m.check(1, 0, seq, 10), { duplicate: false });
    m.record(1, 0, seq, 10, offset, offset + 9);
    offset += 10;
  }
  assert.deepEqual(m.check(1, 0, 60, 10), { duplicate: true, baseOffset: 60, lastOffset: 69 });
  assert.deepEqual(m.check(1, 0, 20, 10), { duplicate: true, baseOffset: 20, lastOffset: 29 });
  // older than the five kept: not recognisable, and not the next sequence
  assert.throws(() => m.check(1, 0, 10, 10), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'));
});

test('a gap is OUT_OF_ORDER_SEQUENCE with expected and got; an older epoch is FENCED; a newer epoch restarts at 0', () => {
  const m = new ProducerStateMap(100);
  m.record(7, 2, 0, 5, 0, 4);
  assert.throws(
    () => m.check(7, 2, 6, 1),
    (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE') && e.details?.expected === 5 && e.details?.got === 6,
  );
  assert.throws(() => m.check(7, 1, 5, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_PRODUCER_FENCED') && !e.retryable);
  assert.throws(() => m.check(7, 3, 5, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'));
  assert.deepEqual(m.check(7, 3, 0, 1), { duplicate: false });
  m.record(7, 3, 0, 1, 5, 5);
  assert.throws(() => m.check(7, 2, 5, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_PRODUCER_FENCED'));
  assert.throws(() => m.check(99, 0, 12345, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'), 'a new producer starts at 0');
  assert.deepEqual(m.check(99, 0, 0, 1), { duplicate: false });
});

test('sequences wrap from 2^31-1 to 0', () => {
  assert.equal(lastSequence(2147483646, 3), 0);
  const m = new ProducerStateMap(10);
  m.record(1, 0, 2147483640, 8, 0, 7);
  assert.deepEqual(m.check(1, 0, 0, 1), { duplicate: false });
});

test('bounded: the least recently written producer is forgotten; snapshots round-trip; clone is independent', () => {
  const m = new ProducerStateMap(2);
  m.record(1, 0, 0, 1, 0, 0);
  m.record(2, 0, 0, 1, 1, 1);
  m.record(1, 0, 1, 1, 2, 2);
  assert.throws(() => m.check(2, 0, 5, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'));
  m.record(3, 0, 0, 1, 3, 3); // evicts 2, the least recently written
  assert.equal(m.size, 2);
  assert.deepEqual(m.check(2, 0, 5, 1), { duplicate: false }, 'after an eviction an unknown producer may be a forgotten one: accepted');
  assert.deepEqual(m.check(1, 0, 1, 1), { duplicate: true, baseOffset: 2, lastOffset: 2 });
  const back = ProducerStateMap.fromSnapshot(JSON.parse(JSON.stringify(m.toSnapshot(4))), 2);
  assert.deepEqual(back.check(9, 0, 5, 1), { duplicate: false }, 'the eviction is remembered');
  assert.deepEqual(back.check(1, 0, 1, 1), { duplicate: true, baseOffset: 2, lastOffset: 2 });
  assert.deepEqual(back.check(3, 0, 0, 1), { duplicate: true, baseOffset: 3, lastOffset: 3 });
  const c = m.clone();
  c.record(1, 0, 2, 1, 4, 4);
  assert.throws(() => m.check(1, 0, 3, 1), (e) => isQueueError(e, 'ARCHLAB_QUEUE_OUT_OF_ORDER_SEQUENCE'));
  assert.throws(() => ProducerStateMap.fromSnapshot({ version: 2 }, 2), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT'));
  assert.throws(() => ProducerStateMap.fromSnapshot({ version: 1, offset: 0, producers: [[1, 0, [[1, 2]]]] }, 2), (e) => isQueueError(e, 'ARCHLAB_QUEUE_CORRUPT'));
});
