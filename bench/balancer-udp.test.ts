import assert from 'node:assert/strict';
import { test } from 'node:test';
import { medianRows, roundScenario } from './balancer-l7/rounds.js';
import { nginxUdpConfig, report, SCENARIO, SYSTEMS } from './balancer-udp.js';
import type { Results, Row } from './harness.js';

function rounds(system: string, metric: string, values: number[], unit = metric): Row[] {
  return values.map((value, i) => ({ system, scenario: roundScenario(SCENARIO, i + 1), metric, value, unit }));
}

function results(perRound: Row[]): Results {
  return { bench: 'balancer-udp', date: '2026-11-29T00:00:00.000Z', quick: false, machine: { cpus: 2, node: 'v20' }, rows: [...perRound, ...medianRows(perRound, SCENARIO, ['lost'])], notes: ['a note'] };
}

test('the UDP report: medians, ratios within each round, lost datagrams, notes', () => {
  const md = report(
    results([
      ...rounds(SYSTEMS.direct, 'datagrams/s', [40000, 30000, 50000]),
      ...rounds(SYSTEMS.archlab, 'datagrams/s', [20000, 18000, 20000]),
      ...rounds(SYSTEMS.nginx, 'datagrams/s', [25000, 20000, 40000]),
      ...rounds(SYSTEMS.archlab, 'p99', [2, 3, 4], 'ms'),
      ...rounds(SYSTEMS.archlab, 'CPU per 1k', [40, 45, 50], 'ms'),
      ...rounds(SYSTEMS.archlab, 'core busy', [0.8, 0.81, 0.9], 'share of a core'),
      // Lost in one round of three: the median is 0, so the table says 0.
      { system: SYSTEMS.nginx, scenario: roundScenario(SCENARIO, 2), metric: 'lost', value: 5, unit: 'datagrams' },
      ...rounds(SYSTEMS.archlab, 'lost', [1, 2, 0]),
    ]),
  );
  // archlab ÷ direct per round: 0.50, 0.60, 0.40 -> 0.50x; ÷ nginx: 0.80, 0.90, 0.50 -> 0.80x. nginx ÷ direct: 0.625, 0.667, 0.80 -> 0.67x.
  assert.match(md, /\| archlab \(udp\) \| 20,000 \| 0\.50x \| 0\.80x \| - \| 3\.00 \| 45\.0 \| 81% \| 1 \|/);
  assert.match(md, /\| nginx stream \(1 worker\) \| 25,000 \| 0\.67x \| - \| - \| - \| - \| - \| 0 \|/);
  assert.match(md, /\| direct \| 40,000 \| - \| - \| - \| - \| - \| - \| 0 \|/, 'no CPU row: "-", not "- (backend)"');
  assert.match(md, /Datagrams\/s per round: archlab \(udp\) 20,000, 18,000, 20,000; nginx stream \(1 worker\) 25,000, 20,000, 40,000\./);
  assert.match(md, /3 rounds; medians over the rounds/);
  assert.match(md, /- a note/);
});

test("nginx's UDP config loads the stream module, listens for UDP on loopback, and proxies to the backend", () => {
  const c = nginxUdpConfig('/tmp/x', 5300, 5301);
  assert.match(c, /^load_module \/usr\/lib\/nginx\/modules\/ngx_stream_module\.so;$/m);
  assert.match(c, /listen 127\.0\.0\.1:5300 udp;/);
  assert.match(c, /server 127\.0\.0\.1:5301;/);
  assert.match(c, /worker_processes 1;/);
  assert.doesNotMatch(c, /proxy_responses/, 'a flow keeps its session for many datagrams');
});
