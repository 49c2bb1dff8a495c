import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { balancerConfig } from '../config.js';
import { bodyPlan as plan3, NO_BODY, retryOn as retryOn4, RETRY_ON_CONNECT, RETRY_ON_RESET, RETRY_ON_STATUS, STREAM_BODY, type RequestHeaders } from './replay.js';
import { BodyReader, type BodyFailure } from './request-body.js';

const ALL = RETRY_ON_CONNECT | RETRY_ON_RESET | RETRY_ON_STATUS;
const KEY_HEADER = 'idempotency-key';

interface RequestShape {
  method: string;
  headers: RequestHeaders;
  hasBody: boolean;
}

/** A request as the proxy sees it; `hasBody` as requestHasBody would say (HTTP/1 unless given). */
function shape(method: string, headers: Record<string, string> = {}, hasBody = headers['content-length'] !== undefined && headers['content-length'] !== '0'): RequestShape {
  return { method, headers, hasBody: hasBody || headers['transfer-encoding'] !== undefined };
}
const bodyPlan = (r: RequestShape, limitBytes: number) => plan3(r.hasBody, r.headers, limitBytes);
const retryOn = (r: RequestShape, p: ReturnType<typeof plan3>, keyHeader: string) => retryOn4(r.method, r.headers, p, keyHeader);

test('bodyPlan: none without a body; buffer a declared length up to the limit; stream chunked, undeclared or larger bodies', () => {
  assert.equal(bodyPlan(shape('GET'), 1024), NO_BODY);
  assert.equal(bodyPlan(shape('POST', { 'content-length': '0' }), 1024), NO_BODY);
  assert.deepEqual(bodyPlan(shape('POST', { 'content-length': '1024' }), 1024), { kind: 'buffer', bytes: 1024 });
  assert.equal(bodyPlan(shape('POST', { 'content-length': '1025' }), 1024), STREAM_BODY);
  assert.equal(bodyPlan(shape('POST', { 'transfer-encoding': 'chunked' }), 1024), STREAM_BODY);
  // HTTP/2: a body without a declared length.
  assert.equal(bodyPlan(shape('POST', {}, true), 1024), STREAM_BODY);
  assert.deepEqual(bodyPlan(shape('POST', { 'content-length': '0' }, true), 1024), { kind: 'buffer', bytes: 0 });
  // Limit 0 (retries.maxBody 0): nothing with a body is held.
  assert.equal(bodyPlan(shape('PUT', { 'content-length': '1' }), 0), STREAM_BODY);
  for (const odd of ['', ' 5', '5 ', '-1', '1e3', '0x10', '9999999999999999']) {
    assert.equal(bodyPlan(shape('POST', { 'content-length': odd }, true), 1 << 30), STREAM_BODY, JSON.stringify(odd));
  }
});

test('retryOn: the table of replay.ts', () => {
  const cases: [string, Record<string, string>, number][] = [
    // method, headers, expected bits (bodies within the limit)
    ['GET', {}, ALL],
    ['HEAD', {}, ALL],
    ['PUT', { 'content-length': '10' }, ALL],
    ['DELETE', { 'content-length': '10' }, ALL],
    ['OPTIONS', {}, ALL],
    ['POST', { 'content-length': '10' }, RETRY_ON_CONNECT],
    ['POST', {}, RETRY_ON_CONNECT],
    ['PATCH', { 'content-length': '10' }, RETRY_ON_CONNECT],
    ['POST', { 'content-length': '10', [KEY_HEADER]: 'k-1' }, RETRY_ON_CONNECT | RETRY_ON_RESET],
    ['PATCH', { [KEY_HEADER]: 'k-2' }, RETRY_ON_CONNECT | RETRY_ON_RESET],
    ['POST', { 'content-length': '10', [KEY_HEADER]: '' }, RETRY_ON_CONNECT],
    ['POST', { 'content-length': '10', 'x-other-key': 'k' }, RETRY_ON_CONNECT],
  ];
  for (const [method, headers, bits] of cases) {
    const s = shape(method, headers);
    assert.equal(retryOn(s, bodyPlan(s, 1024), KEY_HEADER), bits, `${method} ${JSON.stringify(headers)}`);
  }
  // A streamed body is never retried, whatever the method or key.
  for (const method of ['GET', 'PUT', 'POST']) {
    const s = shape(method, { 'transfer-encoding': 'chunked', [KEY_HEADER]: 'k' });
    assert.equal(retryOn(s, bodyPlan(s, 1024), KEY_HEADER), 0, method);
    const big = shape(method, { 'content-length': '2048', [KEY_HEADER]: 'k' });
    assert.equal(retryOn(big, bodyPlan(big, 1024), KEY_HEADER), 0, method);
  }
});

test('config: retries.maxBody (size, default 64KiB, 0 allowed, at most 16MiB) and idempotencyKeyHeader (a token, lowercased)', () => {
  const base = { listeners: [{ port: 0 }], pools: [{ name: 'app', backends: [{ address: '127.0.0.1:1' }] }] };
  const retries = (r: Record<string, unknown>) => balancerConfig({ ...base, pools: [{ ...base.pools[0]!, retries: r }] }).pools[0]!.retries;
  const d = balancerConfig(base).pools[0]!.retries;
  assert.deepEqual(d, { attempts: 2, budgetRatio: 0.2, minPerSecond: 10, maxBodyBytes: 64 * 1024, idempotencyKeyHeader: 'idempotency-key' });
  assert.equal(retries({ maxBody: '1MiB' }).maxBodyBytes, 1024 * 1024);
  assert.equal(retries({ maxBody: 0 }).maxBodyBytes, 0);
  assert.equal(retries({ idempotencyKeyHeader: 'X-Request-Key' }).idempotencyKeyHeader, 'x-request-key');
  assert.throws(() => retries({ maxBody: '17MiB' }), /pools\[0\]\.retries\.maxBody: expected a size between 0B and 16MiB/);
  assert.throws(() => retries({ idempotencyKeyHeader: 'bad header' }), /idempotencyKeyHeader.*header name/s);
  assert.throws(() => retries({ maxBodyBytes: 10 }), /maxBodyBytes/);
});

/** A reader over a PassThrough, with what it reported. */
function reader(bytes: number): { req: PassThrough; r: BodyReader; got: { body?: Buffer; failed?: BodyFailure; calls: number } } {
  const req = new PassThrough();
  const got: { body?: Buffer; failed?: BodyFailure; calls: number } = { calls: 0 };
  const r = new BodyReader(req, bytes, 0, {
    bodyRead: (b) => {
      got.calls++;
      got.body = b;
    },
    bodyFailed: (why) => {
      got.calls++;
      got.failed = why;
    },
  });
  return { req, r, got };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('BodyReader: the body whole, in one buffer of the declared length; longer, shorter, aborted and timed-out bodies fail once', async () => {
  const ok = reader(6);
  ok.req.write('abc');
  ok.req.end('def');
  await tick();
  assert.equal(ok.got.body?.toString(), 'abcdef');
  assert.equal(ok.got.body?.length, 6);

  const long = reader(3);
  long.req.end('abcd');
  await tick();
  assert.deepEqual([long.got.failed, long.got.calls], ['too-long', 1]);

  const short = reader(5);
  short.req.end('abc');
  await tick();
  assert.deepEqual([short.got.failed, short.got.calls], ['too-short', 1]);

  const gone = reader(5);
  gone.req.write('ab');
  gone.req.destroy();
  await tick();
  assert.deepEqual([gone.got.failed, gone.got.calls], ['aborted', 1]);

  const slow = reader(5);
  slow.req.write('ab');
  assert.equal(slow.r.timedOut(), true);
  slow.req.end('cde');
  await tick();
  assert.deepEqual([slow.got.failed, slow.got.calls], ['timeout', 1], 'a late end changes nothing');

  const empty = reader(0);
  empty.req.end();
  await tick();
  assert.equal(empty.got.body?.length, 0);
});
