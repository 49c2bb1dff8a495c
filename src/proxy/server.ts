/**
 * `startProxy(config)`: the forward proxy's listeners, admin listener, and drain on close().
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Logger } from 'pino';
import { SystemClock, type Clock } from '../core/clock.js';
import { listen, type ServerAddress, type ServerHandle } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { createRegistry, sendJson, startAdminServer } from '../core/metrics.js';
import { Acl } from './acl.js';
import { Authenticator, loadUsersFile, parseUsers, type PasswordHash } from './auth.js';
import { proxyConfig, type ProxyConfig, type ProxyConfigInput } from './config.js';
import { ForwardProxy } from './forward.js';
import { Gate } from './gate.js';
import { KeyedLimiter } from './limits.js';
import { ProxyMetrics } from './metrics.js';
import { systemLookup, type LookupFn } from './resolve.js';

export interface ProxyOptions {
  logger?: Logger;
  clock?: Clock;
  /** Name resolution; default dns.lookup with all addresses. Tests inject one to play DNS tricks. */
  lookup?: LookupFn;
}

/**
 * The proxy's counters since start, read from its own metrics (the same numbers /metrics serves).
 * An exchange is counted once answered: requests and tunnels in progress are not in the totals yet.
 */
export interface ProxyStats {
  /** Plain (absolute-form) HTTP requests answered, whatever the status, refusals included. archlab_proxy_requests_total. */
  requests: number;
  /** CONNECT requests answered, whatever the status (200 = tunnel opened), refusals included. archlab_proxy_tunnels_total. */
  tunnels: number;
  /**
   * Requests and tunnels answered 5xx: the proxy's own 502/503/504 (target unreachable or too slow,
   * proxy shutting down) and a target's 5xx passed on, as a balancer counts failures.
   */
  errors: number;
  /** Requests and tunnels refused before reaching a target (ACL, SSRF guard, auth, limits, malformed), every reason. archlab_proxy_denied_total. */
  denied: number;
  /** HTTP requests in flight and tunnels open now. */
  active: number;
}

export interface ProxyHandle {
  /** The first listener's address (`url` is `http://host:port`, what `curl -x` takes). */
  address: ServerAddress;
  /** Every listener, in config order. */
  listeners: ServerAddress[];
  admin?: ServerAddress;
  /** The counters since start (see ProxyStats). */
  stats(): Promise<ProxyStats>;
  /** Stops accepting, lets requests finish and tunnels run for up to timeouts.drain, then cuts the rest. */
  close(): Promise<void>;
}

function isParsed(c: ProxyConfigInput | ProxyConfig): c is ProxyConfig {
  return typeof (c as ProxyConfig).limits?.maxBodyBytes === 'number';
}

function loadUsers(config: ProxyConfig): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>();
  const auth = config.auth;
  if (auth === undefined) return users;
  if (auth.usersFile !== undefined) for (const [u, h] of loadUsersFile(auth.usersFile)) users.set(u, h);
  if (auth.users !== undefined) for (const [u, h] of parseUsers(auth.users.join('\n'), 'auth.users')) users.set(u, h);
  return users;
}

/** Starts a forward proxy from a config object (the file's shape) or an already validated config. */
export async function startProxy(input: ProxyConfigInput | ProxyConfig, opts: ProxyOptions = {}): Promise<ProxyHandle> {
  const config = isParsed(input) ? input : proxyConfig(input);
  const clock = opts.clock ?? new SystemClock();
  const logger =
    opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-proxy', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const registry = createRegistry({ defaultMetrics: config.metrics.defaultMetrics, labels: { server: 'proxy' } });
  const metrics = new ProxyMetrics(registry);
  const { limits, timeouts } = config;

  const auth = config.auth ? new Authenticator(loadUsers(config), { clock, cacheSize: config.auth.cacheSize, cacheTtlMs: config.auth.cacheTtlMs, maxPending: config.auth.maxPending }) : undefined;
  const perClient = new KeyedLimiter({ ...limits.perClient, maxTracked: limits.maxTracked }, clock);
  const perUser = new KeyedLimiter({ ...limits.perUser, maxTracked: limits.maxTracked }, clock);
  const gate = new Gate({
    acl: new Acl(config.acl),
    auth,
    realm: config.auth?.realm ?? 'archlab',
    perClient,
    perUser,
    lookup: opts.lookup ?? systemLookup,
    metrics,
    connectMs: () => timeouts.connectMs,
  });
  const proxy = new ForwardProxy({ config, gate, metrics, logger });

  const handles: ServerHandle[] = [];
  const servers: http.Server[] = [];
  try {
    for (const lc of config.listeners) {
      const server = http.createServer({
        maxHeaderSize: limits.maxHeaderBytes,
        requestTimeout: timeouts.requestMs,
        headersTimeout: timeouts.headersMs,
        keepAliveTimeout: timeouts.keepAliveMs,
        // Node checks header and request timeouts on this interval (default 30 s): keep it fine.
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeouts.headersMs / 2))),
        // Checked by the proxy itself, so the 400 is logged and counted like every refusal.
        requireHostHeader: false,
      });
      server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => proxy.handleRequest(req, res));
      // Expect: 100-continue is answered only once the request has passed every check.
      server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => proxy.handleRequest(req, res, true));
      server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => proxy.handleConnect(req, socket, head));
      server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => proxy.handleUpgrade(req, socket));
      server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => proxy.handleClientError(err, socket));
      server.maxConnections = limits.maxConnections;
      server.timeout = timeouts.idleMs;
      servers.push(server);
      handles.push(await listen(server, { host: lc.host, port: lc.port, drainTimeoutMs: timeouts.drainMs }));
      logger.info({ listener: lc.name ?? 'proxy', address: handles.at(-1)!.address, auth: auth !== undefined, ssrfGuard: config.acl.ssrfGuard.enabled }, 'listening');
    }
  } catch (err) {
    await Promise.all(handles.map((h) => h.close()));
    throw err;
  }

  let admin: ServerHandle | undefined;
  if (config.admin) {
    try {
      admin = await startAdminServer({
        ...config.admin,
        registry,
        logger,
        health: () => ({ ok: true, details: { tunnels: proxy.openTunnels } }),
        routes: (req, res, url) => {
          if (url.pathname === '/stats' && req.method === 'GET') {
            sendJson(res, 200, {
              tunnels: proxy.openTunnels,
              trackedClients: perClient.tracked,
              trackedUsers: perUser.tracked,
              users: auth?.userCount ?? 0,
              scryptRuns: auth?.scryptRuns ?? 0,
            });
            return true;
          }
          return false;
        },
      });
    } catch (err) {
      await Promise.all(handles.map((h) => h.close()));
      throw err;
    }
  }

  /** Sums a counter's or gauge's values, those whose `code` label passes `keep` when given. */
  const total = async (metric: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, string | number | undefined> }> }> }, keep?: (code: number) => boolean): Promise<number> => {
    const { values } = await metric.get();
    let n = 0;
    for (const v of values) if (keep === undefined || keep(Number(v.labels.code))) n += v.value;
    return n;
  };
  const is5xx = (code: number): boolean => code >= 500 && code <= 599;

  let closed: Promise<void> | undefined;
  return {
    address: handles[0]!.address,
    listeners: handles.map((h) => h.address),
    ...(admin ? { admin: admin.address } : {}),
    async stats() {
      const [requests, tunnels, requests5xx, tunnels5xx, denied, active] = await Promise.all([
        total(metrics.requests),
        total(metrics.tunnels),
        total(metrics.requests, is5xx),
        total(metrics.tunnels, is5xx),
        total(metrics.denied),
        total(metrics.active),
      ]);
      return { requests, tunnels, errors: requests5xx + tunnels5xx, denied, active };
    },
    close() {
      closed ??= (async () => {
        proxy.shutdown();
        await Promise.all(handles.map((h) => h.close()));
        proxy.destroy();
        await admin?.close();
      })();
      return closed;
    },
  };
}
