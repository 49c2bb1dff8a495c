import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorCount, parseWrk, parseWrkTime } from './wrk.js';

const SAMPLE = `Running 3s test @ http://127.0.0.1:41234/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.34ms    3.26ms  37.89ms   89.39%
    Req/Sec    32.61k    15.59k   53.63k    46.67%
  Latency Distribution
     50%  812.00us
     75%    2.19ms
     90%    5.80ms
     99%    1.02s
  97547 requests in 3.01s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 7
  Non-2xx or 3xx responses: 5
Requests/sec:  32361.76
Transfer/sec:      6.64MB
`;

test('parseWrk reads rate, percentiles in any unit, and errors', () => {
  const r = parseWrk(SAMPLE);
  assert.equal(r.requests, 97547);
  assert.equal(r.seconds, 3.01);
  assert.equal(r.rps, 32361.76);
  assert.equal(r.p50Ms, 0.812);
  assert.equal(r.p75Ms, 2.19);
  assert.equal(r.p99Ms, 1020);
  assert.deepEqual(r.socketErrors, { connect: 0, read: 2, write: 0, timeout: 7 });
  assert.equal(r.non2xx, 5);
  assert.equal(errorCount(r), 14);
});

test('parseWrk without error lines counts none; without --latency it refuses', () => {
  const clean = SAMPLE.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, '');
  assert.equal(errorCount(parseWrk(clean)), 0);
  assert.throws(() => parseWrk(clean.replace(/ {2}Latency Distribution[\s\S]*?(?= {2}\d+ requests)/, '')), /latency line/);
});

test('parseWrkTime converts wrk units to ms', () => {
  assert.equal(parseWrkTime('250.00us'), 0.25);
  assert.equal(parseWrkTime('1.50m'), 90_000);
  assert.throws(() => parseWrkTime('fast'));
});
