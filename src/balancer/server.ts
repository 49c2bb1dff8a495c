/**
 * `startBalancer(config)`: listeners (HTTP/1.1, HTTPS with HTTP/2 by ALPN, redirect; TCP and UDP in l4/), the proxy, health
 * checks, the admin listener; `reload(config)` swaps the config without dropping in-flight requests;
 * `close()` drains.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Logger } from 'pino';
import { SystemClock, type Clock } from '../core/clock.js';
import { listen, type ServerAddress, type ServerHandle } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { createRegistry, startAdminServer } from '../core/metrics.js';
import { SystemRandom, type Random } from '../core/random.js';
import { adminRoutes } from './admin/api.js';
import { balancerConfig, type BalancerConfig, type BalancerConfigInput, type ListenerConfig } from './config.js';
import { startL4Listener } from './l4/listener.js';
import { CertificateStore } from './l7/certs.js';
import { installFastInbound, type FastInbound } from './l7/h1/inbound.js';
import { L7Proxy } from './l7/proxy.js';
import { BalancerMetrics } from './metrics.js';
import { buildState, newCookieSecret, removedBackends, type ProxyState } from './runtime.js';

export interface BalancerOptions {
  logger?: Logger;
  clock?: Clock;
  random?: Random;
  /** Where `reload()` without an argument (SIGHUP, POST /reload) reads the config from. */
  source?: () => BalancerConfig;
}

export interface BalancerHandle {
  /** Bound addresses, in the order of `listeners` in the config. */
  listeners: ServerAddress[];
  admin: ServerAddress | undefined;
  /** The state now serving (for tests and the admin API). */
  state(): ProxyState;
  /** Validates and applies a new config; on error the running one stays and the error is thrown. */
  reload(next?: BalancerConfigInput | BalancerConfig): Promise<void>;
  close(): Promise<void>;
}

function isParsed(c: BalancerConfigInput | BalancerConfig): c is BalancerConfig {
  const b = (c as BalancerConfig).pools?.[0]?.backends?.[0]?.address;
  return typeof b === 'object' && b !== null;
}

/** Starts a balancer from a config object (the file's shape) or an already validated config. */
export async function startBalancer(input: BalancerConfigInput | BalancerConfig, opts: BalancerOptions = {}): Promise<BalancerHandle> {
  let config = isParsed(input) ? input : balancerConfig(input);
  const clock = opts.clock ?? new SystemClock();
  const random = opts.random ?? new SystemRandom();
  const logger = opts.logger ?? createLogger({ level: config.log.level, name: 'archlab-balance', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
  const registry = createRegistry({ defaultMetrics: config.metrics.defaultMetrics });
  let state: ProxyState;
  const metrics: BalancerMetrics = new BalancerMetrics(registry, function* () {
    for (const rt of state.pools.values()) for (const b of rt.pool.backends) yield { pool: rt.pool.name, backend: b.id, active: b.active, connections: b.connections, bytesIn: b.bytesIn, bytesOut: b.bytesOut };
  }, (): number => proxy.bufferedBodyBytes);
  const fallbackSecret = newCookieSecret();
  const deps = { clock, random, logger, metrics, fallbackSecret };
  state = buildState(config, deps);
  const proxy: L7Proxy = new L7Proxy({ state: () => state, metrics, logger });

  const certStores: CertificateStore[] = [];
  const handles: ServerHandle[] = [];
  const fastPaths: FastInbound[] = [];
  const startHealth = (s: ProxyState): void => {
    for (const rt of s.pools.values()) rt.health?.start();
  };
  const stopHealth = (s: ProxyState): void => {
    for (const rt of s.pools.values()) rt.health?.stop();
  };

  try {
    for (const lc of config.listeners) {
      if (lc.mode !== 'http') {
        handles.push(await startL4Listener(lc, { state: () => state, metrics, logger }, config.timeouts.drainMs));
        logger.info({ listener: lc.name ?? lc.mode, mode: lc.mode, address: handles.at(-1)!.address }, 'listening');
        continue;
      }
      const { server, proto, fast } = createListener(lc, config, proxy, metrics, certStores);
      if (fast) fastPaths.push(fast);
      handles.push(await listen(server, { host: lc.host, port: lc.port, drainTimeoutMs: config.timeouts.drainMs }));
      logger.info({ listener: lc.name ?? proto, address: handles.at(-1)!.address, tls: lc.tls !== undefined }, 'listening');
    }
  } catch (err) {
    await Promise.all(handles.map((h) => h.close()));
    throw err;
  }

  const reload = async (next?: BalancerConfigInput | BalancerConfig): Promise<void> => {
    let cfg: BalancerConfig;
    if (next === undefined) {
      if (!opts.source) throw new TypeError('reload() needs a config: this balancer has no config source');
      cfg = opts.source();
    } else cfg = isParsed(next) ? next : balancerConfig(next);
    if (JSON.stringify(cfg.listeners) !== JSON.stringify(config.listeners)) {
      logger.warn('listener changes take effect on restart; certificates are re-read now');
    }
    cfg.listeners.forEach((lc, i) => {
      if (lc.tls && certStores[i]) certStores[i].load(lc.tls.certificates);
    });
    const previous = state;
    const fresh = buildState(cfg, deps, previous);
    stopHealth(previous);
    state = fresh;
    config = cfg;
    startHealth(fresh);
    for (const b of removedBackends(previous, fresh)) {
      b.draining = true;
      drainThenDrop(b, clock, cfg.timeouts.drainMs, () => proxy.dropAgent(b));
    }
    logger.info({ pools: cfg.pools.map((p) => p.name) }, 'config reloaded');
  };

  let admin: ServerHandle | undefined;
  if (config.admin) {
    admin = await startAdminServer({
      ...config.admin,
      registry,
      logger,
      health: () => {
        const up = [...state.pools.values()].some((rt) => rt.pool.backends.some((b) => b.usable));
        return { ok: up, details: { pools: state.pools.size } };
      },
      routes: adminRoutes({ state: () => state, reload: opts.source ? () => reload() : undefined, now: () => clock.now() }),
    });
  }
  startHealth(state);

  let closed: Promise<void> | undefined;
  return {
    listeners: handles.map((h) => h.address),
    admin: admin?.address,
    state: () => state,
    reload,
    close() {
      closed ??= (async () => {
        proxy.shutdown();
        stopHealth(state);
        for (const f of fastPaths) f.closeAll();
        await Promise.all(handles.map((h) => h.close()));
        for (const rt of state.pools.values()) {
          rt.pool.rejectWaiters('shutting down');
          for (const b of rt.pool.backends) proxy.dropAgent(b);
        }
        await admin?.close();
      })();
      return closed;
    },
  };
}

function drainThenDrop(b: { active: number }, clock: Clock, maxMs: number, drop: () => void): void {
  const started = clock.now();
  const tick = (): void => {
    if (b.active === 0 || clock.now() - started >= maxMs) drop();
    else clock.setTimer(200, tick);
  };
  tick();
}

function createListener(
  lc: ListenerConfig,
  config: BalancerConfig,
  proxy: L7Proxy,
  metrics: BalancerMetrics,
  certStores: CertificateStore[],
): { server: net.Server; proto: 'http' | 'https'; fast?: FastInbound } {
  const { timeouts, limits } = config;
  const httpOptions: http.ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: timeouts.requestMs,
    headersTimeout: timeouts.headersMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    // Node checks header and request timeouts on this interval (default 30 s): keep it fine.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeouts.headersMs / 2))),
  };
  let server: http.Server | https.Server | http2.Http2SecureServer;
  let proto: 'http' | 'https' = 'http';
  let fast: FastInbound | undefined;
  if (lc.redirectToHttpsPort !== undefined) {
    const port = lc.redirectToHttpsPort;
    server = http.createServer(httpOptions, (req, res) => {
      const host = (req.headers.host ?? 'localhost').replace(/:\d+$/, '');
      const location = `https://${host}${port === 443 ? '' : `:${port}`}${req.url ?? '/'}`;
      res.writeHead(301, { location, 'content-length': 0 });
      res.end();
    });
  } else if (lc.tls) {
    proto = 'https';
    const store = new CertificateStore(lc.tls.certificates);
    certStores[config.listeners.indexOf(lc)] = store;
    const tlsOptions = { ...store.defaultPems, minVersion: 'TLSv1.2' as const, SNICallback: store.sniCallback };
    if (lc.tls.http2) {
      server = http2.createSecureServer({ ...tlsOptions, allowHTTP1: true, maxSessionMemory: 64, settings: { maxHeaderListSize: limits.maxHeaderBytes } });
      server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => proxy.handle(req, res, 'https'));
      server.setTimeout(timeouts.idleMs);
    } else {
      server = https.createServer({ ...tlsOptions, ...httpOptions }, (req, res) => proxy.handle(req, res, 'https'));
    }
  } else {
    server = http.createServer(httpOptions, (req, res) => proxy.handle(req, res, 'http'));
    fast = installFastInbound(server, {
      maxHeaderBytes: limits.maxHeaderBytes,
      headersMs: timeouts.headersMs,
      keepAliveMs: timeouts.keepAliveMs,
      idleMs: timeouts.idleMs,
      serve: (req, res) => proxy.handle(req, res, 'http'),
    });
  }
  if (lc.redirectToHttpsPort === undefined) {
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => proxy.upgrade(req, socket, head, proto));
  }
  if (server instanceof http.Server) {
    server.maxConnections = limits.maxConnections;
    server.timeout = timeouts.idleMs;
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      metrics.rejected.inc({ reason: err.code ?? 'client-error' });
      if (!socket.writable || (socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = `${status} ${http.STATUS_CODES[status]}\n`;
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    });
  }
  return { server: server as net.Server, proto, fast };
}
