import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from './test-helpers.js';
import { KetamaHasher } from '../hashing/index.js';

function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCli(argv, 'these commands do not log');
}

test('--help, --version and ring --help answer with code 0', async () => {
  const help = await cli('--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /ring/);
  assert.match(help.out, /--log-level/);
  const version = await cli('--version');
  assert.equal(version.code, 0);
  assert.match(version.out, /^\d+\.\d+\.\d+\n$/);
  const ring = await cli('ring', '--help');
  assert.match(ring.out, /lookup/);
  assert.match(ring.out, /simulate/);
  const lookup = await cli('ring', 'lookup', '--help');
  assert.match(lookup.out, /--keys-file/);
});

test('ring lookup prints key<TAB>node lines matching the library, from flags and a keys file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keysFile = join(dir, 'keys.txt');
  const keys = Array.from({ length: 500 }, (_, i) => `user:${i}`);
  writeFileSync(keysFile, keys.join('\n') + '\n');
  const r = await cli('ring', 'lookup', '--node', '10.0.1.1:11211=600', '--node', '10.0.1.2:11211=300', '--node', '10.0.1.3:11212', '--key', 'first', '--keys-file', keysFile);
  assert.equal(r.code, 0, r.err);
  const h = new KetamaHasher();
  h.add('10.0.1.1:11211', 600);
  h.add('10.0.1.2:11211', 300);
  h.add('10.0.1.3:11212', 1);
  const expected = ['first', ...keys].map((k) => `${k}\t${h.get(k)}`).join('\n') + '\n';
  assert.equal(r.out, expected);
});

test('usage errors exit 2 with a message; typed errors name their code', async () => {
  const badWeight = await cli('ring', 'lookup', '--node', 'a=zero', '--key', 'k');
  assert.equal(badWeight.code, 2);
  assert.match(badWeight.err, /weight after "=" must be a number > 0/);
  const noKeys = await cli('ring', 'lookup', '--node', 'a');
  assert.equal(noKeys.code, 2);
  assert.match(noKeys.err, /ARCHLAB_INVALID_ARGUMENT: give keys/);
  const badAlgo = await cli('ring', 'simulate', '--algo', 'crush');
  assert.equal(badAlgo.code, 2);
  assert.match(badAlgo.err, /Allowed choices are ketama, jump/);
  const dup = await cli('ring', 'lookup', '--node', 'a', '--node', 'a', '--key', 'k');
  assert.equal(dup.code, 1);
  assert.match(dup.err, /ARCHLAB_HASH_DUPLICATE_NODE/);
  const prime = await cli('ring', 'lookup', '--algo', 'maglev', '--table-size', '100', '--node', 'a', '--key', 'k');
  assert.equal(prime.code, 1);
  assert.match(prime.err, /prime/);
});

test('ring simulate --json reports moved fraction against the ideal', async () => {
  const r = await cli('ring', 'simulate', '--algo', 'modulo', '--nodes', '10', '--keys', '20000', '--add', '1', '--json');
  assert.equal(r.code, 0, r.err);
  const result = JSON.parse(r.out) as { movedFraction: number; idealFraction: number; algorithm: string };
  assert.equal(result.algorithm, 'modulo');
  assert.ok(result.movedFraction > 0.85);
  assert.ok(Math.abs(result.idealFraction - 1 / 11) < 1e-9);
  const table = await cli('ring', 'simulate', '--compare', '--nodes', '5', '--keys', '5000', '--remove', '1');
  assert.equal(table.code, 0, table.err);
  for (const algo of ['ketama', 'jump', 'rendezvous', 'maglev', 'bounded', 'modulo']) assert.match(table.out, new RegExp(`^${algo} `, 'm'));
});
