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

const summary = (requests: number, over: Partial<UpSummary['queue']> = {}): UpSummary => ({
  cdn: { requests, errors: 1, edgeHits: 8, edgeMisses: 2, edgeHitRatio: 0.8 },
  balancer: { requests: 40, failures: 2, backendsUp: 2, backends: 3, algorithm: 'round-robin' },
  app: { instancesUp: 2, cacheHits: 0, cacheMisses: 0, cacheHitRatio: null, cacheErrors: 0, ordersPlaced: 5, eventsPublished: 5, eventsFailed: 0 },
  queue: { published: 5, consumed: 4, depth: 1, workerRunning: true, ...over },
});

test('the summary line: counters, the request rate since the previous line, ratios, queue depth', () => {
  assert.equal(formatSummary(summary(100)), 'cdn 100 req edge hit 80% | lb 40 req 2/3 up | errors 3 | cache hit - | orders 5 | queue depth 1 (consumed 4)');
  assert.equal(
    formatSummary(summary(130, { workerRunning: false }), { summary: summary(100), elapsedMs: 2000 }),
    'cdn 130 req (15/s) edge hit 80% | lb 40 req 2/3 up | errors 3 | cache hit - | orders 5 | queue depth 1 (consumed 4, worker stopped)',
  );
});
