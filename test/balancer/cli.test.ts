/** `archlab balance --config` as a process: listens, reloads on SIGHUP, refuses a bad reload, drains on SIGTERM. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { backend, request, sleep } from './helpers.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

test('archlab balance: serves, reloads on SIGHUP, keeps the old config on a bad file, drains on SIGTERM', async (t) => {
  const slow = await backend(t, 'one', (req, res) => {
    if (req.url !== '/slow') return false;
    setTimeout(() => res.end('slow done'), 500);
    return true;
  });
  const two = await backend(t, 'two');
  const dir = mkdtempSync(join(tmpdir(), 'archlab-balance-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'lb.yaml');
  const write = (address: string): void =>
    writeFileSync(file, `listeners:\n  - port: 0\npools:\n  - name: app\n    backends:\n      - address: ${address}\naccessLog: false\n`);
  write(slow.address);

  const child = spawn(process.execPath, ['--import', 'tsx', main, 'balance', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new assert.AssertionError({ message: `no listening line; stderr: ${stderr}` })), 20_000);
    child.stderr.on('data', () => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const url = `http://127.0.0.1:${port}`;
  assert.equal((await request(url)).body, 'one');

  write(two.address);
  child.kill('SIGHUP');
  let body = '';
  for (let i = 0; i < 50 && body !== 'two'; i++) {
    await sleep(50);
    body = (await request(url)).body;
  }
  assert.equal(body, 'two', 'SIGHUP reloaded the file');

  writeFileSync(file, 'listeners: [ { port: 0 } ]\npools: []\n');
  child.kill('SIGHUP');
  await sleep(300);
  assert.equal((await request(url)).body, 'two', 'a bad file is refused and the old config keeps serving');

  // SIGTERM while a request is in flight: it completes, then the process exits 0.
  write(slow.address);
  child.kill('SIGHUP');
  for (let i = 0; i < 50 && body !== 'one'; i++) {
    await sleep(50);
    body = (await request(url)).body;
  }
  const inflight = request(url, { path: '/slow' });
  await sleep(150);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow done');
  assert.equal(await exited, 0);
});
