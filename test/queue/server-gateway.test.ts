/**
 * The HTTP + SSE gateway and the admin listener: produce, fetch and publish over HTTP, SSE streams
 * of a partition (resumable with Last-Event-ID) and of a queue (auto-acked), bounds, auth, metrics.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { startTestServer } from '../../src/queue/server/test-helpers.js';

interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/** A bounded SSE reader over node:http: next() gives one event or throws after timeoutMs. */
async function sse(t: TestContext, url: string, headers: Record<string, string> = {}): Promise<{ status: number; next(timeoutMs?: number): Promise<SseEvent>; close(): void; body: () => string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      let buf = '';
      let raw = '';
      let wake: (() => void) | undefined;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        raw += chunk;
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: SseEvent = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const at = line.indexOf(': ');
            const k = line.slice(0, at);
            const v = line.slice(at + 2);
            if (k === 'id' || k === 'event' || k === 'data') e[k] = v;
          }
          if (e.event !== undefined) events.push(e);
        }
        wake?.();
      });
      t.after(() => req.destroy());
      resolve({
        status: res.statusCode ?? 0,
        body: () => raw,
        close: () => req.destroy(),
        next: async (timeoutMs = 5000) => {
          const deadline = Date.now() + timeoutMs;
          while (events.length === 0) {
            const left = deadline - Date.now();
            if (left <= 0) throw new TypeError(`no SSE event within ${timeoutMs}ms`);
            await new Promise<void>((r) => {
              const timer = setTimeout(r, left);
              wake = () => {
                clearTimeout(timer);
                r();
              };
            });
          }
          return events.shift()!;
        },
      });
    });
    req.on('error', reject);
  });
}

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const json = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

test('HTTP: append JSON and raw records, read them back, list and describe topics', async (t) => {
  const s = await startTestServer(t, { gateway: { port: 0 }, topics: { declare: [{ name: 'orders', partitions: 2 }] } });
  const url = s.server.gateway!.url!;
  const posted = await call(`${url}/topics/orders/records`, json([{ key: 'a', value: { id: 1 } }, { key: 'a', value: 'two', headers: { h: 'v' } }, { value: null, partition: 1 }]));
  assert.equal(posted.status, 200, JSON.stringify(posted.body));
  const recs = posted.body.records as { partition: number; offset: number }[];
  assert.equal(recs.length, 3);
  assert.equal(recs[0]!.partition, recs[1]!.partition, 'same key, same partition');
  assert.equal(recs[1]!.offset, recs[0]!.offset + 1);
  assert.equal(recs[2]!.partition, 1);

  const raw = await call(`${url}/topics/orders/records?key=k&partition=0&acks=fsync`, { method: 'POST', body: 'raw bytes', headers: { 'content-type': 'text/plain' } });
  assert.equal(raw.status, 200);
  const p = recs[0]!.partition;
  const read = await call(`${url}/topics/orders/partitions/${p}/records?offset=earliest&max=10`);
  assert.equal(read.status, 200);
  const values = (read.body.records as { value: string; key: string; headers: Record<string, string> }[]).map((r) => r.value);
  assert.ok(values.includes('{"id":1}') && values.includes('two'), JSON.stringify(values));
  const two = (read.body.records as { value: string; headers: Record<string, string> }[]).find((r) => r.value === 'two')!;
  assert.deepEqual(two.headers, { h: 'v' });
  const one = await call(`${url}/topics/orders/partitions/0/records?offset=0&max=1&encoding=base64`);
  assert.equal((one.body.records as unknown[]).length, 1);
  assert.equal(one.body.nextOffset, 1, 'max cuts the answer and nextOffset follows it');

  const list = await call(`${url}/topics`);
  assert.deepEqual((list.body.topics as { name: string }[]).map((x) => x.name), ['orders']);
  assert.equal(((await call(`${url}/topics/orders`)).body.partitions as unknown[]).length, 2);

  assert.equal((await call(`${url}/topics/missing/partitions/0/records`)).status, 404);
  const bad = await call(`${url}/topics/orders/partitions/0/records?offset=soon`);
  assert.equal(bad.status, 400);
  assert.equal((bad.body.error as { code: string }).code, 'ARCHLAB_QUEUE_BAD_ARGUMENT');
  assert.equal((await call(`${url}/topics/orders/records`, json([{ value: 'x', color: 'red' }]))).status, 400);
  assert.equal((await call(`${url}/topics/orders/records`, { method: 'GET' })).status, 405);
  assert.equal((await call(`${url}/nowhere`)).status, 404);
});

test('HTTP: bodies over limits.maxBody get 413', async (t) => {
  const s = await startTestServer(t, { gateway: { port: 0 }, limits: { maxBody: '1KiB' }, topics: { declare: [{ name: 't' }] } });
  const r = await call(`${s.server.gateway!.url}/topics/t/records`, { method: 'POST', body: 'x'.repeat(5000) });
  assert.equal(r.status, 413);
});

test('HTTP: publish to an exchange (the default one is amq.default) and read queue stats', async (t) => {
  const s = await startTestServer(t, {
    gateway: { port: 0 },
    broker: { exchanges: [{ name: 'events', type: 'topic', durable: false }], queues: [{ name: 'email', durable: false }], bindings: [{ queue: 'email', exchange: 'events', routingKey: 'order.*' }] },
  });
  const url = s.server.gateway!.url!;
  const r = await call(`${url}/exchanges/events/publish?routingKey=order.placed&header.source=web&priority=0`, { method: 'POST', body: '{"order":1}' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { routed: 1 });
  assert.deepEqual((await call(`${url}/exchanges/amq.default/publish?routingKey=email`, { method: 'POST', body: 'direct' })).body, { routed: 1 });
  const q = await call(`${url}/queues/email`);
  assert.equal(q.body.ready, 2);
  assert.deepEqual(((await call(`${url}/queues`)).body.queues as { name: string }[]).map((x) => x.name), ['email']);
  assert.equal((await call(`${url}/queues/nope`)).status, 404);
  const c = await s.connect();
  const d = await c.get('email');
  assert.deepEqual(d?.headers, { source: 'web', 'content-type': 'text/plain;charset=UTF-8' });
});

test('SSE: a partition as a stream of events whose ids are offsets; Last-Event-ID resumes after it; live records arrive', async (t) => {
  const s = await startTestServer(t, { gateway: { port: 0, sseHeartbeat: '100ms' }, topics: { declare: [{ name: 'feed' }] } });
  const url = s.server.gateway!.url!;
  await call(`${url}/topics/feed/records?partition=0`, json([{ value: 'r0' }, { value: 'r1' }, { value: 'r2' }]));
  const a = await sse(t, `${url}/topics/feed/stream?partition=0&offset=earliest`);
  assert.equal(a.status, 200);
  const first = [await a.next(), await a.next(), await a.next()];
  assert.deepEqual(first.map((e) => [e.id, e.event, (JSON.parse(e.data!) as { value: string }).value]), [
    ['0', 'record', 'r0'],
    ['1', 'record', 'r1'],
    ['2', 'record', 'r2'],
  ]);
  await call(`${url}/topics/feed/records?partition=0`, json({ value: 'live' }));
  const live = await a.next();
  assert.equal(live.id, '3');
  a.close();
  const b = await sse(t, `${url}/topics/feed/stream?partition=0`, { 'last-event-id': '1' });
  assert.equal((await b.next()).id, '2', 'resumes after the last event seen');
  assert.equal((await b.next()).id, '3');
  b.close();
  const c = await sse(t, `${url}/topics/feed/stream?partition=0`);
  await call(`${url}/topics/feed/records?partition=0`, json({ value: 'newest' }));
  assert.equal((await c.next()).id, '4', 'without an offset the stream starts at the end');
});

test('SSE: a queue as a stream; each delivery is acked once its event is written; streams are bounded', async (t) => {
  const s = await startTestServer(t, { gateway: { port: 0, maxSseClients: 1, ssePrefetch: 2 }, broker: { queues: [{ name: 'q', durable: false }] } });
  const url = s.server.gateway!.url!;
  const c = await s.connect();
  for (let i = 0; i < 5; i++) await c.publish('', 'q', { body: Buffer.from(`m${i}`) });
  const st = await sse(t, `${url}/queues/q/stream`);
  const bodies: string[] = [];
  for (let i = 0; i < 5; i++) bodies.push((JSON.parse((await st.next()).data!) as { body: string }).body);
  assert.deepEqual(bodies, ['m0', 'm1', 'm2', 'm3', 'm4']);
  const deadline = Date.now() + 5000;
  while ((await c.queueStats('q')).acked < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await c.queueStats('q')).acked, 5);
  const second = await sse(t, `${url}/queues/q/stream`);
  assert.equal(second.status, 503, 'one SSE stream at most');
  st.close();
  const deadline2 = Date.now() + 5000;
  while ((await c.queueStats('q')).consumers > 0 && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await c.queueStats('q')).consumers, 0, 'the stream\'s consumer is cancelled when the client goes');
});

test('with auth.token the gateway needs the Bearer token', async (t) => {
  const s = await startTestServer(t, { gateway: { port: 0 }, auth: { token: 'gateway-token' } });
  const url = s.server.gateway!.url!;
  const no = await call(`${url}/topics`);
  assert.equal(no.status, 401);
  assert.equal((no.body.error as { code: string }).code, 'ARCHLAB_QUEUE_UNAUTHORIZED');
  assert.equal((await call(`${url}/topics`, { headers: { authorization: 'Bearer wrong-token' } })).status, 401);
  assert.equal((await call(`${url}/topics`, { headers: { authorization: 'Bearer gateway-token' } })).status, 200);
});

test('admin: /healthz and /metrics with connections, requests, log, broker and group lag series', async (t) => {
  const s = await startTestServer(t, { admin: { port: 0 }, topics: { declare: [{ name: 'm', partitions: 1 }] }, broker: { queues: [{ name: 'mq', durable: false }] } });
  const c = await s.connect();
  await c.append({ topic: 'm', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('a') }, { key: null, value: Buffer.from('b') }] });
  await c.publish('', 'mq', { body: Buffer.from('x') });
  const j = await c.joinGroup({ group: 'g1', topics: ['m'] });
  await c.commitOffsets('g1', j.memberId, j.generation, [{ topic: 'm', partition: 0, offset: 1 }]);
  await assert.rejects(c.queueStats('none'));
  const admin = s.server.admin!.url!;
  assert.equal((await call(`${admin}/healthz`)).status, 200);
  const text = await (await fetch(`${admin}/metrics`)).text();
  for (const line of [
    'archlab_queue_connections{server="queue"} 1',
    'archlab_queue_log_appended_records_total{server="queue"} 2',
    'archlab_queue_requests_total{type="PRODUCE",server="queue"} 1',
    'archlab_queue_errors_total{code="ARCHLAB_QUEUE_UNKNOWN_QUEUE",server="queue"} 1',
    'archlab_queue_broker_ready{queue="mq",server="queue"} 1',
    'archlab_queue_broker_published_total{queue="mq",server="queue"} 1',
    'archlab_queue_log_high_watermark{topic="m",partition="0",server="queue"} 2',
    'archlab_queue_group_lag{group="g1",topic="m",partition="0",server="queue"} 1',
  ]) {
    assert.ok(text.includes(line), `metrics have ${line}\n${text.split('\n').filter((l) => l.startsWith('archlab_queue')).join('\n')}`);
  }
  assert.match(text, /archlab_queue_received_bytes_total\{server="queue"\} [1-9]/);
});
