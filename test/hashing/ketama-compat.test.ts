/**
 * Ketama compatibility, proven against independent implementations rather than vectors of our own:
 * the `hashring` npm package (with 'default port': 11211, its libmemcached mode) and, when its
 * headers are installed, libmemcached itself through a tiny C program (test/fixtures).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import HashRing from 'hashring';
import { KetamaHasher, ketamaHash, pointCount } from '../../src/hashing/index.js';

type Servers = Record<string, number>;

const LISTS: Record<string, Servers> = {
  'issue example, weighted': { '10.0.1.1:11211': 600, '10.0.1.2:11211': 300, '10.0.1.3:11211': 200, '10.0.1.4:11211': 350 },
  'two equal on default port': { '192.168.0.10:11211': 1, '192.168.0.11:11211': 1 },
  'mixed ports and weights': { 'cache-a.internal:11211': 5, 'cache-b.internal:11212': 3, 'cache-c.internal:11211': 2, '10.9.8.7:22122': 1 },
  'ten equal': Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`10.0.2.${i + 1}:11211`, 100])),
  'single server': { '127.0.0.1:11211': 1 },
  'eleven mixed': Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`mc${i}.example:11211`, 1 + (i % 4)])),
};

/** 100k keys: ASCII, UTF-8, long, plus every key generated until enough of them hash past the last point. */
function keysFor(h: KetamaHasher): { keys: string[]; wrapping: number } {
  const keys: string[] = [];
  for (let i = 0; keys.length < 100_000; i++) {
    keys.push(i % 10 === 0 ? `clé-${i}-日本` : i % 17 === 0 ? `session:${'x'.repeat(i % 200)}:${i}` : `user:${i}`);
  }
  const last = h.pointAt(h.pointCount - 1);
  let wrapping = keys.filter((k) => ketamaHash(k) > last).length;
  for (let i = 0; wrapping < 50; i++) {
    const k = `wrap-${i}`;
    if (ketamaHash(k) > last) {
      keys.push(k);
      wrapping++;
    }
  }
  return { keys, wrapping };
}

function ours(servers: Servers): KetamaHasher {
  const h = new KetamaHasher();
  for (const [s, w] of Object.entries(servers)) h.add(s, w);
  return h;
}

/** hashring computes point counts in doubles; it is a valid reference only where that agrees with C's floats. */
function hashringAgreesOnCounts(servers: Servers): boolean {
  const ws = Object.values(servers);
  const total = ws.reduce((a, b) => a + b, 0);
  return ws.every((w) => Math.floor((w / total) * 40 * ws.length) * 4 === pointCount(w, total, ws.length, 160));
}

for (const [name, servers] of Object.entries(LISTS)) {
  test(`ketama agrees with the hashring package on 100k keys: ${name}`, () => {
    assert.ok(hashringAgreesOnCounts(servers), 'list chosen where hashring computes libmemcached\u2019s point counts');
    const h = ours(servers);
    const ring = new HashRing(
      Object.fromEntries(Object.entries(servers).map(([s, weight]) => [s, { weight }])),
      'md5',
      { 'default port': 11211 },
    );
    const { keys, wrapping } = keysFor(h);
    assert.ok(wrapping >= 50);
    let mismatches = 0;
    let first = '';
    for (const k of keys) {
      const a = h.get(k);
      const b = ring.get(k);
      if (a !== b) {
        if (mismatches++ === 0) first = `${k}: ours ${a}, hashring ${b}`;
      }
    }
    assert.equal(mismatches, 0, `first mismatch ${first}`);
  });
}

test('hashring itself drops to 156 points for 7 equal servers, where libmemcached keeps 160', () => {
  const seven = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`10.0.3.${i}:11211`, 1]));
  assert.equal(hashringAgreesOnCounts(seven), false);
  assert.equal(ours(seven).pointsOf('10.0.3.0:11211'), 160);
});

const header = '/usr/include/libmemcached/memcached.h';
const haveLibmemcached = existsSync(header) && spawnSync('gcc', ['--version']).status === 0;
const skipLibmemcached = haveLibmemcached
  ? false
  : 'libmemcached-dev (and gcc) not installed: apt-get install libmemcached-dev to run this check';
if (process.env.CI === 'true' && skipLibmemcached) {
  test('libmemcached is installed in CI', () => assert.fail(`${skipLibmemcached} (.ci/run installs it)`));
}

test('ketama agrees with libmemcached itself (KETAMA_WEIGHTED), including 7 equal servers', { skip: skipLibmemcached }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-ketama-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'ketama-libmemcached');
  execFileSync('gcc', ['-O2', '-o', bin, join(import.meta.dirname, '..', 'fixtures', 'ketama-libmemcached.c'), '-lmemcached']);
  const lists: Servers[] = [
    ...Object.values(LISTS),
    Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`10.0.3.${i}:11211`, 1])),
    Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`10.0.4.${i}:11211`, 1])),
    Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`10.0.6.${i}:11211`, 1])),
    { '10.0.5.1:11211': 1, '10.0.5.2:11211': 2, '10.0.5.3:11211': 4, '10.0.5.4:11211': 7, '10.0.5.5:11211': 3, '10.0.5.6:11211': 3, '10.0.5.7:11211': 9 },
  ];
  for (const servers of lists) {
    const h = ours(servers);
    const { keys } = keysFor(h);
    const out = execFileSync(bin, Object.entries(servers).map(([s, w]) => `${s}=${w}`), {
      input: keys.join('\n') + '\n',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
    }).toString();
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.length, keys.length);
    let mismatches = 0;
    let first = '';
    lines.forEach((line, i) => {
      const tab = line.lastIndexOf('\t');
      const theirs = line.slice(tab + 1);
      const mine = h.get(keys[i]!);
      if (theirs !== mine && mismatches++ === 0) first = `${keys[i]}: ours ${mine}, libmemcached ${theirs}`;
    });
    assert.equal(mismatches, 0, `${Object.keys(servers).length} servers: first mismatch ${first}`);
  }
});
