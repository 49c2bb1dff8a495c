import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../core/config.js';
import { DEFAULT_DATA_DIR, loadQueueConfig, queueConfig } from './config.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('expected a ConfigError');
}

test('defaults: one listener is enough; data under .archlab/queue in the working directory', () => {
  const c = queueConfig({ listeners: [{ port: 9092 }] });
  assert.equal(c.dataDir, resolve(process.cwd(), DEFAULT_DATA_DIR));
  assert.deepEqual(c.listeners, [{ host: '127.0.0.1', port: 9092 }]);
  assert.equal(c.gateway, undefined);
  assert.equal(c.admin, undefined);
  assert.equal(c.tls, undefined);
  assert.deepEqual(c.connections, {
    maxFrameBytes: 16 * 1024 * 1024,
    maxInFlight: 1024,
    maxSubscriptions: 256,
    maxWriteBufferBytes: 8 * 1024 * 1024,
    handshakeTimeoutMs: 5000,
    maxFetchWaitMs: 30_000,
    maxFetchBytesInFlight: 64 * 1024 * 1024,
  });
  assert.deepEqual(c.topics, { autoCreate: false, defaults: {}, declare: [], maxDiskBytes: undefined, maxTopics: 1000, cleanerIntervalMs: 30_000 });
  assert.equal(c.broker.fsync, 'always');
  assert.equal(c.broker.maxMessageBytes, 1024 * 1024);
  assert.equal(c.broker.maxDiskBytes, undefined);
  assert.equal(c.auth.token, undefined);
});

test('units come out with the unit in the name; "unlimited", "forever" and "none" are -1', () => {
  const c = queueConfig(
    `
listeners: [{ port: 0 }]
gateway: { port: 0, sseHeartbeat: 5s }
connections: { maxFrame: 1MiB, handshakeTimeout: 250ms }
topics:
  autoCreate: true
  maxDisk: 10GiB
  defaults: { partitions: 3, segmentSize: 16MiB, retentionAge: forever, retentionSize: unlimited }
  declare:
    - { name: orders, partitions: 6, retentionAge: 7d, cleanupPolicy: compact, maxMessage: 2MiB }
broker:
  fsync: interval
  fsyncInterval: 50ms
  defaults: { messageTtl: none, visibilityTimeout: 10s }
  queues: [{ name: email, maxLength: 10, overflow: drop-head, deadLetterQueue: dead, maxPriority: 5 }, { name: dead }]
  exchanges: [{ name: events, type: topic }]
  bindings: [{ queue: email, exchange: events, routingKey: order.* }]
`,
    'inline.yaml',
  );
  assert.equal(c.gateway?.sseHeartbeatMs, 5000);
  assert.equal(c.connections.maxFrameBytes, 1024 * 1024);
  assert.equal(c.connections.handshakeTimeoutMs, 250);
  assert.equal(c.topics.maxDiskBytes, 10 * 1024 ** 3);
  assert.deepEqual(c.topics.defaults, { partitions: 3, segmentBytes: 16 * 1024 * 1024, retentionMs: -1, retentionBytes: -1 });
  assert.deepEqual(c.topics.declare, [{ name: 'orders', config: { partitions: 6, retentionMs: 7 * 86_400_000, cleanupPolicy: 'compact', maxMessageBytes: 2 * 1024 * 1024 } }]);
  assert.equal(c.broker.fsyncIntervalMs, 50);
  assert.deepEqual(c.broker.defaults, { messageTtlMs: -1, visibilityTimeoutMs: 10_000 });
  assert.deepEqual(c.broker.queues[0], { name: 'email', config: { maxLength: 10, overflow: 'drop-head', deadLetterQueue: 'dead', maxPriority: 5 } });
  assert.deepEqual(c.broker.exchanges, [{ name: 'events', config: { type: 'topic', durable: true } }]);
  assert.deepEqual(c.broker.bindings, [{ queue: 'email', exchange: 'events', routingKey: 'order.*' }]);
});

test('bad input names the field and says what was expected', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ topics: { defaults: { retentionSize: 'lots' } } }, /topics\.defaults\.retentionSize: expected "unlimited" or invalid size "lots"/],
    [{ topics: { defaults: { retentionAge: 'a while' } } }, /topics\.defaults\.retentionAge: expected "forever" or invalid duration/],
    [{ topics: { defaults: { partitions: 0 } } }, /topics\.defaults\.partitions: expected number to be >=1/],
    [{ topics: { declare: [{ name: '__x' }] } }, /topics\.declare\[0\]\.name: names starting with "__" are reserved/],
    [{ topics: { declare: [{ name: 'a' }, { name: 'a' }] } }, /topics\.declare\[1\]\.name: topic "a" is declared twice/],
    [{ broker: { fsync: 'sometimes' } }, /broker\.fsync: expected one of "always"\|"interval"\|"never"/],
    [{ broker: { queues: [{ name: 'q', maxPriority: 11 }] } }, /broker\.queues\[0\]\.maxPriority: expected number to be <=10/],
    [{ broker: { queues: [{ name: 'q' }], bindings: [{ queue: 'q', exchange: 'nope' }] } }, /broker\.bindings\[0\]\.exchange: exchange "nope" is not in broker\.exchanges/],
    [{ broker: { exchanges: [{ name: 'x', type: 'broadcast' }] } }, /broker\.exchanges\[0\]\.type: /],
    [{ connections: { maxInFlight: 0 } }, /connections\.maxInFlight: expected number to be >=1/],
    [{ connections: { maxFrame: '1KiB' } }, /connections\.maxFrame: expected a size between 4KiB and 1GiB/],
    [{ auth: { token: 'short' } }, /auth\.token: a token shorter than 8 characters/],
    [{ gateway: { port: 0, maxSseClients: 0 } }, /gateway\.maxSseClients: /],
    [{ tls: { cert: 'c.pem' } }, /tls\.key: missing/],
    [{ brokr: {} }, /brokr: unknown key \(did you mean "broker"\?\)/],
  ];
  for (const [extra, want] of cases) {
    assert.match(problems(() => queueConfig({ listeners: [{ port: 0 }], ...extra } as never)).join('\n'), want);
  }
  assert.match(problems(() => queueConfig({ listeners: [] })).join(), /at least one listener/);
});

test('loadQueueConfig: paths in the file are relative to the file; a bad file names itself and the line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-queue-config-'));
  try {
    const file = join(dir, 'q.yaml');
    writeFileSync(file, 'listeners: [{ port: 0 }]\ndataDir: data\ntls: { cert: c.pem, key: k.pem }\n');
    const c = loadQueueConfig(file);
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.deepEqual(c.tls, { certFile: join(dir, 'c.pem'), keyFile: join(dir, 'k.pem'), minVersion: 'TLSv1.2' });
    writeFileSync(file, 'listeners: [{ port: 0 }]\nbroker:\n  fsync: maybe\n');
    try {
      loadQueueConfig(file);
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.file, file);
      assert.equal(err.issues[0]?.line, 3);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
