import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../core/config.js';
import { cdnConfig, loadCdnConfig } from './config.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

test('defaults: demo origin, shield on, one edge per region, zero latency, units in names', () => {
  const c = cdnConfig({ listeners: [{ port: 0 }], regions: [{ name: 'eu' }, { name: 'us', edges: 2 }] });
  assert.equal(c.origin.kind, 'demo');
  assert.ok(c.origin.kind === 'demo' && c.origin.demo.objects.length >= 5, 'the default demo site');
  assert.ok(c.origin.kind === 'demo' && c.origin.demo.objects.every((o) => typeof o.bytes === 'number'));
  assert.equal(c.origin.kind === 'demo' && c.origin.demo.slowMs, 2000);
  assert.equal(c.shield.enabled, true);
  assert.equal(c.shield.name, 'shield');
  assert.equal(c.shield.storage.memoryBytes, 256 * 1024 * 1024);
  assert.deepEqual(
    c.regions.map((r) => [r.name, r.edges.map((e) => e.name), r.storage.memoryBytes]),
    [
      ['eu', ['eu-1'], 64 * 1024 * 1024],
      ['us', ['us-1', 'us-2'], 64 * 1024 * 1024],
    ],
  );
  assert.deepEqual(c.latency, { clientsMs: { eu: { eu: 0, us: 0 }, us: { eu: 0, us: 0 } }, shieldMs: { eu: 0, us: 0 }, originMs: 0 });
  assert.equal(c.routing.regionHeader, 'x-client-region');
  assert.equal(c.routing.defaultRegion, 'eu');
  assert.equal(c.routing.hashing, 'rendezvous');
  assert.deepEqual(c.cache, { query: 'keep', cacheSetCookie: false, xCache: true, maxObjectBytes: 16 * 1024 * 1024 });
  assert.equal(c.purge.timeoutMs, 2000);
  assert.equal(c.purge.token, undefined);
  assert.equal(c.limits.maxCollapsedWaiters, 1000);
  assert.equal(c.timeouts.connectMs, 5000);
});

test('a full file: matrix with a client region that has no edges, named edges with ports, disk dirs relative to the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-cdn-config-'));
  try {
    const file = join(dir, 'cdn.yaml');
    writeFileSync(
      file,
      [
        'listeners: [{ port: 0 }]',
        'origin: { url: "http://127.0.0.1:9000/" }',
        'shield: { enabled: false }',
        'regions:',
        '  - { name: eu, edges: [eu-a, { name: eu-b, port: 0 }], storage: { memory: 1MiB, disk: { dir: cache/eu, max: 8MiB } } }',
        '  - { name: us }',
        'latency:',
        '  clients:',
        '    eu: { eu: 10ms, us: 90ms }',
        '    us: { eu: 90ms, us: 10ms }',
        '    af: { eu: 60ms, us: 1.5s }',
        '  shield: { eu: 20ms }',
        '  origin: 30ms',
        'routing:',
        '  regionHeader: X-Geo',
        '  addressMap: [{ cidr: 10.0.0.0/8, region: af }, { cidr: "fd00::/8", region: us }]',
        '  defaultRegion: us',
        '  host: CDN.Example.com',
        'cache: { query: { keep: [v, lang] }, maxObject: 1MiB }',
        'purge: { token: a-long-token, timeout: 250ms }',
        '',
      ].join('\n'),
    );
    const c = loadCdnConfig(file);
    assert.deepEqual(c.origin, { kind: 'url', url: 'http://127.0.0.1:9000' });
    assert.equal(c.shield.enabled, false);
    assert.deepEqual(c.regions[0]!.edges, [
      { name: 'eu-a', port: 0 },
      { name: 'eu-b', port: 0 },
    ]);
    assert.deepEqual(c.regions[0]!.storage, { memoryBytes: 1024 * 1024, disk: { dir: join(dir, 'cache/eu'), maxBytes: 8 * 1024 * 1024 } });
    assert.deepEqual(c.latency.clientsMs.af, { eu: 60, us: 1500 });
    assert.deepEqual(c.latency.shieldMs, { eu: 20, us: 0 }, 'a region missing from latency.shield is 0');
    assert.equal(c.latency.originMs, 30);
    assert.equal(c.routing.regionHeader, 'x-geo', 'header names are matched lower case');
    assert.equal(c.routing.host, 'cdn.example.com');
    assert.deepEqual(c.cache.query, { keep: ['v', 'lang'] });
    assert.equal(c.purge.timeoutMs, 250);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('errors name the file, the path of each bad field and what was expected', () => {
  const yaml = [
    'listeners: [{ port: 0 }]',
    'origin: { url: "ftp://x", demo: {} }',
    'regions:',
    '  - { name: eu, edges: 0 }',
    '  - { name: us, edges: [us-1, "bad name"] }',
    '  - { name: eu }',
    'latency:',
    '  clients:',
    '    eu: { eu: 10ms, us: fast }',
    '    us: { eu: 90ms }',
    '  shield: { mars: 10ms }',
    'routing:',
    '  addressMap: [{ cidr: 10.0.0.0/33, region: eu }, { cidr: 10.0.0.0/8, region: af }]',
    '  defaultRegion: moon',
    'cache: { query: shuffle }',
    'purge: { token: short, timeot: 1s }',
    '',
  ].join('\n');
  const err = configError(() => cdnConfig(yaml, 'cdn.yaml'));
  assert.equal(err.code, 'ARCHLAB_CONFIG_INVALID');
  assert.equal(err.file, 'cdn.yaml');
  const byPath = new Map(err.issues.map((i) => [i.path, i.message]));
  const expect = (path: string, re: RegExp): void => {
    const m = byPath.get(path);
    assert.ok(m !== undefined, `no issue at ${path}; issues: ${JSON.stringify(err.issues)}`);
    assert.match(m, re, path);
  };
  expect('origin.url', /http:\/\/ or https:\/\/ URL/);
  expect('regions[0].edges', /count of edge nodes 1\.\.64/);
  expect('regions[1].edges[1]', /letters, digits/);
  expect('latency.clients.eu.us', /invalid duration "fast"/);
  expect('cache.query', /"keep", "sort", "ignore"/);
  expect('purge.token', /at least 8 characters/);
  expect('purge.timeot', /unknown key \(did you mean "timeout"\?\)/);
  expect('routing.addressMap[0].cidr', /IPv4 or IPv6 network/);
  // The first pass stops at field errors; the cross-field rules run on a file whose fields are each valid.
  const cross = [
    'listeners: [{ port: 0 }]',
    'origin: { url: "http://127.0.0.1:1", demo: {} }',
    'regions:',
    '  - { name: eu, edges: [x] }',
    '  - { name: us, edges: [x] }',
    '  - { name: eu }',
    'latency:',
    '  clients:',
    '    eu: { eu: 10ms, us: 90ms }',
    '    us: { eu: 90ms, mars: 1ms }',
    '  shield: { mars: 10ms }',
    'routing:',
    '  addressMap: [{ cidr: 10.0.0.0/8, region: af }]',
    '  defaultRegion: moon',
    '',
  ].join('\n');
  const err2 = configError(() => cdnConfig(cross, 'cross.yaml'));
  const by2 = new Map(err2.issues.map((i) => [i.path, i]));
  const expect2 = (path: string, re: RegExp): void => {
    const i = by2.get(path);
    assert.ok(i !== undefined, `no issue at ${path}; issues: ${JSON.stringify(err2.issues)}`);
    assert.match(i.message, re, path);
  };
  expect2('origin', /exactly one of url or demo/);
  expect2('regions[2].name', /duplicate region "eu"/);
  expect2('regions[1].edges[0]', /node name "x" is already used by regions\[0\]\.edges\[0\]/);
  expect2('latency.clients.us.us', /missing: the round trip from clients in "us" to edge region "us"/);
  expect2('latency.clients.us.mars', /unknown edge region "mars"/);
  expect2('latency.shield.mars', /unknown edge region "mars"/);
  expect2('routing.addressMap[0].region', /unknown client region "af" \(client regions: eu, us\)/);
  expect2('routing.defaultRegion', /unknown client region "moon"/);
  assert.equal(by2.get('routing.defaultRegion')!.line, 14, 'issues carry the line of the field');
  assert.match(err2.message, /invalid config in cross\.yaml/);
});

test('listeners and regions are required; an edge name may not take the shield\'s', () => {
  const err = configError(() => cdnConfig({} as never, 'empty'));
  const paths = err.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, ['listeners', 'regions']);
  const clash = configError(() => cdnConfig({ listeners: [{ port: 0 }], regions: [{ name: 'eu', edges: ['shield'] }] }));
  assert.match(clash.issues[0]!.message, /node name "shield" is already used by shield\.name/);
  // With the shield off its name is free.
  assert.equal(cdnConfig({ listeners: [{ port: 0 }], shield: { enabled: false }, regions: [{ name: 'eu', edges: ['shield'] }] }).regions[0]!.edges[0]!.name, 'shield');
});
