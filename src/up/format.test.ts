import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatComponents, formatSummary } from './format.js';
import type { UpSummary } from './runner.js';

test('the table pads columns and shows "-" for a component with no URL', () => {
  const text = formatComponents([
    { name: 'database', kind: 'database', engine: 'sqlite', url: '/data/catalogue.db', port: undefined, state: 'embedded' },
    { name: 'cache', kind: 'cache', engine: 'memory cache-aside', url: undefined, port: undefined, state: 'embedded' },
    { name: 'app-1', kind: 'app', engine: 'demo app', url: 'http://127.0.0.1:4100', port: 4100, state: 'stopped' },
  ]);
  assert.equal(
    text,
    [
      'COMPONENT  ENGINE              URL                    STATE',
      'database   sqlite              /data/catalogue.db     embedded',
      'cache      memory cache-aside  -                      embedded',
      'app-1      demo app            http://127.0.0.1:4100  stopped',
      '',
    ].join('\n'),
  );
});

const CLIENTS: UpSummary['clients'] = { rate: 50, baseRate: 50, spike: null, sentRate: 49.5, issued: 500, completed: 498, errors: 0, timeouts: 0, server5xx: 0, dropped: 2, inFlight: 2, p50Ms: 1.24, p99Ms: 12.6 };
const summary = (requests: number, over: Partial<UpSummary['queue']> = {}, clients: Partial<UpSummary['clients']> = {}, paymentsFailed = 0): UpSummary => ({
  cdn: { requests, errors: 1, edgeHits: 8, edgeMisses: 2, edgeHitRatio: 0.8 },
  balancer: { requests: 40, failures: 2, backendsUp: 2, backends: 3, algorithm: 'round-robin' },
  app: { instancesUp: 2, cacheHits: 0, cacheMisses: 0, cacheHitRatio: null, cacheErrors: 0, ordersPlaced: 5, eventsPublished: 5, eventsFailed: 0, payments: { authorized: 5, failed: paymentsFailed, abandoned: 0 } },
  proxy: { requests: 5, errors: paymentsFailed, denied: 0 },
  payments: { charges: 5, refused: 0, failed: paymentsFailed, latencyMs: 5, failureRate: 0 },
  queue: { published: 5, consumed: 4, depth: 1, workerRunning: true, ...over },
  clients: { ...CLIENTS, ...clients },
});

test('the summary line: counters, the request rate since the previous line, ratios, queue depth', () => {
  assert.equal(formatSummary(summary(100)), 'clients 50/s p99 13ms dropped 2 | cdn 100 req edge hit 80% | lb 40 req 2/3 up | errors 3 | cache hit - | orders 5 | queue depth 1 (consumed 4)');
  assert.equal(
    formatSummary(summary(130, { workerRunning: false }), { summary: summary(100), elapsedMs: 2000 }),
    'clients 50/s p99 13ms dropped 2 | cdn 130 req (15/s) edge hit 80% | lb 40 req 2/3 up | errors 3 | cache hit - | orders 5 | queue depth 1 (consumed 4, worker stopped)',
  );
  assert.equal(formatSummary(summary(100, {}, {}, 2)).split(' | ')[5], 'orders 5 (payments failed 2)', 'orders refused for their payment');
});

test('the summary line: the load generator idle, during a spike, with a fast p99 and no answer yet', () => {
  const part = (c: Partial<UpSummary['clients']>): string => formatSummary(summary(1, {}, c)).split(' | ')[0]!;
  assert.equal(part({ rate: 0, baseRate: 0, inFlight: 0, dropped: 0 }), 'clients idle dropped 0');
  assert.equal(part({ rate: 0, baseRate: 0, inFlight: 3 }), 'clients 0/s p99 13ms dropped 2', 'still answering what it sent');
  assert.equal(part({ rate: 250, spike: { factor: 5, remainingMs: 11_200 }, p99Ms: 3.04 }), 'clients 250/s (spike x5, 12s left) p99 3.0ms dropped 2');
  assert.equal(part({ p99Ms: null }), 'clients 50/s p99 - dropped 2');
});
