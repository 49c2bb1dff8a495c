/** `archlab cdn` as a process: starts from a file, prints its addresses, serves, stops on SIGTERM with 0. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { CliContext } from '../../src/cli/context.js';
import { run as runCli } from '../../src/cli/program.js';
import { client } from '../../src/cdn/network/test-helpers.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

test('archlab cdn --config: prints router, nodes and admin; serves through the router; exits 0 on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cdn-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'cdn.yaml');
  writeFileSync(
    file,
    [
      'listeners: [{ port: 0 }]',
      'admin: { port: 0 }',
      'log: { level: warn }',
      'metrics: { defaultMetrics: false }',
      'timeouts: { drain: 2s }',
      'regions:',
      '  - { name: eu, edges: 1, storage: { memory: 1MiB } }',
      '  - { name: us, edges: 1, storage: { memory: 1MiB } }',
      'shield: { storage: { memory: 1MiB } }',
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'cdn', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new assert.AssertionError({ message: `archlab cdn did not print its addresses; stderr: ${stderr}` })), 20_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/admin and purge token \S+\n/.test(stderr)) {
        clearTimeout(timer);
        resolve(stderr);
      }
    });
    child.on('exit', () => reject(new assert.AssertionError({ message: `archlab cdn exited early; stderr: ${stderr}` })));
  });
  const router = /router listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(ready)?.[1];
  const admin = /admin on (http:\/\/127\.0\.0\.1:\d+)/.exec(ready)?.[1];
  const token = /admin and purge token (\S+)/.exec(ready)?.[1];
  assert.ok(router && admin && token, ready);
  assert.match(ready, /origin \(demo\) http:\/\/127\.0\.0\.1:\d+/);
  assert.match(ready, /shield shield http:\/\/127\.0\.0\.1:\d+/);
  assert.match(ready, /edge eu-1 \(eu\) http:\/\/127\.0\.0\.1:\d+/);
  assert.match(ready, /edge us-1 \(us\) http:\/\/127\.0\.0\.1:\d+/);

  const get = client(t);
  const r = await get(`${router}/`, { headers: { 'x-client-region': 'us' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-served-by'], 'us-1');
  const purge = await get(`${admin}/purge`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"url":"/"}' });
  assert.equal(purge.status, 200, purge.body);
  assert.equal(JSON.parse(purge.body).purged, 2);

  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
});

test('archlab cdn: a bad config names the file and the field; a bad --port is a usage error (in-process)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cdn-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = async (...argv: string[]): Promise<{ code: number; err: string }> => {
    let err = '';
    const ctx = (): CliContext => ({ out: () => undefined, err: (x) => (err += x), logger: () => assert.fail('no logging expected'), interactive: false });
    return { code: await runCli(argv, ctx), err };
  };
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'listeners: [{ port: 0 }]\nregions:\n  - { name: eu }\nlatency:\n  clients: { eu: { eu: soon } }\n');
  const bad = await cli('cdn', '--config', file);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /ARCHLAB_CONFIG_INVALID: invalid config in .*bad\.yaml/);
  assert.match(bad.err, /latency\.clients\.eu\.eu: invalid duration "soon".*\(line 5/);
  const port = await cli('cdn', '--config', file, '--port', 'http');
  assert.equal(port.code, 1, 'the file is checked first');
  writeFileSync(file, 'listeners: [{ port: 0 }]\nregions: [{ name: eu }]\n');
  assert.equal((await cli('cdn', '--config', file, '--port', 'http')).code, 2);
});
