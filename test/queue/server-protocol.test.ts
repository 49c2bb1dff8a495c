/**
 * The binary protocol through a real server on loopback, with the embedded log and broker: round
 * trips, pipelining, auth, malformed and oversized frames (closing only the offending connection),
 * per-connection limits, in-flight backpressure, handshake and idle timeouts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isQueueError } from '../../src/queue/errors.js';
import { Log } from '../../src/queue/log/index.js';
import { encodeFrame, frameHeader, FrameType, RESPONSE_BIT } from '../../src/queue/protocol/frame.js';
import { decodeError, encodeFetch, encodeHello } from '../../src/queue/protocol/messages.js';
import type { LogEngine } from '../../src/queue/server/connection.js';
import { RawConnection, startTestServer } from '../../src/queue/server/test-helpers.js';
import type { FetchRequest } from '../../src/queue/types.js';

const code = (c: string) => (e: unknown) => isQueueError(e, c as never);

/** The real log, with the concurrency of appendRaw and fetchRaw calls recorded. Close it after the server. */
async function watchedLog(): Promise<{ log: LogEngine; close: () => Promise<void>; maxAppends: () => number; maxFetches: () => number }> {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-queue-log-'));
  const real = await Log.open({ dataDir: dir });
  let appends = 0;
  let maxAppends = 0;
  let fetches = 0;
  let maxFetches = 0;
  const log = new Proxy(real, {
    get(target, prop) {
      if (prop === 'appendRaw') {
        return async (...args: Parameters<Log['appendRaw']>) => {
          maxAppends = Math.max(maxAppends, ++appends);
          try {
            return await target.appendRaw(...args);
          } finally {
            appends--;
          }
        };
      }
      if (prop === 'fetchRaw') {
        return async (req: FetchRequest) => {
          maxFetches = Math.max(maxFetches, ++fetches);
          try {
            return await target.fetchRaw(req);
          } finally {
            fetches--;
          }
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as LogEngine;
  return { log, close: async () => {
      await real.close();
      rmSync(dir, { recursive: true, force: true });
    }, maxAppends: () => maxAppends, maxFetches: () => maxFetches };
}

test('produce and fetch round trip over TCP: keys, values, nulls, headers, offsets', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await c.createTopic('orders', { partitions: 3 });
  const records = [
    { key: Buffer.from('k1'), value: Buffer.from('v1'), headers: [{ key: 'h', value: Buffer.from('x') }] },
    { key: null, value: Buffer.from('') },
    { key: Buffer.from('k1'), value: null },
  ];
  const r = await c.append({ topic: 'orders', partition: 2, acks: 'leader', records });
  assert.deepEqual(r, { baseOffset: 0, lastOffset: 2, duplicate: false });
  const f = await c.fetch({ topic: 'orders', partition: 2, offset: 1 });
  assert.deepEqual(
    f.records.map((x) => [x.topic, x.partition, x.offset, x.key?.toString() ?? null, x.value?.toString() ?? null]),
    [
      ['orders', 2, 1, null, ''],
      ['orders', 2, 2, 'k1', null],
    ],
    'records before the asked offset are skipped',
  );
  assert.equal(f.nextOffset, 3);
  assert.equal(f.highWatermark, 3);
  const all = await c.fetch({ topic: 'orders', partition: 2, offset: 0 });
  assert.equal(all.records[0]!.headers[0]!.value.toString(), 'x');
  const raw = await c.fetchRaw({ topic: 'orders', partition: 2, offset: 0 });
  assert.equal(raw.batches.length, 1);
  assert.equal(await c.partitionFor('orders', Buffer.from('k1')), await c.partitionFor('orders', Buffer.from('k1')));
  await assert.rejects(c.fetch({ topic: 'nope', partition: 0, offset: 0 }), code('ARCHLAB_QUEUE_UNKNOWN_TOPIC'));
  await assert.rejects(c.createTopic('bad name!'), code('ARCHLAB_QUEUE_BAD_ARGUMENT'));
});

test('1000 pipelined requests on one connection: all answered, worked on concurrently', async (t) => {
  const w = await watchedLog();
  const s = await startTestServer(t, {}, { log: w.log });
  t.after(() => w.close());
  const c = await s.connect();
  await c.createTopic('p');
  const results = await Promise.all(
    Array.from({ length: 1000 }, (_, i) => c.append({ topic: 'p', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from(String(i)) }] })),
  );
  assert.deepEqual(
    results.map((r) => r.baseOffset).sort((a, b) => a - b),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  assert.ok(w.maxAppends() > 1, `the server had several appends in flight at once (max ${w.maxAppends()})`);
  // 1000 frames in one TCP write: every one answered, by its own id.
  const raw = await RawConnection.hello(t, s.port);
  raw.send(Buffer.concat(Array.from({ length: 1000 }, (_, i) => encodeFrame(FrameType.PING, i + 2))));
  const ids = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const f = await raw.next();
    assert.notEqual(f, 'closed');
    if (f !== 'closed') {
      assert.equal(f.type, FrameType.PING | RESPONSE_BIT);
      ids.add(f.requestId);
    }
  }
  assert.equal(ids.size, 1000);
});

test('a wrong or missing token is refused with UNAUTHORIZED and the connection closed', async (t) => {
  const s = await startTestServer(t, { auth: { token: 'correct-horse' } });
  await assert.rejects(s.connect(), code('ARCHLAB_QUEUE_UNAUTHORIZED'));
  await assert.rejects(s.connect({ token: 'wrong-token' }), code('ARCHLAB_QUEUE_UNAUTHORIZED'));
  const ok = await s.connect({ token: 'correct-horse' });
  assert.deepEqual(await ok.listTopics(), []);
  const raw = await RawConnection.open(t, s.port);
  raw.send(encodeHello(5, { version: 1, token: 'nope-nope', clientId: 'x' }));
  assert.deepEqual(await raw.errorsUntilClosed(), [{ requestId: 5, code: 'ARCHLAB_QUEUE_UNAUTHORIZED' }]);
});

test('malformed frames get a PROTOCOL error and close only their own connection', async (t) => {
  const s = await startTestServer(t);
  const bystander = await s.connect();
  await bystander.createTopic('t');
  await bystander.append({ topic: 't', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('before') }] });

  const cases: [string, Buffer, number][] = [
    ['bad length', Buffer.from([0, 0, 0, 2, 1, 1]), 0],
    ['unknown type', encodeFrame(0x55, 3), 3],
    ['a response type sent as a request', encodeFrame(FrameType.PRODUCE | RESPONSE_BIT, 4), 4],
    ['request id 0', encodeFrame(FrameType.PING, 0), 0],
    // str16 topic says 5 bytes, 2 follow: the payload ends inside a field.
    ['truncated payload', encodeFrame(FrameType.PRODUCE, 6, Buffer.from([0, 5, 0x61, 0x62])), 6],
  ];
  // A FETCH with one byte too many, its length field counting it.
  const fetch = encodeFetch(7, { topic: 't', partition: 0, offset: 0, maxBytes: 1, maxWaitMs: 0 });
  const longer = Buffer.concat([fetch, Buffer.from([0])]);
  longer.writeUInt32BE(fetch.length - 4 + 1, 0);
  cases.push(['trailing bytes', longer, 7]);

  for (const [name, bytes, id] of cases) {
    const raw = await RawConnection.hello(t, s.port);
    raw.send(bytes);
    assert.deepEqual(await raw.errorsUntilClosed(), [{ requestId: id, code: 'ARCHLAB_QUEUE_PROTOCOL' }], name);
  }
  const first = await RawConnection.open(t, s.port);
  first.send(encodeFrame(FrameType.PING, 1));
  assert.deepEqual(await first.errorsUntilClosed(), [{ requestId: 1, code: 'ARCHLAB_QUEUE_PROTOCOL' }], 'the first frame must be HELLO');
  const version = await RawConnection.open(t, s.port);
  version.send(encodeHello(1, { version: 99, token: '', clientId: '' }));
  assert.deepEqual(await version.errorsUntilClosed(), [{ requestId: 1, code: 'ARCHLAB_QUEUE_PROTOCOL' }], 'an unknown protocol version');

  // The well-behaved connection never noticed.
  const r = await bystander.append({ topic: 't', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('after') }] });
  assert.equal(r.baseOffset, 1);
  assert.equal((await bystander.fetch({ topic: 't', partition: 0, offset: 0 })).records.length, 2);
});

test('an oversized frame closes the connection before its body is read; the client refuses one locally', async (t) => {
  const s = await startTestServer(t, { connections: { maxFrame: '8KiB' } });
  const raw = await RawConnection.hello(t, s.port);
  raw.send(frameHeader(FrameType.PRODUCE, 2, 1_000_000)); // announces 1 MB, sends none of it
  assert.deepEqual(await raw.errorsUntilClosed(), [{ requestId: 0, code: 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE' }]);

  const c = await s.connect();
  assert.equal(c.server?.maxFrameBytes, 8 * 1024);
  await c.createTopic('big');
  await assert.rejects(
    c.append({ topic: 'big', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.alloc(10_000) }] }),
    code('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'),
  );
  await assert.rejects(c.publish('', 'q', { body: Buffer.alloc(10_000) }), code('ARCHLAB_QUEUE_MESSAGE_TOO_LARGE'));
  const ok = await c.append({ topic: 'big', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.alloc(100) }] });
  assert.equal(ok.baseOffset, 0, 'the connection is still fine');
});

test('per-connection and server limits answer ARCHLAB_QUEUE_LIMIT', async (t) => {
  const s = await startTestServer(t, { connections: { maxSubscriptions: 2 }, limits: { maxConnections: 2 } });
  const c = await s.connect();
  await c.declareQueue('q', { durable: false });
  await c.consume('q', { onDelivery: () => undefined });
  await c.consume('q', { onDelivery: () => undefined });
  const err = await c.consume('q', { onDelivery: () => undefined }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(isQueueError(err, 'ARCHLAB_QUEUE_LIMIT'), String(err));
  assert.equal(err.retryable, true);
  assert.deepEqual(err.details, { limit: 'maxSubscriptions', value: 2 });
  await s.connect();
  await assert.rejects(s.connect({ reconnect: false }), code('ARCHLAB_QUEUE_LIMIT'), 'a third connection is refused');
  assert.equal(s.server.connections(), 2);
  assert.equal(s.server.counters.connectionsRefused, 1);
});

test('past maxInFlight the server stops reading: never more requests at work than the limit', async (t) => {
  const w = await watchedLog();
  const s = await startTestServer(t, { connections: { maxInFlight: 4 } }, { log: w.log });
  t.after(() => w.close());
  const c = await s.connect();
  await c.createTopic('idle');
  // 20 long polls on an empty partition: each holds its slot for ~150 ms.
  const raw = await RawConnection.hello(t, s.port);
  raw.send(Buffer.concat(Array.from({ length: 20 }, (_, i) => encodeFetch(i + 2, { topic: 'idle', partition: 0, offset: 0, maxBytes: 1024, maxWaitMs: 150 }))));
  for (let i = 0; i < 20; i++) {
    const f = await raw.next(10_000);
    assert.ok(f !== 'closed' && f.type === (FrameType.FETCH | RESPONSE_BIT));
  }
  assert.equal(w.maxFetches(), 4);
});

test('a connection that never says HELLO is closed after the handshake timeout', async (t) => {
  const s = await startTestServer(t, { connections: { handshakeTimeout: '150ms' } });
  const raw = await RawConnection.open(t, s.port);
  assert.deepEqual(await raw.errorsUntilClosed(), [{ requestId: 0, code: 'ARCHLAB_QUEUE_TIMEOUT' }]);
});

test('an idle connection gets GOAWAY and is closed; the client heartbeat keeps its own alive', async (t) => {
  const s = await startTestServer(t, { timeouts: { idle: '300ms' } });
  const c = await s.connect();
  const raw = await RawConnection.hello(t, s.port);
  const f = await raw.next();
  assert.ok(f !== 'closed' && f.type === FrameType.GOAWAY);
  assert.equal(await raw.next(), 'closed');
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(c.status, 'open');
  assert.deepEqual(await c.listQueues(), []);
});

test('errors keep their code over the wire; unknown CONTROL methods and bad arguments are BAD_ARGUMENT', async (t) => {
  const s = await startTestServer(t);
  const c = await s.connect();
  await assert.rejects(c.queueStats('missing'), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_UNKNOWN_QUEUE') && e.retryable === false);
  const raw = await RawConnection.hello(t, s.port);
  raw.send(encodeFrame(FrameType.CONTROL, 9, Buffer.from(JSON.stringify({ method: 'close', args: [] }))));
  const f = await raw.next();
  assert.ok(f !== 'closed' && f.type === FrameType.ERROR && f.requestId === 9);
  assert.equal(decodeError(f.payload).code, 'ARCHLAB_QUEUE_BAD_ARGUMENT');
  raw.send(encodeFrame(FrameType.CONTROL, 10, Buffer.from(JSON.stringify({ method: 'createTopic', args: [42] }))));
  const g = await raw.next();
  assert.ok(g !== 'closed' && g.type === FrameType.ERROR);
  // Neither closed the connection: they are well-formed requests that failed.
  raw.send(encodeFrame(FrameType.PING, 11));
  const h = await raw.next();
  assert.ok(h !== 'closed' && h.requestId === 11);
});

test('FETCHes in flight share connections.maxFetchBuffer: past it they wait, never more memory than asked', async (t) => {
  const w = await watchedLog();
  const s = await startTestServer(t, { connections: { maxFetchBuffer: '128KiB' } }, { log: w.log });
  t.after(() => w.close());
  const c = await s.connect();
  await c.createTopic('idle');
  const raw = await RawConnection.hello(t, s.port);
  raw.send(Buffer.concat(Array.from({ length: 6 }, (_, i) => encodeFetch(i + 2, { topic: 'idle', partition: 0, offset: 0, maxBytes: 64 * 1024, maxWaitMs: 100 }))));
  for (let i = 0; i < 6; i++) {
    const f = await raw.next(10_000);
    assert.ok(f !== 'closed' && f.type === (FrameType.FETCH | RESPONSE_BIT));
  }
  assert.equal(w.maxFetches(), 2, 'two 64 KiB fetches fill a 128 KiB budget');
});
