/**
 * The Redis store (and the tiered store on it) through ioredis Cluster, against a 3-master Redis
 * Cluster this file starts itself: redis-server child processes on free high ports, joined with
 * `redis-cli --cluster create`, killed and their directory removed when the file ends (also on
 * failure). Skips with a message when redis-server or redis-cli is not installed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as net from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import { Redis, type Cluster } from 'ioredis';
import { ArchlabError } from '../../src/core/errors.js';
import { storeConformance } from '../../src/cache/stores/conformance.js';
import { createRedisStore } from '../../src/cache/stores/redis.js';
import { createTieredStore } from '../../src/cache/stores/tiered.js';
import { createRedisLease } from '../../src/cache/lease.js';
import type { Entry } from '../../src/cache/types.js';

const STARTUP_MS = 15_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function missingBinaries(): string | false {
  for (const bin of ['redis-server', 'redis-cli']) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      const message = `${bin} is not installed (apt-get install redis-server / redis-tools)`;
      if (process.env.CI === 'true') throw new ArchlabError('TEST_SERVICE_MISSING', `${message}; CI=true requires it`);
      return `skipped: ${message}`;
    }
  }
  return false;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Three ports p with p and p + 10000 (the cluster bus) free. */
async function clusterPorts(): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 30_000 + randomInt(0, 20_000);
    const ports = [base, base + 1, base + 2];
    let ok = true;
    for (const p of ports) ok = ok && (await portFree(p)) && (await portFree(p + 10_000));
    if (ok) return ports;
  }
  throw new ArchlabError('TEST_NO_PORTS', 'no free ports for a test cluster after 50 attempts');
}

interface TestCluster {
  nodes: { host: string; port: number }[];
  stop(): void;
}

async function startCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'archlab-redis-cluster-'));
  const procs: ChildProcess[] = [];
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  // Even if the test process dies without running after(): no orphaned servers.
  process.once('exit', stop);
  try {
    const ports = await clusterPorts();
    for (const port of ports) {
      const p = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '3000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no'],
        { stdio: 'ignore' },
      );
      procs.push(p);
    }
    const deadline = performance.now() + STARTUP_MS;
    const ping = async (port: number): Promise<boolean> => {
      const c = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      c.on('error', () => {});
      try {
        await c.connect();
        return (await c.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        c.disconnect();
      }
    };
    for (const port of ports) {
      while (!(await ping(port))) {
        if (performance.now() > deadline) throw new ArchlabError('TEST_CLUSTER_START', `redis-server on ${port} did not answer within ${STARTUP_MS} ms`);
        await sleep(50);
      }
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'], { encoding: 'utf8', timeout: STARTUP_MS });
    if (create.status !== 0) throw new ArchlabError('TEST_CLUSTER_START', `redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
    for (const port of ports) {
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(port), 'cluster', 'info'], { encoding: 'utf8', timeout: 2_000 }).stdout ?? '';
        if (info.includes('cluster_state:ok')) break;
        if (performance.now() > deadline) throw new ArchlabError('TEST_CLUSTER_START', `cluster not ok on ${port} within ${STARTUP_MS} ms: ${info}`);
        await sleep(100);
      }
    }
    return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), stop };
  } catch (err) {
    stop();
    throw err;
  }
}

const skip = missingBinaries();
const cluster = skip ? undefined : await startCluster();
const RUN = `archlab:test:cluster:${randomBytes(4).toString('hex')}:`;

after(() => cluster?.stop());

let seq = 0;
function clusterStore(prefix: string, o: { raceWindowMs?: number; maxValueBytes?: number } = {}) {
  return createRedisStore({ nodes: cluster!.nodes, prefix, raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes, commandTimeoutMs: 2_000 });
}

storeConformance(
  'redis cluster (3 masters)',
  async (o = {}) => {
    const prefix = `${RUN}${o.namespace ?? `s${seq++}`}:`;
    const store = clusterStore(prefix, o);
    return {
      store,
      clock: undefined,
      cleanup: async () => {
        await store.clear().catch(() => undefined);
        await store.close();
      },
    };
  },
  { skip },
);

storeConformance(
  'tiered on redis cluster',
  async (o = {}) => {
    const prefix = `${RUN}t${o.namespace ?? `s${seq++}`}:`;
    const store = createTieredStore({ l1: { raceWindowMs: o.raceWindowMs, maxValueBytes: o.maxValueBytes }, l2: clusterStore(prefix, o) });
    await store.ready(10_000);
    return {
      store,
      clock: undefined,
      cleanup: async () => {
        await store.clear().catch(() => undefined);
        await store.close();
        await store.l2.close();
      },
    };
  },
  { skip },
);

function entry<V>(value: V, tags?: string[]): Entry<V> {
  const now = Date.now();
  return { value, freshUntilMs: now + 30_000, staleUntilMs: now + 60_000, ...(tags ? { tags } : {}) };
}

test('redis cluster: an entry and its generation share a slot; keys spread over every master; tags and clear span slots', { skip }, async (t) => {
  const store = clusterStore(`${RUN}layout:`);
  t.after(async () => {
    await store.clear();
    await store.close();
  });
  const client = store.client as Cluster;
  // The store waits for the first connection; the raw client (no offline queue) does not.
  await store.get('warm-up');
  const keys = Array.from({ length: 300 }, (_, i) => `user:${i}:{x}}%`);
  for (const k of keys.slice(0, 20)) {
    const [a, b] = await Promise.all([client.cluster('KEYSLOT', store.dataKey(k)), client.cluster('KEYSLOT', store.genKey(k))]);
    assert.equal(a, b, `same slot for ${k}`);
  }
  await Promise.all(keys.map((k) => store.set(k, entry(k, ['everyone']))));
  const perNode = await Promise.all(client.nodes('master').map((n) => n.dbsize()));
  assert.equal(perNode.length, 3);
  assert.ok(perNode.every((n) => n > 0), `entries on every master: ${perNode.join(', ')}`);
  assert.equal(await store.invalidateTag('everyone'), keys.length);
  assert.equal(await store.get(keys[0]!), undefined);
  await Promise.all(keys.map((k) => store.set(k, entry(k))));
  await store.clear();
  const left = await Promise.all(keys.map((k) => store.get(k)));
  assert.ok(left.every((e) => e === undefined));
});

test('redis cluster: tiered invalidations reach instances subscribed through other nodes; the lease works per slot', { skip }, async (t) => {
  const prefix = `${RUN}tiered-pair:`;
  const a = createTieredStore({ l2: clusterStore(prefix), l1MaxStaleMs: 5_000 });
  const b = createTieredStore({ l2: clusterStore(prefix), l1MaxStaleMs: 5_000 });
  t.after(async () => {
    await a.clear().catch(() => undefined);
    for (const s of [a, b]) {
      await s.close();
      await s.l2.close();
    }
  });
  await Promise.all([a.ready(10_000), b.ready(10_000)]);
  for (let i = 0; i < 30; i++) {
    const key = `pair:${i}`;
    const before = b.stats.received;
    await a.set(key, entry(i));
    for (const t0 = performance.now(); b.stats.received === before; ) {
      assert.ok(performance.now() - t0 < 3_000, 'message for the set arrived');
      await sleep(2);
    }
    await b.get(key);
    assert.ok(b.peek(key), `${key} in b's L1`);
    await a.invalidate(key);
    for (const t0 = performance.now(); b.peek(key) !== undefined; ) {
      assert.ok(performance.now() - t0 < 3_000, `${key} dropped from b's L1`);
      await sleep(2);
    }
  }
  const lease1 = createRedisLease({ redis: a.l2.client, prefix });
  const lease2 = createRedisLease({ redis: b.l2.client, prefix });
  const held = await Promise.all(Array.from({ length: 20 }, (_, i) => lease1.acquire(`lk${i}`, 5_000)));
  assert.ok(held.every((h) => h !== undefined));
  assert.ok((await Promise.all(Array.from({ length: 20 }, (_, i) => lease2.acquire(`lk${i}`, 5_000)))).every((h) => h === undefined));
  await Promise.all(held.map((h) => h!.release()));
  const again = await lease2.acquire('lk0', 5_000);
  assert.ok(again);
  await again.release();
});
