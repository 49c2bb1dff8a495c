import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../core/clock.js';
import { isArchlabError } from '../core/errors.js';
import { Authenticator, hashPassword, parseBasic, parsePasswordHash, parseUsers, userLine } from './auth.js';

const FAST = { N: 1024, r: 8, p: 1 };
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('hashPassword: scrypt$N$r$p$salt$hash, fresh salt each time, parses back', async () => {
  const a = await hashPassword('s3cret', FAST);
  const b = await hashPassword('s3cret', FAST);
  assert.match(a, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
  assert.notEqual(a, b, 'a random salt per hash');
  const h = parsePasswordHash(a);
  assert.equal(h.N, 1024);
  assert.equal(h.salt.length, 16);
  assert.equal(h.hash.length, 32);
  await assert.rejects(userLine('a:b', 'x', FAST), (e) => isArchlabError(e, 'ARCHLAB_PROXY_PASSWORD_FORMAT'));
});

test('parsePasswordHash refuses weak, huge or malformed parameters', () => {
  const salt = Buffer.alloc(16).toString('base64');
  const hash = Buffer.alloc(32).toString('base64');
  for (const bad of [
    `scrypt$1000$8$1$${salt}$${hash}`,
    `scrypt$512$8$1$${salt}$${hash}`,
    `scrypt$2097152$8$1$${salt}$${hash}`,
    `scrypt$1048576$8$1$${salt}$${hash}`,
    `scrypt$16384$0$1$${salt}$${hash}`,
    `scrypt$16384$8$17$${salt}$${hash}`,
    `scrypt$16384$8$1$${salt}`,
    `bcrypt$16384$8$1$${salt}$${hash}`,
    `scrypt$16384$8$1$not base64$${hash}`,
    `scrypt$16384$8$1$${salt}$${Buffer.alloc(8).toString('base64')}`,
  ]) {
    assert.throws(() => parsePasswordHash(bad), (e) => isArchlabError(e, 'ARCHLAB_PROXY_PASSWORD_FORMAT'), bad);
  }
});

test('parseUsers: comments and blanks skipped; every bad line named with its number; duplicates refused', async () => {
  const line = await userLine('alice', 'pw', FAST);
  const users = parseUsers(`# users\n\n${line}\n`, 'users.txt');
  assert.deepEqual([...users.keys()], ['alice']);
  assert.throws(
    () => parseUsers(`${line}\nbob\n${line}\ncarol:scrypt$1$1$1$x$y\n`, 'users.txt'),
    (e: unknown) => {
      assert.ok(isArchlabError(e, 'ARCHLAB_CONFIG_INVALID'));
      assert.match(e.message, /users\.txt/);
      assert.match(e.message, /line 2: expected user:scrypt/);
      assert.match(e.message, /line 3: duplicate user "alice"/);
      assert.match(e.message, /line 4: user "carol": scrypt N must be/);
      return true;
    },
  );
});

test('parseBasic', () => {
  assert.deepEqual(parseBasic(basic('alice', 'p:w')), { user: 'alice', password: Buffer.from('p:w') });
  assert.deepEqual(parseBasic(`basic   ${Buffer.from('a:').toString('base64')}`), { user: 'a', password: Buffer.alloc(0) });
  for (const bad of ['Bearer abc', 'Basic', 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`, `Basic ${Buffer.from(':pw').toString('base64')}`, `Basic ${'A'.repeat(2000)}`]) {
    assert.equal(parseBasic(bad), undefined, bad);
  }
});

test('Authenticator: right password passes; wrong password and unknown user fail the same way, both running scrypt', async () => {
  const users = parseUsers(await userLine('alice', 'wonderland', FAST));
  const clock = new ManualClock();
  const auth = new Authenticator(users, { clock, cacheTtlMs: 60_000 });
  assert.deepEqual(await auth.verify(basic('alice', 'wonderland')), { ok: true, user: 'alice', cached: false });
  assert.equal(auth.scryptRuns, 1);
  const wrong = await auth.verify(basic('alice', 'nope'));
  const unknown = await auth.verify(basic('mallory', 'wonderland'));
  assert.deepEqual(wrong, { ok: false, reason: 'invalid' });
  assert.deepEqual(unknown, wrong, 'an unknown user and a wrong password are indistinguishable');
  assert.equal(auth.scryptRuns, 3, 'an unknown user costs a scrypt run too');
  assert.deepEqual(await auth.verify(undefined), { ok: false, reason: 'missing' });
  assert.deepEqual(await auth.verify('Basic ***'), { ok: false, reason: 'malformed' });
});

test('Authenticator: verified credentials are cached for cacheTtlMs, in a bounded LRU; concurrent checks share one scrypt', async () => {
  const users = parseUsers([await userLine('a', '1', FAST), await userLine('b', '2', FAST), await userLine('c', '3', FAST)].join('\n'));
  const clock = new ManualClock();
  const auth = new Authenticator(users, { clock, cacheTtlMs: 1000, cacheSize: 2 });
  const results = await Promise.all([auth.verify(basic('a', '1')), auth.verify(basic('a', '1')), auth.verify(basic('a', '1'))]);
  assert.ok(results.every((r) => r.ok));
  assert.equal(auth.scryptRuns, 1, 'single flight');
  assert.deepEqual(await auth.verify(basic('a', '1')), { ok: true, user: 'a', cached: true });
  assert.equal(auth.scryptRuns, 1);
  clock.advance(1001);
  assert.deepEqual(await auth.verify(basic('a', '1')), { ok: true, user: 'a', cached: false }, 'expired');
  assert.equal(auth.scryptRuns, 2);
  await auth.verify(basic('b', '2'));
  await auth.verify(basic('c', '3'));
  assert.equal(auth.scryptRuns, 4);
  await auth.verify(basic('a', '1'));
  assert.equal(auth.scryptRuns, 5, 'a was evicted: the cache holds 2');
  // A wrong password is never cached as anything.
  await auth.verify(basic('a', 'x'));
  await auth.verify(basic('a', 'x'));
  assert.equal(auth.scryptRuns, 7);
});

test('Authenticator: more concurrent checks than maxPending answer busy', async () => {
  const users = parseUsers(await userLine('a', '1', FAST));
  const auth = new Authenticator(users, { clock: new ManualClock(), maxPending: 2 });
  const rs = await Promise.all([auth.verify(basic('a', 'x1')), auth.verify(basic('a', 'x2')), auth.verify(basic('a', 'x3'))]);
  assert.deepEqual(
    rs.map((r) => (r.ok ? 'ok' : r.reason)),
    ['invalid', 'invalid', 'busy'],
  );
});
