/**
 * `startQueueServer(config)`: the `archlab queue` server. The log (topics) and the broker (queues)
 * served over
 *
 * - the binary protocol on each TCP listener (plain or TLS 1.2+): docs/queue-protocol.md,
 * - the HTTP + SSE gateway (server/gateway.ts), when `gateway` is configured,
 * - the admin listener: /metrics (Prometheus) and /healthz, when `admin` is configured.
 *
 * `close()` is graceful: stop accepting, tell every connection GOAWAY, answer long polls, let the
 * other in-flight requests finish (up to timeouts.drain), requeue what consumers held, then close the
 * engines the server opened. Engines passed in by the caller are the caller's to close.
 */
import * as net from 'node:net';
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import { isArchlabError } from '../../core/errors.js';
import { listen, type ServerAddress, type ServerHandle } from '../../core/lifecycle.js';
import { createLogger } from '../../core/log.js';
import { createRegistry, startAdminServer, sendJson } from '../../core/metrics.js';
import { queueConfig, type QueueServerConfig, type QueueServerConfigInput } from '../config.js';
import { QueueError } from '../errors.js';
import type { BrokerApi } from '../types.js';
import { encodeError } from '../protocol/messages.js';
import { digestToken, ServerConnection, toWireError, type ConnectionContext, type LogEngine } from './connection.js';
import { openBroker, openLog } from './engines.js';
import { startGateway, type GatewayHandle } from './gateway.js';
import { registerQueueMetrics, ServerCounters } from './metrics.js';

export interface QueueServerOptions {
  logger?: Logger;
  /** Use this log instead of opening one under dataDir (the caller closes it). */
  log?: LogEngine;
  /** Use this broker instead of opening one under dataDir (the caller closes it). */
  broker?: BrokerApi;
  /** Sent to clients in HELLO_OK. Default "archlab-queue". */
  name?: string;
}

export interface QueueServerHandle {
  /** The first TCP listener. */
  address: ServerAddress;
  /** Every TCP listener of the binary protocol. */
  listeners: ServerAddress[];
  /** The HTTP + SSE gateway, when configured. */
  gateway?: ServerAddress;
  /** The admin listener (/metrics, /healthz), when configured. */
  admin?: ServerAddress;
  readonly log: LogEngine;
  readonly broker: BrokerApi;
  readonly counters: ServerCounters;
  /** Open protocol connections. */
  connections(): number;
  close(): Promise<void>;
}

function isParsed(c: QueueServerConfig | QueueServerConfigInput): c is QueueServerConfig {
  const t = (c as QueueServerConfig).timeouts as { idleMs?: unknown } | undefined;
  return typeof c.dataDir === 'string' && t !== undefined && typeof t.idleMs === 'number';
}

/** Creates what the file declares; an existing topic keeps its settings, a queue or exchange declared differently fails the start. */
async function declare(config: QueueServerConfig, log: LogEngine, broker: BrokerApi, logger: Logger): Promise<void> {
  for (const t of config.topics.declare) {
    try {
      const info = await log.describeTopic(t.name);
      if (t.config.partitions !== undefined && info.config.partitions !== t.config.partitions) {
        logger.warn({ topic: t.name, has: info.config.partitions, declared: t.config.partitions }, 'topic exists with another partition count; keeping it');
      }
    } catch (err) {
      if (!isArchlabError(err, 'ARCHLAB_QUEUE_UNKNOWN_TOPIC')) throw err;
      await log.createTopic(t.name, t.config);
    }
  }
  const b = config.broker;
  for (const e of b.exchanges) await broker.declareExchange(e.name, e.config);
  for (const q of b.queues) await broker.declareQueue(q.name, q.config);
  for (const bd of b.bindings) await broker.bind(bd.queue, bd.exchange, bd.routingKey, bd.args);
}

export async function startQueueServer(input: QueueServerConfig | QueueServerConfigInput, opts: QueueServerOptions = {}): Promise<QueueServerHandle> {
  const config = isParsed(input) ? input : queueConfig(input);
  const logger =
    opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-queue', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const counters = new ServerCounters();
  const owned: { close(): Promise<void> }[] = [];
  const closeOwned = async (): Promise<void> => {
    for (const e of owned.splice(0).reverse()) await e.close().catch((err: unknown) => logger.warn({ err }, 'closing a queue engine'));
  };

  let log: LogEngine;
  let broker: BrokerApi;
  try {
    if (opts.log !== undefined) log = opts.log;
    else owned.push((log = await openLog(config, logger)));
    if (opts.broker !== undefined) broker = opts.broker;
    else owned.push((broker = await openBroker(config, logger)));
    await declare(config, log, broker, logger);
  } catch (err) {
    await closeOwned();
    throw err;
  }

  const ctx: ConnectionContext = {
    log,
    broker,
    tokenDigest: config.auth.token === undefined ? undefined : digestToken(config.auth.token),
    limits: { ...config.connections, idleMs: config.timeouts.idleMs },
    serverName: opts.name ?? 'archlab-queue',
    counters,
    logger,
  };
  const conns = new Set<ServerConnection>();
  let closing = false;
  const { maxConnections } = config.limits;

  const onSocket = (socket: net.Socket): void => {
    if (closing) {
      socket.destroy();
      return;
    }
    if (conns.size >= maxConnections) {
      counters.connectionsRefused++;
      counters.error('ARCHLAB_QUEUE_LIMIT');
      const err = new QueueError('ARCHLAB_QUEUE_LIMIT', `the server has ${maxConnections} connections, its limit`, { details: { limit: 'maxConnections', value: maxConnections } });
      socket.on('error', () => undefined);
      socket.end(encodeError(0, toWireError(err)));
      socket.resume(); // read (and drop) until the client's FIN, so the socket closes
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    counters.connectionsAccepted++;
    counters.connectionsOpen++;
    const conn = new ServerConnection(socket, ctx);
    conns.add(conn);
    void conn.closed.then(() => {
      conns.delete(conn);
      counters.connectionsOpen--;
    });
  };

  let tlsOptions: tls.TlsOptions | undefined;
  if (config.tls !== undefined) {
    const read = (file: string, what: string): Buffer => {
      try {
        return readFileSync(file);
      } catch (err) {
        throw new QueueError('ARCHLAB_QUEUE_BAD_ARGUMENT', `cannot read the TLS ${what} ${file}: ${(err as Error).message}`, { cause: err, details: { file } });
      }
    };
    tlsOptions = { cert: read(config.tls.certFile, 'certificate'), key: read(config.tls.keyFile, 'key'), minVersion: config.tls.minVersion };
  }

  const handles: ServerHandle[] = [];
  // Raw sockets of TLS listeners: the ones still here after the connections drained never finished
  // their TLS handshake, and close() cuts them rather than waiting for the drain timeout.
  const tlsRaw = new Set<net.Socket>();
  let gateway: GatewayHandle | undefined;
  let admin: ServerHandle | undefined;
  const closeListeners = async (): Promise<void> => {
    await Promise.allSettled([...handles.map((h) => h.close()), gateway?.close(), admin?.close()]);
  };
  try {
    for (const lc of config.listeners) {
      let server: net.Server;
      if (tlsOptions !== undefined) {
        const s = tls.createServer({ ...tlsOptions, handshakeTimeout: config.connections.handshakeTimeoutMs });
        s.on('connection', (raw: net.Socket) => {
          tlsRaw.add(raw);
          raw.once('close', () => tlsRaw.delete(raw));
        });
        s.on('secureConnection', onSocket);
        s.on('tlsClientError', (err) => logger.debug({ err }, 'TLS handshake failed'));
        server = s;
      } else {
        server = net.createServer(onSocket);
      }
      handles.push(await listen(server, { host: lc.host, port: lc.port, drainTimeoutMs: config.timeouts.drainMs }));
    }
    if (config.gateway !== undefined) {
      gateway = await startGateway({
        config: config.gateway,
        limits: config.limits,
        timeouts: config.timeouts,
        token: config.auth.token,
        maxFetchWaitMs: config.connections.maxFetchWaitMs,
        log,
        broker,
        counters,
        logger,
      });
    }
    if (config.admin !== undefined) {
      const registry = createRegistry({ defaultMetrics: config.metrics.defaultMetrics, labels: { server: 'queue' } });
      registerQueueMetrics(registry, counters, { log, broker }, logger);
      admin = await startAdminServer({
        ...config.admin,
        registry,
        logger,
        drainTimeoutMs: config.timeouts.drainMs,
        health: () => ({ ok: !closing, details: { connections: conns.size } }),
        routes: async (req, res, url) => {
          if (url.pathname === '/stats' && req.method === 'GET') {
            sendJson(res, 200, { connections: conns.size, topics: (await log.listTopics()).length, queues: await broker.listQueues() });
            return true;
          }
          return false;
        },
      });
    }
  } catch (err) {
    closing = true;
    await closeListeners();
    await closeOwned();
    throw err;
  }

  logger.info(
    {
      listeners: handles.map((h) => `${h.address.host}:${h.address.port}`),
      tls: tlsOptions !== undefined,
      gateway: gateway?.address.url,
      admin: admin?.address.url,
      dataDir: opts.log !== undefined && opts.broker !== undefined ? undefined : config.dataDir,
    },
    'archlab queue ready',
  );

  let closed: Promise<void> | undefined;
  return {
    address: handles[0]!.address,
    listeners: handles.map((h) => h.address),
    ...(gateway === undefined ? {} : { gateway: gateway.address }),
    ...(admin === undefined ? {} : { admin: admin.address }),
    log,
    broker,
    counters,
    connections: () => conns.size,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        // Stop accepting first; the listeners' own close waits for their sockets (bounded by drain).
        const stopping = handles.map((h) => h.close());
        await Promise.allSettled([...[...conns].map((c) => c.drain(config.timeouts.drainMs)), gateway?.close()]);
        for (const raw of tlsRaw) raw.destroy();
        await Promise.allSettled(stopping);
        await admin?.close();
        await closeOwned();
        logger.info('archlab queue closed');
      })()),
  };
}
