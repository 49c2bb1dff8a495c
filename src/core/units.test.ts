import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { isArchlabError } from './errors.js';
import { formatDuration, formatSize, parseDuration, parseSize, zDuration, zSize } from './units.js';

describe('parseDuration', () => {
  const good: Array<[string | number, number]> = [
    ['250ms', 250],
    ['5s', 5000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['1.1s', 1100],
    ['.5s', 500],
    ['0', 0],
    ['0s', 0],
    ['1500', 1500],
    ['1m30s', 90_000],
    ['1h 30m', 5_400_000],
    [' 2s ', 2000],
    [0, 0],
    [42, 42],
    [2.5, 2.5],
  ];
  for (const [input, ms] of good) {
    test(`${JSON.stringify(input)} -> ${ms}ms`, () => assert.equal(parseDuration(input), ms));
  }

  const bad: Array<string | number> = ['', '5 sec', '5S', '5min', 'ms', '-5s', '-1', '1.2.3s', '5s5', 'abc', -1, NaN, Infinity];
  for (const input of bad) {
    test(`rejects ${String(typeof input === 'string' ? JSON.stringify(input) : input)}`, () => {
      assert.throws(
        () => parseDuration(input),
        (err: unknown) => {
          assert.ok(isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
          assert.match(err.message, /invalid duration/);
          assert.match(err.message, /ms, s, m, h or d/, 'names what is accepted');
          if (typeof input === 'string' && input !== '') assert.ok(err.message.includes(JSON.stringify(input)), err.message);
          return true;
        },
      );
    });
  }

  test('a non-string non-number is refused, not coerced', () => {
    assert.throws(() => parseDuration(true as unknown as string), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  });
});

describe('parseSize', () => {
  const good: Array<[string | number, number]> = [
    ['512', 512],
    ['10B', 10],
    ['10kB', 10_000],
    ['10KB', 10_000],
    ['64KiB', 65_536],
    ['64MiB', 64 * 1024 * 1024],
    ['1GiB', 1024 ** 3],
    ['2MB', 2_000_000],
    ['1.1MB', 1_100_000],
    ['1.5KiB', 1536],
    ['1TiB', 1024 ** 4],
    ['0', 0],
    ['8 KiB', 8192],
    [4096, 4096],
  ];
  for (const [input, bytes] of good) {
    test(`${JSON.stringify(input)} -> ${bytes}B`, () => assert.equal(parseSize(input), bytes));
  }

  const bad: Array<string | number> = ['', '10Mb', '10mib', '10 bytes', '-1KiB', '1.5B', '1.5', 'KiB', '10XB', -1, 1.5, Infinity, '99999999PiB'];
  for (const input of bad) {
    test(`rejects ${typeof input === 'string' ? JSON.stringify(input) : String(input)}`, () => {
      assert.throws(
        () => parseSize(input),
        (err: unknown) => {
          assert.ok(isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
          assert.match(err.message, /invalid size/);
          assert.match(err.message, /KiB/, 'names what is accepted');
          return true;
        },
      );
    });
  }
});

describe('format helpers', () => {
  test('formatDuration round-trips through parseDuration', () => {
    for (const ms of [0, 250, 1500, 90_000, 5_400_000, 3_600_000]) {
      assert.equal(parseDuration(formatDuration(ms)), ms, formatDuration(ms));
    }
    assert.equal(formatDuration(1500), '1.5s');
  });
  test('formatSize uses the largest exact binary unit', () => {
    assert.equal(formatSize(65_536), '64KiB');
    assert.equal(formatSize(1500), '1500B');
    assert.equal(formatSize(3 * 1024 ** 3), '3GiB');
  });
});

describe('zDuration / zSize', () => {
  const schema = z.strictObject({
    timeoutMs: zDuration('5s'),
    intervalMs: zDuration(),
    maxBytes: zSize('64KiB'),
    bounded: zDuration('1s', { minMs: 10, maxMs: 60_000 }),
  });

  test('strings and numbers become numbers; defaults are parsed', () => {
    const out = schema.parse({ intervalMs: '250ms' });
    assert.deepEqual(out, { timeoutMs: 5000, intervalMs: 250, maxBytes: 65_536, bounded: 1000 });
    const out2 = schema.parse({ timeoutMs: 100, intervalMs: '1m', maxBytes: '1MiB' });
    assert.deepEqual(out2, { timeoutMs: 100, intervalMs: 60_000, maxBytes: 1024 * 1024, bounded: 1000 });
  });

  test('bad input is a zod issue with a path, not a throw', () => {
    const r = schema.safeParse({ timeoutMs: '5 sec', intervalMs: true, maxBytes: '10Mb' });
    assert.equal(r.success, false);
    const byPath = new Map(r.error!.issues.map((i) => [i.path.join('.'), i.message]));
    assert.match(byPath.get('timeoutMs') ?? '', /invalid duration "5 sec"/);
    assert.match(byPath.get('intervalMs') ?? '', /expected a duration .*received boolean/);
    assert.match(byPath.get('maxBytes') ?? '', /invalid size "10Mb"/);
    assert.equal(byPath.size, 3);
  });

  test('bounds are checked and named in the issue', () => {
    const r = schema.safeParse({ intervalMs: 1, bounded: '2m' });
    assert.equal(r.success, false);
    assert.match(r.error!.issues[0]!.message, /between 10ms and 1m/);
    assert.equal(schema.parse({ intervalMs: 1, bounded: '30s' }).bounded, 30_000);
  });

  test('a bad default is a programming error, thrown at construction', () => {
    assert.throws(() => zDuration('5 seconds'), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
    assert.throws(() => zSize('1MiB', { maxBytes: 1024 }), (e: unknown) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  });
});
