/** `archlab up` as a command: a broken topology fails before starting anything; Ctrl-C stops everything and exits 0. */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../../src/cli/test-helpers.js';
import { probe, spawnTsx, tempDir } from './helpers.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCli(argv, 'up logs through its own logger');
}

test('archlab up --topology <broken file> exits non-zero naming the field, and starts nothing', async (t) => {
  const dir = tempDir(t);
  const dataDir = join(dir, 'data');
  const cases: Array<[string, RegExp]> = [
    [`dataDir: ${dataDir}\ncache: { engine: mongo }\n`, /cache\.engine: expected one of memory, redis/],
    [`dataDir: ${dataDir}\napp: { instances: 40 }\n`, /app\.instances: expected 1\.\.16 instances/],
    [`dataDir: ${dataDir}\nbalancer: { port: 6379 }\n`, /balancer\.port: port 6379 belongs to Redis/],
    [`dataDir: ${dataDir}\ndatabase: { engine: postgres }\n`, /database\.url: missing \(missing: engine postgres needs a url/],
  ];
  for (const [yaml, field] of cases) {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, yaml);
    const r = await cli('up', '--topology', file);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /ARCHLAB_CONFIG_INVALID/);
    assert.match(r.err, field);
    assert.match(r.err, /broken\.yaml/, 'the file is named');
    assert.equal(r.out, '', 'no table: nothing started');
    assert.equal(existsSync(dataDir), false, 'nothing started: the data dir was not even created');
  }
  const missing = await cli('up', '--topology', join(dir, 'nope.yaml'));
  assert.equal(missing.code, 1);
  assert.match(missing.err, /ARCHLAB_CONFIG_UNREADABLE/);
});

test('archlab up: prints the table, and Ctrl-C (SIGINT) stops everything, exits 0 and releases every port', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'small.yaml');
  writeFileSync(
    file,
    ['name: small', 'dataDir: data', 'cdn: { regions: [{ name: eu }] }', 'app: { instances: 2, data: { products: 40, users: 4 } }', 'queue: { worker: { work: 1ms } }', ''].join('\n'),
  );
  const up = spawnTsx(t, main, ['up', '--topology', file]);
  await up.waitForOut(/Ctrl-C stops everything/, 30_000, 'table');
  const out = up.out();
  assert.match(out, /^COMPONENT\s+ENGINE\s+URL\s+STATE$/m);
  for (const name of ['database', 'queue', 'worker', 'app-1', 'app-2', 'proxy', 'payments', 'balancer', 'cdn eu-1', 'cdn']) assert.match(out, new RegExp(`^${name}\\s`, 'm'));
  assert.match(out, new RegExp(`^database\\s+sqlite\\s+${join(dir, 'data', 'catalogue.db').replace(/[.]/g, '\\.')}`, 'm'), 'dataDir is relative to the topology file');
  const ports = [...out.matchAll(/^\S.*?http:\/\/127\.0\.0\.1:(\d+)\s+running$/gm)].map((m) => Number(m[1]));
  assert.equal(ports.length, 10, out);
  const dashboardPort = Number(/^dashboard http:\/\/127\.0\.0\.1:(\d+)/m.exec(out)?.[1]);
  assert.ok(dashboardPort > 0, `the dashboard's URL is printed: ${out}`);
  ports.push(dashboardPort);
  for (const p of ports) assert.equal(await probe(p), 'accepts', `port ${p}`);
  const front = /^cdn\s+router \(front door\)\s+(\S+)/m.exec(out)![1]!;
  const r = await fetch(`${front}/api/products/3`);
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { id: number }).id, 3);

  up.child.kill('SIGINT');
  assert.deepEqual(await up.exit(20_000, 'after SIGINT'), { code: 0, signal: null }, up.err());
  assert.match(up.err(), /archlab up: stopped/);
  for (const p of ports) assert.equal(await probe(p), 'refused', `port ${p} released`);
});
