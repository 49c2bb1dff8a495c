import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import {
  ConfigError,
  formatConfigPath,
  loadConfig,
  parseConfig,
  zAdmin,
  zLimits,
  zListener,
  zLog,
  zMetrics,
  zTimeouts,
} from './config.js';
import { zDuration, zSize } from './units.js';

const zBackend = z.strictObject({
  url: z.string(),
  weight: z.number().int().min(1).default(1),
});

const schema = z.strictObject({
  listeners: z.array(zListener).min(1),
  pools: z.array(z.strictObject({ name: z.string(), backends: z.array(zBackend).min(1) })).default([]),
  admin: zAdmin.optional(),
  log: zLog,
  metrics: zMetrics,
  timeouts: zTimeouts,
  limits: zLimits,
  cache: z
    .strictObject({
      timeout: zDuration('250ms'),
      maxEntrySize: zSize('64KiB'),
    })
    .transform((c) => ({ timeoutMs: c.timeout, maxEntryBytes: c.maxEntrySize }))
    .prefault({}),
});

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'archlab-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function catchConfigError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

const VALID_YAML = `
listeners:
  - port: 8080
  - host: 0.0.0.0
    port: 8081
pools:
  - name: web
    backends:
      - url: http://127.0.0.1:9001
      - url: http://127.0.0.1:9002
        weight: 3
admin:
  port: 9900
  token: s3cret
log:
  level: debug
timeouts:
  connect: 2s
  request: 1m
limits:
  maxBody: 64MiB
cache:
  timeout: 1.5s
  maxEntrySize: 10kB
`;

describe('loadConfig', () => {
  test('valid YAML: defaults filled, durations and sizes become numbers with units in their names', () => {
    const cfg = loadConfig(write('ok.yaml', VALID_YAML), schema);
    assert.deepEqual(cfg.listeners, [
      { host: '127.0.0.1', port: 8080 },
      { host: '0.0.0.0', port: 8081 },
    ]);
    assert.equal(cfg.pools[0]?.backends[0]?.weight, 1);
    assert.equal(cfg.pools[0]?.backends[1]?.weight, 3);
    assert.deepEqual(cfg.admin, { host: '127.0.0.1', port: 9900, token: 's3cret' });
    assert.deepEqual(cfg.log, { level: 'debug' });
    assert.deepEqual(cfg.metrics, { defaultMetrics: true });
    assert.deepEqual(cfg.timeouts, {
      connectMs: 2000,
      headersMs: 10_000,
      requestMs: 60_000,
      responseMs: 30_000,
      keepAliveMs: 5000,
      idleMs: 60_000,
      drainMs: 10_000,
    });
    assert.deepEqual(cfg.limits, { maxBodyBytes: 64 * 1024 * 1024, maxHeaderBytes: 16 * 1024, maxConnections: 10_000 });
    assert.deepEqual(cfg.cache, { timeoutMs: 1500, maxEntryBytes: 10_000 });
  });

  test('valid JSON (including a BOM), and .yml', () => {
    const json = JSON.stringify({ listeners: [{ port: 1 }], timeouts: { drain: '500ms' }, limits: { maxBody: 1024 } });
    const cfg = loadConfig(write('ok.json', `\ufeff${json}`), schema);
    assert.equal(cfg.listeners[0]?.port, 1);
    assert.equal(cfg.timeouts.drainMs, 500);
    assert.equal(cfg.limits.maxBodyBytes, 1024);
    assert.equal(cfg.log.level, 'info');
    const yml = loadConfig(write('ok.yml', 'listeners: [{ port: 2 }]\n'), schema);
    assert.equal(yml.listeners[0]?.port, 2);
  });

  test('unknown extension is read as YAML (which also takes JSON)', () => {
    assert.equal(loadConfig(write('conf.txt', '{"listeners": [{"port": 3}]}'), schema).listeners[0]?.port, 3);
    assert.equal(loadConfig(write('conf', 'listeners:\n  - port: 4\n'), schema).listeners[0]?.port, 4);
  });

  test('two bad fields: the message names the file, both paths, expected and received', () => {
    const file = write(
      'bad.yaml',
      `listeners:
  - port: 8080
pools:
  - name: web
    backends:
      - url: http://a
      - url: http://b
        weight: heavy
timeouts:
  connect: 5 sec
`,
    );
    const err = catchConfigError(() => loadConfig(file, schema));
    assert.equal(err.code, 'ARCHLAB_CONFIG_INVALID');
    assert.equal(err.retryable, false);
    assert.equal(err.file, file);
    assert.ok(err.message.includes(file), err.message);
    assert.ok(err.message.includes('pools[0].backends[1].weight: expected number, received string'), err.message);
    assert.ok(err.message.includes('timeouts.connect: invalid duration "5 sec"'), err.message);
    assert.match(err.message, /2 problems/);
    assert.deepEqual(
      err.issues.map((i) => i.path),
      ['pools[0].backends[1].weight', 'timeouts.connect'],
    );
    // Located in the file: line 8 is `weight: heavy`, value at column 17.
    assert.equal(err.issues[0]?.line, 8);
    assert.equal(err.issues[0]?.column, 17);
    assert.match(err.message, /line 8, column 17/);
    assert.equal(err.issues[1]?.line, 10);
  });

  test('missing field and bad enum: says what was expected and what was found', () => {
    const err = catchConfigError(() => parseConfig('log: { level: loud }\n', schema, 'inline.yaml'));
    const byPath = new Map(err.issues.map((i) => [i.path, i.message]));
    assert.equal(byPath.get('listeners'), 'missing (expected array)');
    assert.equal(byPath.get('log.level'), 'expected one of "fatal"|"error"|"warn"|"info"|"debug"|"trace"|"silent", received "loud"');
  });

  test('out-of-range value reports the received value', () => {
    const err = catchConfigError(() => parseConfig('listeners: [{ port: 70000 }]', schema, 'x.yaml'));
    assert.equal(err.issues.length, 1);
    assert.equal(err.issues[0]?.path, 'listeners[0].port');
    assert.match(err.issues[0]!.message, /65535.*received 70000/);
  });

  test('YAML syntax error: ARCHLAB_CONFIG_SYNTAX with the line number', () => {
    const file = write('syntax.yaml', 'listeners:\n  - port: 1\n  bad: [unclosed\n');
    const err = catchConfigError(() => loadConfig(file, schema));
    assert.equal(err.code, 'ARCHLAB_CONFIG_SYNTAX');
    assert.ok(err.message.includes(file));
    assert.match(err.message, /line 3\b/);
  });

  test('JSON syntax error: line and column computed from the position', () => {
    const file = write('syntax.json', '{\n  "listeners": [\n    { "port": 1, }\n  ]\n}\n');
    const err = catchConfigError(() => loadConfig(file, schema));
    assert.equal(err.code, 'ARCHLAB_CONFIG_SYNTAX');
    assert.ok(err.message.includes(file));
    assert.match(err.message, /line 3, column \d+/);
    assert.equal(err.issues[0]?.line, 3);
  });

  test('duplicate YAML keys are a syntax error, not last-one-wins', () => {
    const err = catchConfigError(() => parseConfig('listeners: []\nlisteners: []\n', schema, 'dup.yaml'));
    assert.equal(err.code, 'ARCHLAB_CONFIG_SYNTAX');
    assert.match(err.message, /line 2/);
  });

  test('missing file and directory: ARCHLAB_CONFIG_UNREADABLE naming the file', () => {
    const missing = join(dir, 'nope.yaml');
    const err = catchConfigError(() => loadConfig(missing, schema));
    assert.equal(err.code, 'ARCHLAB_CONFIG_UNREADABLE');
    assert.ok(err.message.includes(missing));
    assert.match(err.message, /ENOENT/);
    const sub = join(dir, 'adir.yaml');
    mkdirSync(sub);
    assert.equal(catchConfigError(() => loadConfig(sub, schema)).code, 'ARCHLAB_CONFIG_UNREADABLE');
  });

  test('unknown keys are errors, at the top level and nested, with a suggestion for a typo', () => {
    const err = catchConfigError(() =>
      parseConfig('listeners: [{ port: 1, hots: x }]\ntimeout:\n  connect: 1s\n', schema, 'typo.yaml'),
    );
    assert.equal(err.code, 'ARCHLAB_CONFIG_INVALID');
    const byPath = new Map(err.issues.map((i) => [i.path, i.message]));
    assert.equal(byPath.get('timeout'), 'unknown key (did you mean "timeouts"?)');
    assert.equal(byPath.get('listeners[0].hots'), 'unknown key (did you mean "host"?)');
    assert.equal(err.issues.find((i) => i.path === 'timeout')?.line, 2);
  });

  test('an empty YAML file is an empty mapping', () => {
    const s = z.strictObject({ log: zLog, timeouts: zTimeouts });
    const cfg = loadConfig(write('empty.yaml', ''), s);
    assert.equal(cfg.log.level, 'info');
    assert.equal(cfg.timeouts.connectMs, 5000);
  });

  test('shared pieces enforce their own rules', () => {
    const s = z.strictObject({ admin: zAdmin, timeouts: zTimeouts });
    const err = catchConfigError(() =>
      parseConfig('admin: { host: 0.0.0.0, port: 1 }\ntimeouts: { headers: 1m, request: 10s }\n', s, 'rules.yaml'),
    );
    const paths = err.issues.map((i) => i.path).sort();
    assert.deepEqual(paths, ['admin.token', 'timeouts.headers']);
    assert.match(err.message, /non-loopback host \(0\.0\.0\.0\) needs a token/);
    const ok = parseConfig('admin: { host: 0.0.0.0, port: 1, token: t }\n', s, 'ok.yaml');
    assert.equal(ok.admin.token, 't');
  });

  test('parseConfig picks JSON by the source name and is strict about it', () => {
    assert.equal(parseConfig('{"listeners":[{"port":5}]}', schema, 'mem.json').listeners[0]?.port, 5);
    // Not JSON, though it would be fine YAML.
    assert.equal(catchConfigError(() => parseConfig('listeners: []', schema, 'mem.json')).code, 'ARCHLAB_CONFIG_SYNTAX');
  });
});

describe('formatConfigPath', () => {
  test('dots for names, brackets for indexes and odd keys', () => {
    assert.equal(formatConfigPath(['pools', 0, 'backends', 1, 'weight']), 'pools[0].backends[1].weight');
    assert.equal(formatConfigPath([]), '(root)');
    assert.equal(formatConfigPath(['headers', 'x y']), 'headers["x y"]');
    assert.equal(formatConfigPath([0]), '[0]');
  });
});
