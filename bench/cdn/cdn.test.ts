import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { findBinary, httpGet } from '../balancer-l7/procs.js';
import type { Results } from '../harness.js';
import { HIT_SCENARIO, HIT_SYSTEMS, isHit } from './hitpath.js';
import { isObjectBody, objectBody, objectPath, startOrigin } from './origin.js';
import { PURGE_SCENARIO, PURGE_SYSTEM } from './purge.js';
import { targets } from './report.js';
import { rotateScript, runWrkPaths, writeRotateScript } from './wrk.js';
import { ZIPF_SCENARIO, ZIPF_SYSTEMS } from './zipf.js';

test('isHit reads the last tier of a chained X-Cache', () => {
  assert.equal(isHit('HIT'), true);
  assert.equal(isHit('MISS, HIT'), true);
  assert.equal(isHit('HIT, MISS'), false);
  assert.equal(isHit('MISS'), false);
  assert.equal(isHit('STALE'), false);
  assert.equal(isHit(undefined), false);
  assert.equal(isHit(['MISS', 'HIT']), true);
});

test('object bodies carry their path and size, and a wrong one is caught', () => {
  const b = objectBody(objectPath(7), 64);
  assert.equal(b.length, 64);
  assert.ok(b.toString('latin1').startsWith('/o/0000007 '));
  assert.ok(isObjectBody(objectPath(7), b, 64));
  assert.ok(!isObjectBody(objectPath(8), b, 64));
  assert.ok(!isObjectBody(objectPath(7), b.subarray(0, 63), 64));
});

test('the origin serves its objects cacheable, counts them, and 404s the rest', async () => {
  const origin = await startOrigin({ objects: 10, bodyBytes: 100, recordArrivals: 5 });
  try {
    const r = await httpGet(`${origin.url}${objectPath(3)}`);
    assert.equal(r.status, 200);
    assert.ok(isObjectBody(objectPath(3), r.body, 100));
    assert.match(String(r.headers['cache-control']), /max-age=3600/);
    assert.ok(r.headers.etag);
    assert.equal((await httpGet(`${origin.url}${objectPath(10)}`)).status, 404);
    assert.equal((await httpGet(`${origin.url}/o/3`)).status, 404);
    assert.equal(origin.served(), 1);
    assert.equal(origin.arrivals().length, 1);
    assert.deepEqual(JSON.parse((await httpGet(`${origin.url}/__stats`)).body), { served: 1 });
  } finally {
    await origin.close();
  }
});

test('the wrk script visits every path', async (t) => {
  assert.throws(() => rotateScript(['/ok', '/bad"path']));
  const wrk = findBinary('wrk');
  if (!wrk) {
    t.skip('wrk not installed');
    return;
  }
  const seen = new Map<string, number>();
  const server = createServer((req, res) => {
    seen.set(req.url ?? '', (seen.get(req.url ?? '') ?? 0) + 1);
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cdn-wrk-test-'));
  try {
    const port = (server.address() as { port: number }).port;
    const paths = Array.from({ length: 20 }, (_, i) => objectPath(i));
    const r = await runWrkPaths({ wrk, base: `http://127.0.0.1:${port}`, scriptFile: writeRotateScript(dir, 't', paths), connections: 2, threads: 1, durationS: 1 });
    assert.ok(r.requests > 20);
    assert.deepEqual([...seen.keys()].sort(), paths);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('targets: met, MISSED and not measured from the rows', () => {
  const results = (rows: Results['rows']): Results => ({ bench: 'cdn', date: '2026-01-01', quick: false, machine: { cpus: 2, node: 'v20' }, rows, notes: [] });
  const row = (system: string, scenario: string, metric: string, value: number): Results['rows'][number] => ({ system, scenario, metric, value, unit: '' });
  const good = targets(
    results([
      row(HIT_SYSTEMS.archlab, HIT_SCENARIO, 'req/s', 6000),
      row(HIT_SYSTEMS.nginx, HIT_SCENARIO, 'req/s', 10_000),
      row(ZIPF_SYSTEMS.edge, ZIPF_SCENARIO, 'hit ratio', 0.55),
      row(ZIPF_SYSTEMS.lru, ZIPF_SCENARIO, 'hit ratio', 0.56),
      row(PURGE_SYSTEM, PURGE_SCENARIO, 'propagation p99', 12),
    ]),
  );
  assert.equal(good.length, 3);
  assert.ok(good.every((t) => t.startsWith('met: ')), good.join('\n'));
  const bad = targets(
    results([
      row(HIT_SYSTEMS.archlab, HIT_SCENARIO, 'req/s', 4000),
      row(HIT_SYSTEMS.nginx, HIT_SCENARIO, 'req/s', 10_000),
      row(ZIPF_SYSTEMS.edge, ZIPF_SCENARIO, 'hit ratio', 0.5),
      row(ZIPF_SYSTEMS.lru, ZIPF_SCENARIO, 'hit ratio', 0.53),
      row(PURGE_SYSTEM, PURGE_SCENARIO, 'propagation p99', 51),
    ]),
  );
  assert.ok(bad.every((t) => t.startsWith('MISSED: ')), bad.join('\n'));
  assert.ok(targets(results([])).every((t) => t.startsWith('not measured: ')));
});
