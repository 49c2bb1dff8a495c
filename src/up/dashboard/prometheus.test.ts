import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { SeededRandom } from '../../core/index.js';
import { bucketsDelta, bucketsOf, counterDelta, histogramQuantile, parsePrometheusText, parseSampleLine, sumOf } from './prometheus.js';

describe('parsePrometheusText', () => {
  test('reads what prom-client writes: counters with labels, histogram buckets with +Inf, sums and counts', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'x_requests_total', help: 'h', labelNames: ['route', 'status'], registers: [registry] });
    const h = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['backend'], buckets: [0.01, 0.1, 1], registers: [registry] });
    c.inc({ route: '/a', status: '200' }, 3);
    c.inc({ route: '/b "quoted" \\ back\nslash', status: '500' }, 2);
    for (const v of [0.005, 0.05, 0.5, 5]) h.observe({ backend: 'app-1' }, v);
    h.observe({ backend: 'app-2' }, 0.05);
    const samples = parsePrometheusText(await registry.metrics());
    assert.equal(sumOf(samples, 'x_requests_total'), 5);
    assert.equal(sumOf(samples, 'x_requests_total', { status: '500' }), 2);
    assert.equal(sumOf(samples, 'x_requests_total', { route: '/b "quoted" \\ back\nslash' }), 2, 'escaped label values come back as they were');
    assert.deepEqual(bucketsOf(samples, 'x_seconds', { backend: 'app-1' }), [
      { le: 0.01, count: 1 },
      { le: 0.1, count: 2 },
      { le: 1, count: 3 },
      { le: Infinity, count: 4 },
    ]);
    assert.deepEqual(
      bucketsOf(samples, 'x_seconds').map((b) => b.count),
      [1, 3, 4, 5],
      'several series merge per bound',
    );
    assert.equal(sumOf(samples, 'x_seconds_count'), 5);
  });

  test('skips comments, blank and malformed lines instead of failing the scrape', () => {
    const text = ['# HELP a x', '# TYPE a counter', '', 'a 1', 'a{b="1" 2', 'b{="x"} 3', '9bad 1', 'c{d="e"} notanumber', 'c{d="e",} 4', 'e +Inf', 'f NaN'].join('\n');
    const samples = parsePrometheusText(text);
    assert.deepEqual(
      samples.map((s) => [s.name, s.labels, s.value]),
      [
        ['a', {}, 1],
        ['c', { d: 'e' }, 4],
        ['e', {}, Infinity],
        ['f', {}, NaN],
      ],
    );
    assert.equal(parseSampleLine('x{a="unterminated} 1'), undefined);
  });
});

describe('histogramQuantile', () => {
  test('interpolates linearly within the bucket, as Prometheus does', () => {
    const b = [
      { le: 0.1, count: 10 },
      { le: 0.2, count: 30 },
      { le: Infinity, count: 40 },
    ];
    assert.equal(histogramQuantile(0.125, b), 0.05); // rank 5 of 40: halfway through [0, 0.1]
    assert.equal(histogramQuantile(0.25, b), 0.1); // rank 10: the top of the first bucket
    assert.ok(Math.abs(histogramQuantile(0.5, b)! - 0.15) < 1e-12); // rank 20: halfway through (0.1, 0.2]
    assert.equal(histogramQuantile(0.99, b), 0.2, 'in +Inf: the highest finite bound');
    assert.equal(histogramQuantile(0.5, [{ le: Infinity, count: 0 }]), null);
    assert.equal(histogramQuantile(0.5, []), null);
  });

  test('on random observations, the estimate lies in the bucket that holds the true quantile', () => {
    const bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
    for (let seed = 1; seed <= 50; seed++) {
      const random = new SeededRandom(seed);
      const n = 1 + Math.floor(random.next() * 500);
      const values = Array.from({ length: n }, () => Math.exp(Math.log(0.0002) + random.next() * Math.log(2 / 0.0002)));
      const buckets = [...bounds, Infinity].map((le) => ({ le, count: values.filter((v) => v <= le).length }));
      const sorted = [...values].sort((a, b) => a - b);
      for (const q of [0.5, 0.9, 0.99]) {
        const truth = sorted[Math.max(0, Math.ceil(q * n) - 1)]!;
        const est = histogramQuantile(q, buckets)!;
        const i = bounds.findIndex((le) => truth <= le);
        const lo = i <= 0 ? 0 : bounds[i - 1]!;
        const hi = i < 0 ? bounds.at(-1)! : bounds[i]!;
        assert.ok(est >= lo - 1e-12 && est <= hi + 1e-12, `seed ${seed} q ${q}: estimate ${est} outside [${lo}, ${hi}] of the truth ${truth}`);
      }
    }
  });
});

describe('deltas', () => {
  test('counterDelta: an increase, 0 without a previous reading, the new value after a reset', () => {
    assert.equal(counterDelta(5, 12), 7);
    assert.equal(counterDelta(undefined, 12), 0);
    assert.equal(counterDelta(40, 3), 3);
  });

  test('bucketsDelta: per bound; a series that went down was reset (a restarted process) and counts from zero', () => {
    const before = [
      { le: 1, count: 5 },
      { le: Infinity, count: 8 },
    ];
    const after = [
      { le: 1, count: 9 },
      { le: Infinity, count: 14 },
    ];
    assert.deepEqual(bucketsDelta(before, after), [
      { le: 1, count: 4 },
      { le: Infinity, count: 6 },
    ]);
    const restarted = [
      { le: 1, count: 2 },
      { le: Infinity, count: 2 },
    ];
    assert.deepEqual(bucketsDelta(before, restarted), restarted);
    assert.deepEqual(bucketsDelta(undefined, after), after);
  });
});
