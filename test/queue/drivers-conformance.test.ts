/**
 * The driver conformance suite (src/queue/drivers/conformance.ts) on every driver: embedded (in
 * process, a temp data dir), archlab (a queue server started here on loopback), RabbitMQ and NATS
 * JetStream (the servers on this machine; skipped when absent, failed under CI=true).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { connect } from 'nats';
import { createLogger } from '../../src/core/log.js';
import { archlabDriver } from '../../src/queue/drivers/archlab.js';
import { driverConformance } from '../../src/queue/drivers/conformance.js';
import { embeddedDriver } from '../../src/queue/drivers/embedded.js';
import { natsDriver } from '../../src/queue/drivers/nats.js';
import { rabbitmqDriver } from '../../src/queue/drivers/rabbitmq.js';
import { startQueueServer, type QueueServerHandle } from '../../src/queue/server/index.js';
import { needService, NATS, RABBITMQ } from '../support/services.js';

const silent = createLogger({ level: 'silent' });
const dirs: string[] = [];
async function tempDir(what: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `archlab-drivers-${what}-`));
  dirs.push(dir);
  return dir;
}

// Small heartbeats and fetch waits so rebalances and closes take milliseconds, not seconds.
const engineOptions = { consumer: { fetchMaxWaitMs: 100 }, producer: { lingerMs: 1 } };

driverConformance('embedded', async () => embeddedDriver({ dataDir: await tempDir('embedded'), ...engineOptions, log: { groups: { minSessionTimeoutMs: 100 } } }));

let server: QueueServerHandle | undefined;
driverConformance('archlab', async () => {
  server = await startQueueServer(
    { dataDir: await tempDir('archlab'), listeners: [{ host: '127.0.0.1', port: 0 }] },
    { logger: silent },
  );
  return archlabDriver({ host: '127.0.0.1', port: server.address.port, ...engineOptions });
});

driverConformance('rabbitmq', () => rabbitmqDriver({ url: 'amqp://guest:guest@127.0.0.1:5672' }), { skip: await needService(RABBITMQ) });

// The NATS driver keeps exchanges and bindings in a KV bucket; this run uses its own and deletes it.
const natsSkip = await needService(NATS);
const routesBucket = `cf_routes_${randomBytes(4).toString('hex')}`;
driverConformance('nats', () => natsDriver({ servers: '127.0.0.1:4222', routesBucket }), { skip: natsSkip });

after(async () => {
  await server?.close();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  if (natsSkip === false) {
    const nc = await connect({ servers: '127.0.0.1:4222' });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(`KV_${routesBucket}`).catch(() => undefined);
    } finally {
      await nc.close();
    }
  }
});
