/**
 * The `mode: udp` listener: an L4 load balancer for datagrams. UDP has no connections, so the
 * balancer keeps flows: one per client ip:port, created by the client's first datagram, bound to
 * one backend (picked by the pool's algorithm, keyed by the client's address) and to one upstream
 * socket connected to that backend. Every later datagram of the client goes to the same backend,
 * and the backend's answers go back to the client from the listener's own socket, so the client
 * sees replies come from the address it wrote to (as with NGINX `proxy_responses` / LVS).
 *
 * - A flow with no datagram either way for `udp.flowIdle` is forgotten: its upstream socket is
 *   closed and its backend released (the pool counts a flow as one connection, so per-backend
 *   maxConnections bounds flows). The table holds `udp.maxFlows` flows at most; a new flow beyond
 *   that evicts the least recently active one. The map is kept in recency order, so the sweep and
 *   the eviction only look at its oldest entries.
 * - Datagrams over `udp.maxDatagram`, either way, are dropped and counted, as are datagrams with no
 *   backend to go to. While a new flow waits for its backend (the pool's queue, or the upstream
 *   socket connecting) at most MAX_PENDING_DATAGRAMS are held; more are dropped.
 * - An ICMP port-unreachable from a backend surfaces as an error on its connected socket: the flow
 *   closes (the client's next datagram picks again) and the outlier detector hears a connect failure.
 */
import * as dgram from 'node:dgram';
import { isIP } from 'node:net';
import type { ServerAddress } from '../../core/lifecycle.js';
import { ListenError } from '../../core/lifecycle.js';
import type { Backend } from '../backend.js';
import { zUdpListener, type ListenerConfig, type UdpListenerConfig } from '../config.js';
import { BalancerError } from '../errors.js';
import type { PoolRuntime } from '../runtime.js';
import type { L4Deps } from './tcp.js';

/** Datagrams held for a flow whose backend is not yet known or connected. */
export const MAX_PENDING_DATAGRAMS = 64;

interface Flow {
  key: string;
  address: string;
  port: number;
  rt: PoolRuntime;
  backend: Backend | undefined;
  upstream: dgram.Socket | undefined;
  /** Datagrams waiting for the upstream socket; undefined once it is connected. */
  pending: Buffer[] | undefined;
  lastSeenMs: number;
  openedMs: number;
  bytesIn: number;
  bytesOut: number;
  closed: boolean;
}

export class UdpListener {
  /** The listener's name in logs and metrics. */
  readonly name: string;
  private readonly limits: UdpListenerConfig;
  private readonly socket: dgram.Socket;
  /** Flows by "ip|port", least recently active first. */
  private readonly flows = new Map<string, Flow>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly lc: ListenerConfig,
    private readonly deps: L4Deps,
  ) {
    this.name = lc.name ?? 'udp';
    this.limits = lc.udp ?? zUdpListener.parse({});
    this.socket = dgram.createSocket({ type: isIP(lc.host) === 6 ? 'udp6' : 'udp4' });
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.socket.on('error', (err) => this.deps.logger.error({ err, listener: this.name }, 'udp listener error'));
  }

  /** Number of flows in the table (tests, admin). */
  get size(): number {
    return this.flows.size;
  }

  /** Binds `lc.host:lc.port`; rejects with ListenError (ARCHLAB_LISTEN_FAILED). */
  async listen(): Promise<ServerAddress> {
    const { host, port } = this.lc;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new ListenError(host, port, err));
      this.socket.once('error', onError);
      this.socket.bind({ address: host, port, exclusive: true }, () => {
        this.socket.off('error', onError);
        resolve();
      });
    });
    const every = Math.max(10, Math.min(1000, Math.floor(this.limits.flowIdleMs / 4)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
    const a = this.socket.address();
    return { host: a.address, port: a.port };
  }

  /** Closes every flow (releasing its backend) and the listener socket. Safe to call more than once. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      if (this.sweeper) clearInterval(this.sweeper);
      for (const f of [...this.flows.values()]) this.closeFlow(f, 'shutdown');
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve(); // never bound
      }
    });
    return this.closed;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    if (msg.length > this.limits.maxDatagramBytes) return this.drop('oversize');
    const key = `${rinfo.address}|${rinfo.port}`;
    let f = this.flows.get(key);
    if (f === undefined) {
      f = this.open(key, rinfo);
      if (f === undefined) return;
    } else this.touch(f);
    this.forward(f, msg);
  }

  /** A new flow for a client's first datagram, or undefined (dropped) when no backend can take it. */
  private open(key: string, rinfo: dgram.RemoteInfo): Flow | undefined {
    const rt = this.deps.state().pools.get(this.lc.pool ?? '');
    if (!rt) return this.drop('no-pool');
    if (this.flows.size >= this.limits.maxFlows) {
      const oldest = this.flows.values().next().value;
      if (oldest) {
        this.closeFlow(oldest, 'evicted');
        this.deps.metrics.l4Dropped.inc({ listener: this.name, reason: 'evicted' });
      }
    }
    let got: Backend | Promise<Backend>;
    try {
      got = rt.pool.acquire({ clientIp: rinfo.address, hashKey: rinfo.address });
    } catch (err) {
      if (!(err instanceof BalancerError)) throw err;
      return this.drop(err.code === 'ARCHLAB_QUEUE_FULL' ? 'queue-full' : 'no-backend');
    }
    const now = performance.now();
    const f: Flow = { key, address: rinfo.address, port: rinfo.port, rt, backend: undefined, upstream: undefined, pending: [], lastSeenMs: now, openedMs: now, bytesIn: 0, bytesOut: 0, closed: false };
    this.flows.set(key, f);
    if (got instanceof Promise) {
      got.then(
        (b) => this.attach(f, b),
        (err: unknown) => {
          this.drop(err instanceof BalancerError && err.code === 'ARCHLAB_QUEUE_TIMEOUT' ? 'queue-timeout' : 'no-backend', f.pending?.length ?? 0);
          this.closeFlow(f, 'no-backend');
        },
      );
    } else this.attach(f, got);
    return f;
  }

  /** Binds the flow to its backend: an upstream socket connected to it, answers relayed back. */
  private attach(f: Flow, b: Backend): void {
    if (f.closed) {
      f.rt.pool.release(b);
      return;
    }
    f.backend = b;
    b.connections++;
    this.deps.metrics.l4Connections.inc({ listener: this.name, pool: f.rt.pool.name, backend: b.id });
    const up = dgram.createSocket({ type: isIP(b.host) === 6 ? 'udp6' : 'udp4' });
    f.upstream = up;
    let answered = false;
    up.on('message', (data) => {
      if (f.closed) return;
      if (data.length > this.limits.maxDatagramBytes) return void this.drop('oversize');
      if (!answered) {
        answered = true;
        f.rt.outliers?.recordSuccess(b);
      }
      this.touch(f);
      f.bytesOut += data.length;
      b.bytesOut += data.length;
      this.socket.send(data, f.port, f.address);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (f.closed) return;
      b.failures++;
      f.rt.outliers?.recordFailure(b, 'connect');
      this.deps.logger.warn({ listener: this.name, pool: f.rt.pool.name, backend: b.id, err: err.message }, 'udp backend error; flow closed');
      this.closeFlow(f, `backend ${err.code ?? 'error'}`);
    });
    up.connect(b.port, b.host, () => {
      if (f.closed) return;
      const pending = f.pending ?? [];
      f.pending = undefined;
      for (const msg of pending) this.send(f, up, b, msg);
    });
  }

  private forward(f: Flow, msg: Buffer): void {
    if (f.pending !== undefined) {
      if (f.pending.length >= MAX_PENDING_DATAGRAMS) return void this.drop('pending-full');
      f.pending.push(msg);
      return;
    }
    if (f.upstream && f.backend) this.send(f, f.upstream, f.backend, msg);
  }

  private send(f: Flow, up: dgram.Socket, b: Backend, msg: Buffer): void {
    if (f.closed) return;
    f.bytesIn += msg.length;
    b.bytesIn += msg.length;
    up.send(msg);
  }

  /** Marks the flow active now: it moves to the young end of the map. */
  private touch(f: Flow): void {
    f.lastSeenMs = performance.now();
    this.flows.delete(f.key);
    this.flows.set(f.key, f);
  }

  private sweep(): void {
    const cutoff = performance.now() - this.limits.flowIdleMs;
    for (const f of this.flows.values()) {
      if (f.lastSeenMs > cutoff) break; // recency order: the rest are younger
      this.closeFlow(f, 'idle');
    }
  }

  private closeFlow(f: Flow, end: string): void {
    if (f.closed) return;
    f.closed = true;
    if (this.flows.get(f.key) === f) this.flows.delete(f.key);
    f.pending = undefined;
    try {
      f.upstream?.close();
    } catch {
      // already closed
    }
    if (f.backend) f.rt.pool.release(f.backend);
    if (this.deps.state().config.accessLog) {
      this.deps.logger.info(
        {
          type: 'access',
          mode: 'udp',
          listener: this.name,
          client: f.address,
          clientPort: f.port,
          pool: f.rt.pool.name,
          backend: f.backend?.id ?? null,
          bytesIn: f.bytesIn,
          bytesOut: f.bytesOut,
          end,
          durationMs: Math.round((performance.now() - f.openedMs) * 100) / 100,
        },
        'flow',
      );
    }
  }

  private drop(reason: string, count = 1): undefined {
    if (count > 0) this.deps.metrics.l4Dropped.inc({ listener: this.name, reason }, count);
    return undefined;
  }
}
