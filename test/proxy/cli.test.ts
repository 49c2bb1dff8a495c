/** `archlab proxy` as a process: --config, hash-password, config errors, SIGTERM drain. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { CliContext } from '../../src/cli/context.js';
import { run as runCli } from '../../src/cli/program.js';
import { backend, basic, sleep, viaProxy } from './helpers.js';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

function run(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

test('archlab proxy: hash-password makes a line that authenticates; the process serves, logs JSON, and drains on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-proxy-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hashed = await run(['proxy', 'hash-password', 'carol', '--cost', '1024'], 'open sesame\n');
  assert.equal(hashed.code, 0, hashed.stderr);
  assert.match(hashed.stdout, /^carol:scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$/);
  writeFileSync(join(dir, 'users.txt'), `# test users\n${hashed.stdout}`);

  const slow = await backend(t, (req, res) => {
    if (req.url !== '/slow') return false;
    setTimeout(() => res.end('slow done'), 400);
    return true;
  });
  const file = join(dir, 'proxy.yaml');
  writeFileSync(
    file,
    ['listeners:', '  - port: 0', 'acl:', '  ssrfGuard:', '    exceptions: [127.0.0.1]', 'auth:', '  usersFile: users.txt', 'metrics:', '  defaultMetrics: false', 'timeouts:', '  drain: 2s', ''].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
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
  const url = `http://127.0.0.1:${slow.port}/`;
  assert.equal((await viaProxy({ port }, url)).status, 407);
  const auth = { 'proxy-authorization': basic('carol', 'open sesame') };
  assert.equal((await viaProxy({ port }, url, { headers: auth })).body, 'ok /');

  const inflight = viaProxy({ port }, `${url}slow`, { headers: auth });
  await sleep(150);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow done');
  assert.equal(await exited, 0);
  const access = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.type === 'access');
  assert.deepEqual(
    access.map((l) => [l.status, l.user]),
    [
      [407, null],
      [200, 'carol'],
      [200, 'carol'],
    ],
  );
});

test('archlab proxy: a bad config names the file and the field; no --config is a usage error (in-process)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-proxy-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = async (...argv: string[]): Promise<{ code: number; err: string }> => {
    let err = '';
    const ctx = (): CliContext => ({ out: () => undefined, err: (x) => (err += x), logger: () => assert.fail('no logging expected'), interactive: false });
    return { code: await runCli(argv, ctx), err };
  };
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'listeners:\n  - port: 3128\nacl:\n  connectPorts: [https]\n');
  const bad = await cli('proxy', '--config', file);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /ARCHLAB_CONFIG_INVALID: invalid config in .*bad\.yaml/);
  assert.match(bad.err, /acl\.connectPorts\[0\]: expected a port 1\.\.65535 or a range "lo-hi", received "https" \(line 4/);
  const users = join(dir, 'users.yaml');
  writeFileSync(users, 'listeners: [{ port: 0 }]\nauth: { usersFile: nope.txt }\n');
  const missing = await cli('proxy', '--config', users);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /cannot read users file .*nope\.txt/);
  assert.equal((await cli('proxy')).code, 2);
  assert.equal((await cli('proxy', 'hash-password')).code, 2, 'the user argument is required');
});
