import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError, isArchlabError } from '../core/index.js';
import { defaultTopology, loadTopology, parseTopology, REFERENCE_TOPOLOGY_FILE, type TopologyInput } from './topology.js';

/** Parses `input` and returns the ConfigError it must throw. */
function invalid(input: TopologyInput | string): ConfigError {
  try {
    parseTopology(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(isArchlabError(err, 'ARCHLAB_CONFIG_INVALID'), err.message);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(input)} to be refused`);
}

/** The one issue at `path` (and no issue elsewhere), its message matching `pattern`. */
function refuses(input: TopologyInput | string, path: string, pattern: RegExp): void {
  const err = invalid(input);
  assert.deepEqual(
    err.issues.map((i) => i.path),
    [path],
    err.message,
  );
  assert.match(err.issues[0]!.message, pattern);
  assert.ok(err.message.includes(path), err.message);
}

test('examples/reference.yaml parses into the reference architecture with embedded engines', () => {
  const t = loadTopology(REFERENCE_TOPOLOGY_FILE);
  assert.equal(t.name, 'reference');
  assert.equal(t.app.instances, 3);
  assert.deepEqual(t.cdn.regions.map((r) => r.name), ['eu', 'us']);
  assert.equal(t.cdn.shield.enabled, true);
  assert.equal(t.balancer.algorithm, 'round-robin');
  assert.deepEqual(t.cache, { strategy: 'cache-aside', engine: 'memory', ttlMs: 30_000, maxEntries: 10_000 });
  assert.equal(t.database.engine, 'sqlite');
  assert.equal(t.queue.engine, 'embedded');
  assert.equal(t.queue.worker.workMs, 2);
  assert.equal(t.clients.timeoutMs, 5000);
  assert.equal(t.app.maxBodyBytes, 16 * 1024);
  assert.deepEqual(t.store, { engine: 'app-database' });
  assert.deepEqual(t.payments, { port: 0, latencyMs: 5, timeoutMs: 2000 });
  assert.equal(t.proxy.enabled, true);
  // Paths: dataDir defaults to the working directory, the SQLite file lives under it.
  assert.equal(t.dataDir, resolve('.archlab/up'));
  assert.deepEqual(t.database, { engine: 'sqlite', file: resolve('.archlab/up/catalogue.db') });
  // Every port free-picked.
  for (const p of [t.cdn.port, t.balancer.port, t.balancer.adminPort, t.queue.port, t.proxy.port, t.payments.port, t.dashboard.port]) assert.equal(p, 0);
});

test('defaultTopology() is the example file, and the example spells out the schema defaults (an empty file is the same topology)', () => {
  assert.deepEqual(defaultTopology(), loadTopology(REFERENCE_TOPOLOGY_FILE));
  assert.deepEqual(parseTopology(''), defaultTopology());
  assert.deepEqual(parseTopology({}), defaultTopology());
});

test('loading starts nothing: no handle opened, no file or directory created', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-up-topology-'));
  try {
    const file = join(dir, 'topology.yaml');
    writeFileSync(file, 'dataDir: data\ncache: { engine: redis, url: "redis://127.0.0.1:1" }\ndatabase: { engine: postgres, url: "postgres://x@127.0.0.1:1/db" }\nqueue: { engine: nats, url: "nats://127.0.0.1:1" }\n');
    const before = process.getActiveResourcesInfo().length;
    const t = loadTopology(file);
    assert.equal(t.dataDir, join(dir, 'data'), 'dataDir given in the file is relative to the file');
    assert.equal(existsSync(t.dataDir), false);
    assert.equal(process.getActiveResourcesInfo().length, before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('engines swap with their URLs', () => {
  const t = parseTopology({
    cache: { engine: 'redis', url: 'redis://127.0.0.1:6379', strategy: 'write-back' },
    database: { engine: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' },
    queue: { engine: 'rabbitmq', url: 'amqp://127.0.0.1:5672' },
    store: { engine: 'app-database' },
  });
  assert.equal(t.cache.engine, 'redis');
  assert.equal(t.cache.url, 'redis://127.0.0.1:6379');
  assert.deepEqual(t.database, { engine: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' });
  assert.equal(t.queue.url, 'amqp://127.0.0.1:5672');
  const mem = parseTopology({ app: { instances: 1 }, database: { file: ':memory:' } });
  assert.deepEqual(mem.database, { engine: 'sqlite', file: ':memory:' });
  const archlab = parseTopology({ queue: { engine: 'archlab', port: 7400 }, app: { instances: 2, ports: [7401, 7402] } });
  assert.equal(archlab.queue.port, 7400);
  assert.deepEqual(archlab.app.ports, [7401, 7402]);
});

test('each broken field is named, with what was expected', () => {
  refuses({ cache: { engine: 'mongo' as 'memory' } }, 'cache.engine', /^expected one of memory, redis, received "mongo"$/);
  refuses({ cache: { strategy: 'write-around' as 'write-back' } }, 'cache.strategy', /expected one of cache-aside, read-through, write-through, write-back/);
  refuses({ database: { engine: 'oracle' as 'sqlite' } }, 'database.engine', /expected one of sqlite, postgres/);
  refuses({ queue: { engine: 'kafka' as 'nats' } }, 'queue.engine', /expected one of embedded, archlab, rabbitmq, nats/);
  refuses({ balancer: { algorithm: 'fastest' as 'random' } }, 'balancer.algorithm', /expected one of round-robin,.*least-connections/);
  refuses({ app: { instances: 0 } }, 'app.instances', /1\.\.16/);
  refuses({ app: { instances: 17 } }, 'app.instances', /1\.\.16/);
  refuses({ app: { instances: 2.5 } }, 'app.instances', /expected int/);
  refuses({ app: { data: { products: 0 } } }, 'app.data.products', />=\s*1/);
  refuses({ clients: { rate: -1 } }, 'clients.rate', />=\s*0/);
  refuses({ clients: { mix: { reads: 0, writes: 0, searches: 0, static: 0 } } }, 'clients.mix', /at least one/);
  refuses({ clients: { timeout: 'soon' as unknown as string } }, 'clients.timeout', /duration/);
  refuses({ cache: { ttl: '0s' } }, 'cache.ttl', /./);
  refuses({ cdn: { regions: [] } }, 'cdn.regions', /at least one region/);
  refuses({ cdn: { regions: [{ name: 'eu', clients: 0 }] } }, 'cdn.regions', /at least one region must have clients > 0/);
  refuses({ cdn: { regions: [{ name: 'eu' }, { name: 'eu' }] } }, 'cdn.regions[1].name', /duplicate region "eu"/);
  refuses({ cdn: { regions: [{ name: 'eu west' }] } }, 'cdn.regions[0].name', /letters, digits/);
  refuses({ store: { engine: 'raft' as 'app-database' } }, 'store.engine', /app-database.*not available yet/);
  refuses({ payments: { latency: '31s' } }, 'payments.latency', /./);
  refuses({ payments: { timeout: '0ms' } }, 'payments.timeout', /./);
  refuses({ payments: { latency: 'slow' } }, 'payments.latency', /duration/);
  refuses('cache:\n  engin: redis\n', 'cache.engin', /unknown key \(did you mean "engine"\?\)/);
  refuses('dashbord: {}\n', 'dashbord', /unknown key \(did you mean "dashboard"\?\)/);
});

test('cross-field checks: engines need their URL, and only theirs', () => {
  refuses({ cache: { engine: 'redis' } }, 'cache.url', /missing: engine redis needs a url/);
  refuses({ cache: { url: 'redis://127.0.0.1:6379' } }, 'cache.url', /only for engine redis/);
  refuses({ cache: { engine: 'redis', url: 'http://127.0.0.1:6379' } }, 'cache.url', /expected a redis:\/\/ or rediss:\/\/ URL/);
  refuses({ database: { engine: 'postgres' } }, 'database.url', /missing: engine postgres needs a url/);
  refuses({ database: { engine: 'postgres', url: 'postgres://h/db', file: 'x.db' } }, 'database.file', /only for engine sqlite/);
  refuses({ database: { url: 'postgres://h/db' } }, 'database.url', /only for engine postgres/);
  refuses({ database: { file: ':memory:' } }, 'database.file', /private to one process.*3 app instances/);
  refuses({ queue: { engine: 'rabbitmq' } }, 'queue.url', /missing: engine rabbitmq needs a url/);
  refuses({ queue: { engine: 'nats', url: 'amqp://127.0.0.1:5672' } }, 'queue.url', /engine nats needs a nats:\/\/ or tls:\/\/ url/);
  refuses({ queue: { url: 'nats://127.0.0.1:4222' } }, 'queue.url', /embedded queue .* takes no url/);
  refuses({ queue: { engine: 'rabbitmq', url: 'amqp://h', port: 7000 } }, 'queue.port', /only for engine archlab without url/);
  refuses({ app: { instances: 2, ports: [7001] } }, 'app.ports', /expected 2 ports \(one per instance\), received 1/);
});

test('ports: optional, the real services\' ports refused, no port used twice', () => {
  for (const [port, service] of [[5432, 'PostgreSQL'], [3306, 'MySQL'], [6379, 'Redis'], [5672, 'RabbitMQ'], [4222, 'NATS'], [1883, 'MQTT']] as const) {
    refuses({ balancer: { port } }, 'balancer.port', new RegExp(`port ${port} belongs to ${service}.*leave the port out or 0`));
  }
  refuses({ app: { instances: 2, ports: [7001, 6379] } }, 'app.ports[1]', /belongs to Redis/);
  refuses({ dashboard: { port: 70000 } }, 'dashboard.port', /65535/);
  refuses({ balancer: { port: 8080 }, dashboard: { port: 8080 } }, 'dashboard.port', /port 8080 is already taken by balancer\.port/);
  refuses({ app: { instances: 2, ports: [7001, 7001] } }, 'app.ports[1]', /already taken by app\.ports\[0\]/);
  refuses({ proxy: { port: 7002 }, payments: { port: 7002 } }, 'payments.port', /port 7002 is already taken by proxy\.port/);
  assert.deepEqual(parseTopology({ payments: { port: 7003, latency: '0ms', timeout: '250ms' } }).payments, { port: 7003, latencyMs: 0, timeoutMs: 250 });
  const t = parseTopology({ balancer: { port: 0 }, dashboard: { port: 0 }, proxy: {} });
  assert.equal(t.balancer.port, 0);
  assert.equal(t.proxy.port, 0);
});

test('a broken file names the file and the field with its line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-up-topology-'));
  try {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'name: demo\ncache:\n  engine: mongo\n');
    assert.throws(
      () => loadTopology(file),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.file, file);
        assert.deepEqual(err.issues.map((i) => [i.path, i.line]), [['cache.engine', 3]]);
        assert.match(err.message, /cache\.engine: expected one of memory, redis, received "mongo" \(line 3, column 11\)/);
        return true;
      },
    );
    assert.throws(() => loadTopology(join(dir, 'missing.yaml')), (err: unknown) => isArchlabError(err, 'ARCHLAB_CONFIG_UNREADABLE'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
