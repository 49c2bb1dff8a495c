/** The real executable, as a user runs it: a child process, its exit code, its stdout and stderr. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

function archlab(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('archlab ring lookup reads keys from stdin and exits 0', () => {
  const r = archlab(['ring', 'lookup', '--algo', 'jump', '--node', 'a', '--node', 'b', '--keys-file', '-'], 'k1\nk2\nk3\n');
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trimEnd().split('\n');
  assert.deepEqual(lines.map((l) => l.split('\t')[0]), ['k1', 'k2', 'k3']);
  for (const l of lines) assert.match(l, /\t[ab]$/);
});

test('a usage error exits 2 with the reason on stderr and nothing on stdout', () => {
  const r = archlab(['ring', 'simulate', '--nodes', 'ten']);
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /--nodes must be a whole number/);
});

test('demo prints the commands and the measured table', () => {
  const r = archlab(['demo', '--keys', '20000']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Usage: archlab/);
  assert.match(r.out, /^modulo\s+9\d\.\d\d%/m);
  assert.match(r.out, /^maglev\s+/m);
});
