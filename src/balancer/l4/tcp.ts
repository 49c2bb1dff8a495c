/**
 * The `mode: tcp` listener: an L4 load balancer that relays byte streams. It decides once per
 * connection (the pool's algorithm, keyed by the client's address) and then only copies bytes;
 * it never reads the payload, except, when configured, a PROXY protocol header and the TLS
 * ClientHello at the start of the stream (both bounded by timeouts.headers and their parsers' byte
 * limits, and the hello is replayed to the backend untouched).
 *
 * Per connection:
 *
 *   accept (paused) -> [read PROXY header] -> [peek ClientHello, route by SNI] -> pool.acquire
 *     -> connect (timeouts.connect) -- failed? next backend, up to retries.attempts, within the budget
 *     -> [write PROXY header] -> replay the peeked bytes -> relay both ways -> release on close
 *
 * - Backpressure: each side stops reading while the other side's write buffer is full, so a slow
 *   reader on either side slows the writer on the other. Bytes from a plain TCP backend are read
 *   into a reused buffer (BackendReader), not a fresh allocation per read.
 * - Half-close: both sockets allow half-open; a FIN from one side ends the other side's writing
 *   while the opposite direction keeps flowing, and the connection closes once both are done.
 * - Idle: no byte either way for timeouts.idle closes both sides.
 * - Limits: limits.maxConnections per listener (server.maxConnections), maxConnections per backend
 *   through the pool (its bounded queue, then the connection is closed), and retries bounded by
 *   the pool's attempts and retry budget. Connect failures and timeouts go to the outlier detector.
 * - Refusals (no backend, a bad or missing PROXY header, no route for the name, ...) close the
 *   client connection and count in archlab_balancer_rejected_total{reason}.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import type { Backend } from '../backend.js';
import type { ListenerConfig, ProxyProtocolConfig } from '../config.js';
import { BalancerError } from '../errors.js';
import { TrustedProxies } from '../l7/headers.js';
import type { BalancerMetrics } from '../metrics.js';
import type { PoolRuntime, ProxyState } from '../runtime.js';
import { L4ProtocolError } from './errors.js';
import { encodeV1, encodeV2, parseProxyHeader, type ProxyHeader } from './proxy-protocol.js';
import { SniRouter } from './sni-router.js';
import { parseClientHello } from './sni.js';

/** What an L4 listener needs that outlives a connection (the same as the L7 proxy's). */
export interface L4Deps {
  state: () => ProxyState;
  metrics: BalancerMetrics;
  logger: Logger;
}

interface Endpoint {
  ip: string;
  port: number;
}

type Preread =
  | { kind: 'ok'; head: Buffer; proxy: ProxyHeader | undefined; serverName: string | undefined }
  | { kind: 'refused'; reason: string; detail: string };

type Connected = { kind: 'connected'; socket: net.Socket } | { kind: 'failed'; reason: string; timeout: boolean; clientGone: boolean };

const EMPTY: Buffer = Buffer.alloc(0);
const noop = (): void => undefined;

export class TcpListener {
  readonly server: net.Server;
  /** The listener's name in logs and metrics. */
  readonly name: string;
  private readonly sni: SniRouter | undefined;
  private readonly proxyProtocol: ProxyProtocolConfig | undefined;
  /** Peers whose PROXY header is believed; undefined = any peer. */
  private readonly trusted: TrustedProxies | undefined;
  private readonly preread: boolean;
  private closing = false;

  constructor(
    private readonly lc: ListenerConfig,
    private readonly deps: L4Deps,
  ) {
    this.name = lc.name ?? 'tcp';
    this.sni = lc.sni ? new SniRouter(lc.sni.routes, lc.sni.defaultPool ?? lc.pool) : undefined;
    this.proxyProtocol = lc.proxyProtocol;
    const from = lc.proxyProtocol?.acceptFrom ?? [];
    this.trusted = from.length > 0 ? new TrustedProxies(from) : undefined;
    this.preread = lc.proxyProtocol?.accept !== undefined || this.sni !== undefined;
    // Paused: nothing is read from a client before its backend is connected (unless a header or
    // a hello must be read first), so a queued connection holds no payload in memory.
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.onConnection(socket));
    this.server.maxConnections = deps.state().config.limits.maxConnections;
  }

  /** New connections are refused from now on; relayed ones carry on until the server's drain ends. */
  shutdown(): void {
    this.closing = true;
  }

  private onConnection(client: net.Socket): void {
    // Every failure of the client socket ends in 'close', which is where it is handled.
    client.on('error', noop);
    if (this.closing) {
      client.destroy();
      return;
    }
    this.serve(client).catch((err: unknown) => {
      this.deps.logger.error({ err, listener: this.name }, 'unexpected error in a tcp connection');
      client.destroy();
    });
  }

  private async serve(client: net.Socket): Promise<void> {
    const t0 = performance.now();
    const state = this.deps.state();
    const { timeouts } = state.config;
    let gone = false;
    client.once('close', () => {
      gone = true;
    });
    const peer: Endpoint = { ip: client.remoteAddress ?? '', port: client.remotePort ?? 0 };
    let src = peer;
    let dst: Endpoint = { ip: client.localAddress ?? '', port: client.localPort ?? 0 };
    let head: Buffer = EMPTY;
    let serverName: string | undefined;
    if (this.preread) {
      const pre = await this.readHead(client, peer.ip, timeouts.headersMs);
      if (pre.kind === 'refused') return this.refuse(client, pre.reason, pre.detail, src, t0);
      head = pre.head;
      serverName = pre.serverName;
      const p = pre.proxy;
      // LOCAL, UNKNOWN and unspec headers carry no client: the real connection's endpoints stand.
      if (p && p.command === 'PROXY' && (p.family === 'inet' || p.family === 'inet6') && p.srcAddr !== undefined && p.dstAddr !== undefined) {
        src = { ip: p.srcAddr, port: p.srcPort ?? 0 };
        dst = { ip: p.dstAddr, port: p.dstPort ?? 0 };
      }
    }
    if (gone) return;

    const poolName = this.sni ? this.sni.route(serverName) : this.lc.pool;
    if (poolName === undefined) return this.refuse(client, 'no-route', `no sni route for ${serverName === undefined ? 'a stream without a server name' : JSON.stringify(serverName)}`, src, t0);
    const rt = state.pools.get(poolName);
    if (!rt) return this.refuse(client, 'no-pool', `pool "${poolName}" is not in the running config`, src, t0);

    const ctx = { clientIp: src.ip, hashKey: src.ip };
    const attempts = 1 + rt.pool.config.retries.attempts;
    rt.budget.recordRequest();
    const tried = new Set<Backend>();
    let last = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      let b: Backend;
      try {
        const got = rt.pool.acquire(ctx, tried);
        b = got instanceof Promise ? await got : got;
      } catch (err) {
        if (!(err instanceof BalancerError)) throw err;
        const reason = err.code === 'ARCHLAB_QUEUE_FULL' ? 'queue-full' : err.code === 'ARCHLAB_QUEUE_TIMEOUT' ? 'queue-timeout' : tried.size > 0 ? 'upstream-connect' : 'no-backend';
        return this.refuse(client, reason, tried.size > 0 ? `${last}; ${err.message}` : err.message, src, t0, rt.pool.name);
      }
      if (gone) {
        rt.pool.release(b);
        return;
      }
      tried.add(b);
      const c0 = performance.now();
      const reader = b.tls ? undefined : new BackendReader(client, b);
      const r = await this.connect(b, timeouts.connectMs, client, reader);
      if (r.kind === 'connected') {
        rt.outliers?.recordSuccess(b);
        rt.pool.picker.observe?.(b, performance.now() - c0, true);
        this.relay(client, r.socket, reader, b, rt, head, src, dst, { t0, serverName, attempts: attempt + 1, idleMs: timeouts.idleMs });
        return;
      }
      rt.pool.release(b);
      if (r.clientGone) return;
      b.failures++;
      rt.outliers?.recordFailure(b, r.timeout ? 'timeout' : 'connect');
      rt.pool.picker.observe?.(b, performance.now() - c0, false);
      last = `backend ${b.id}: ${r.reason}`;
      this.deps.logger.warn({ listener: this.name, pool: rt.pool.name, backend: b.id, reason: r.reason }, 'tcp connect to backend failed');
      if (attempt + 1 >= attempts || !rt.budget.tryAcquire()) break;
      this.deps.metrics.retries.inc({ pool: rt.pool.name });
    }
    this.refuse(client, 'upstream-connect', last, src, t0, rt.pool.name);
  }

  /**
   * Reads what must be read before a backend is chosen: the PROXY header (when accepted from this
   * peer) and the ClientHello (when routing by SNI). Bounded by `ms` and by the parsers' limits
   * (PROXY v1 107 bytes, v2 4 KiB, hello 16 KiB). The socket is paused again on return.
   */
  private readHead(client: net.Socket, peerIp: string, ms: number): Promise<Preread> {
    const accept = this.proxyProtocol?.accept;
    const believed = accept !== undefined && (this.trusted === undefined || this.trusted.has(peerIp));
    if (accept !== undefined && accept !== 'optional' && !believed) {
      return Promise.resolve({ kind: 'refused', reason: 'proxy-untrusted', detail: `peer ${peerIp} is not in proxyProtocol.acceptFrom` });
    }
    let wantProxy = believed;
    const wantHello = this.sni !== undefined;
    // accept: optional from a peer not in acceptFrom, without SNI: nothing to read first.
    if (!wantProxy && !wantHello) return Promise.resolve({ kind: 'ok', head: EMPTY, proxy: undefined, serverName: undefined });
    return new Promise<Preread>((resolve) => {
      let buf: Buffer = EMPTY;
      let proxy: ProxyHeader | undefined;
      let offset = 0;
      let settled = false;
      const finish = (r: Preread): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.off('data', onData);
        client.off('end', onEnd);
        client.off('close', onClose);
        client.pause();
        resolve(r);
      };
      const refused = (reason: string, detail: string): Preread => ({ kind: 'refused', reason, detail });
      const step = (): void => {
        if (wantProxy) {
          const r = parseProxyHeader(buf);
          if (r.kind === 'incomplete') return;
          if (r.kind === 'none') {
            if (accept !== 'optional') return finish(refused('proxy-missing', 'the stream does not start with a PROXY header'));
          } else {
            if ((accept === 'v1' && r.version !== 1) || (accept === 'v2' && r.version !== 2)) {
              return finish(refused('proxy-version', `PROXY header v${r.version}, the listener accepts ${accept} only`));
            }
            proxy = r;
            offset = r.length;
          }
          wantProxy = false;
        }
        let serverName: string | undefined;
        if (wantHello) {
          const h = parseClientHello(buf.subarray(offset));
          if (h.kind === 'incomplete') return;
          serverName = h.kind === 'hello' ? h.serverName : undefined;
        }
        finish({ kind: 'ok', head: buf.subarray(offset), proxy, serverName });
      };
      const onData = (chunk: Buffer): void => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        try {
          step();
        } catch (err) {
          if (err instanceof L4ProtocolError) finish(refused(err.code.startsWith('ARCHLAB_PROXY') ? 'proxy-invalid' : 'tls-hello-invalid', err.message));
          else finish(refused('internal', err instanceof Error ? err.message : String(err)));
        }
      };
      const onEnd = (): void => finish(refused('client-closed', 'the client closed before the stream could be routed'));
      const onClose = (): void => finish(refused('client-closed', 'the client closed before the stream could be routed'));
      const timer = setTimeout(() => {
        // accept: optional and not a byte yet: a server-speaks-first protocol; go on without a header.
        if (wantProxy && accept === 'optional' && !wantHello && buf.length === 0) return finish({ kind: 'ok', head: EMPTY, proxy: undefined, serverName: undefined });
        finish(refused('preread-timeout', `${wantProxy ? 'no complete PROXY header' : 'no complete TLS ClientHello'} within ${ms} ms (timeouts.headers)`));
      }, ms);
      client.on('data', onData);
      client.on('end', onEnd);
      client.on('close', onClose);
      // Accepted paused (pauseOnConnect sets readableFlowing = false): a 'data' listener alone does not start reading.
      client.resume();
    });
  }

  /**
   * Connects to `b` within `connectMs`; gives up at once if the client leaves meanwhile. A plain
   * TCP backend socket reads through `reader` (see BackendReader) and starts paused: nothing is
   * read from the backend before relay() is ready to forward it.
   */
  private connect(b: Backend, connectMs: number, client: net.Socket, reader: BackendReader | undefined): Promise<Connected> {
    return new Promise<Connected>((resolve) => {
      let up: net.Socket;
      if (b.tls) {
        up = tls.connect({ host: b.host, port: b.port, rejectUnauthorized: false, ...(net.isIP(b.host) === 0 ? { servername: b.host } : {}) });
      } else {
        up = net.connect({ host: b.host, port: b.port, allowHalfOpen: true, ...(reader ? { onread: reader.onread } : {}) });
        up.pause();
      }
      up.on('error', noop);
      let settled = false;
      const finish = (r: Connected): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        up.off('error', onError);
        client.off('close', onClientClose);
        if (r.kind === 'failed') up.destroy();
        resolve(r);
      };
      const timer = setTimeout(() => finish({ kind: 'failed', reason: `connect timed out after ${connectMs} ms`, timeout: true, clientGone: false }), connectMs);
      const onError = (err: NodeJS.ErrnoException): void => finish({ kind: 'failed', reason: `${err.code ?? 'error'}: ${err.message}`, timeout: false, clientGone: false });
      const onClientClose = (): void => finish({ kind: 'failed', reason: 'client closed', timeout: false, clientGone: true });
      up.on('error', onError);
      client.once('close', onClientClose);
      up.once(b.tls ? 'secureConnect' : 'connect', () => finish({ kind: 'connected', socket: up }));
    });
  }

  /**
   * Splices client and backend until both directions are done; releases the backend once.
   *
   * Backend -> client goes through `reader` (plain TCP backends; see BackendReader); client ->
   * backend, and both ways for a TLS backend, through 'data' handlers that write on and pause the
   * reading side while the writing side's buffer is full (what pipe() does, without its
   * per-chunk bookkeeping). Byte totals are plain number fields, added to once per read.
   */
  private relay(
    client: net.Socket,
    up: net.Socket,
    reader: BackendReader | undefined,
    b: Backend,
    rt: PoolRuntime,
    head: Buffer,
    src: Endpoint,
    dst: Endpoint,
    info: { t0: number; serverName: string | undefined; attempts: number; idleMs: number },
  ): void {
    b.connections++;
    this.deps.metrics.l4Connections.inc({ listener: this.name, pool: rt.pool.name, backend: b.id });
    up.setNoDelay(true);
    client.setNoDelay(true);
    // The PROXY header and the bytes already read leave in one segment.
    up.cork();
    const send = this.proxyProtocol?.send;
    if (send !== undefined) up.write(proxyHeader(send, src, dst));
    const counts = { in: head.length, out: 0 };
    if (head.length > 0) {
      up.write(head);
      b.bytesIn += head.length;
    }
    up.uncork();
    let end = 'done';
    const onIdle = (): void => {
      end = 'idle';
      client.destroy();
      up.destroy();
    };
    client.setTimeout(info.idleMs, onIdle);
    up.setTimeout(info.idleMs, onIdle);
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (end === 'done') end = `client ${err.code ?? 'error'}`;
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (end === 'done') end = `backend ${err.code ?? 'error'}`;
    });
    let open = 2;
    const closed = (): void => {
      if (--open > 0) return;
      reader?.close();
      rt.pool.release(b);
      this.logAccess(src, rt.pool.name, b.id, info.serverName, counts.in, reader ? reader.bytes : counts.out, info.attempts, end, info.t0);
    };
    // A side that closed with its peer still owed bytes (a reset, an idle cut) takes the other
    // down; one that closed after a clean FIN both ways leaves the other to flush and close.
    client.once('close', () => {
      if (!up.writableEnded) up.destroy();
      closed();
    });
    up.once('close', () => {
      if (!client.writableEnded) client.destroy();
      closed();
    });

    // Client -> backend.
    client.on('data', (c: Buffer) => {
      counts.in += c.length;
      b.bytesIn += c.length;
      if (up.writable && !up.write(c)) client.pause();
    });
    up.on('drain', () => client.resume());
    client.on('end', () => up.end());

    // Backend -> client.
    if (reader) {
      reader.start(up);
    } else {
      up.on('data', (c: Buffer) => {
        counts.out += c.length;
        b.bytesOut += c.length;
        if (client.writable && !client.write(c)) up.pause();
      });
      client.on('drain', () => up.resume());
    }
    up.on('end', () => client.end());
    // Accepted paused (pauseOnConnect), and so was a plain backend socket: start both flowing.
    client.resume();
    up.resume();
  }

  private refuse(client: net.Socket, reason: string, detail: string, src: Endpoint, t0: number, pool?: string): void {
    client.destroy();
    if (reason === 'client-closed') return;
    this.deps.metrics.rejected.inc({ reason: `tcp-${reason}` });
    this.deps.logger.warn({ listener: this.name, client: src.ip, pool, reason, detail }, 'tcp connection refused');
    this.logAccess(src, pool ?? '-', undefined, undefined, 0, 0, 0, reason, t0);
  }

  private logAccess(src: Endpoint, pool: string, backend: string | undefined, serverName: string | undefined, bytesIn: number, bytesOut: number, attempts: number, end: string, t0: number): void {
    if (!this.deps.state().config.accessLog) return;
    this.deps.logger.info(
      {
        type: 'access',
        mode: 'tcp',
        listener: this.name,
        client: src.ip,
        clientPort: src.port,
        serverName,
        pool,
        backend: backend ?? null,
        bytesIn,
        bytesOut,
        attempts,
        end,
        durationMs: Math.round((performance.now() - t0) * 100) / 100,
      },
      'connection',
    );
  }
}

/** First read buffer of a backend connection, bytes (HAProxy's and nginx stream's buffer size). */
export const READ_MIN_BYTES = 16 * 1024;
/** Largest read buffer, bytes: reached by doubling while reads fill the buffer (a bulk transfer). */
export const READ_MAX_BYTES = 256 * 1024;
/**
 * Bytes all connections together may hold in read buffers beyond READ_MIN_BYTES each (64 MiB): past
 * it, buffers stop growing, so 10,000 connections that once moved bulk data hold at most
 * 10,000 x 16 KiB + 64 MiB, not 10,000 x 256 KiB.
 */
export const READ_GROWTH_BUDGET_BYTES = 64 * 1024 * 1024;
let readGrowth = 0;

/**
 * The backend -> client direction of a relayed connection to a plain TCP backend. The backend
 * socket reads into this object's buffer (net's `onread`) instead of a fresh 64 KiB allocation per
 * read, and every read is written to the client at once:
 *
 * - The buffer is reused, so it stays in the CPU cache; after a read whose write to the client
 *   did not complete at once (the write still references the buffer) the next read gets a new one.
 * - It starts at READ_MIN_BYTES and doubles up to READ_MAX_BYTES while reads fill it (within
 *   READ_GROWTH_BUDGET_BYTES), so an interactive connection holds 16 KiB and a bulk one reads in
 *   few, large system calls.
 * - Backpressure: when the client's write buffer is full, the read callback returns false, which
 *   stops reading from the backend until the client drains.
 */
export class BackendReader {
  /** Bytes relayed backend -> client. */
  bytes = 0;
  /** What net.connect takes as `onread`; made once per connection. */
  readonly onread: { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean };
  private buf: Buffer = Buffer.allocUnsafeSlow(READ_MIN_BYTES);
  private last = 0;
  private paused = false;

  constructor(
    private readonly client: net.Socket,
    private readonly backend: Backend,
  ) {
    this.onread = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onRead(n, buf) };
  }

  /** Starts forwarding `up`'s reads (the caller resumes `up`). */
  start(up: net.Socket): void {
    this.client.on('drain', () => {
      if (!this.paused) return;
      this.paused = false;
      up.resume();
    });
  }

  /** The connection is over: its buffer no longer counts against the growth budget. */
  close(): void {
    readGrowth -= this.buf.length - READ_MIN_BYTES;
    this.buf = EMPTY;
  }

  /** Where the next read goes (net calls this once at connect and after every read). */
  private nextBuffer(): Buffer {
    let size = this.buf.length;
    if (this.last === size && size < READ_MAX_BYTES && readGrowth + size <= READ_GROWTH_BUDGET_BYTES) {
      readGrowth += size;
      size *= 2;
    } else if (this.client.writableLength === 0) {
      return this.buf; // the last read was written through: its buffer is free again
    }
    this.buf = Buffer.allocUnsafeSlow(size);
    return this.buf;
  }

  private onRead(n: number, buf: Buffer): boolean {
    this.last = n;
    this.bytes += n;
    this.backend.bytesOut += n;
    const client = this.client;
    if (!client.writable) return true; // the client is gone or done: what is left is dropped, as with pipe()
    if (client.write(n === buf.length ? buf : buf.subarray(0, n))) return true;
    this.paused = true;
    return false;
  }
}

/** The dotted quad of an IPv4 or IPv4-mapped IPv6 address; undefined otherwise. */
function ipv4Of(ip: string): string | undefined {
  if (net.isIPv4(ip)) return ip;
  if (ip.toLowerCase().startsWith('::ffff:') && net.isIPv4(ip.slice(7))) return ip.slice(7);
  return undefined;
}

/**
 * The PROXY header telling the backend about `src` -> `dst`: TCP4 / inet when both are IPv4
 * (IPv4-mapped included), TCP6 / inet6 otherwise (an IPv4 side mapped into IPv6), UNKNOWN /
 * unspec when an address is missing (a socket already gone).
 */
export function proxyHeader(version: 'v1' | 'v2', src: Endpoint, dst: Endpoint): Buffer {
  const s4 = ipv4Of(src.ip);
  const d4 = ipv4Of(dst.ip);
  const v6 = (ip: string, v4: string | undefined): string | undefined => (v4 !== undefined ? `::ffff:${v4}` : net.isIPv6(ip.split('%')[0] ?? '') ? ip.split('%')[0] : undefined);
  if (s4 !== undefined && d4 !== undefined) {
    return version === 'v1'
      ? encodeV1({ family: 'TCP4', srcAddr: s4, dstAddr: d4, srcPort: src.port, dstPort: dst.port })
      : encodeV2({ command: 'PROXY', family: 'inet', protocol: 'stream', srcAddr: s4, dstAddr: d4, srcPort: src.port, dstPort: dst.port });
  }
  const s6 = v6(src.ip, s4);
  const d6 = v6(dst.ip, d4);
  if (s6 === undefined || d6 === undefined) return version === 'v1' ? encodeV1({ family: 'UNKNOWN' }) : encodeV2({ command: 'PROXY', family: 'unspec' });
  return version === 'v1'
    ? encodeV1({ family: 'TCP6', srcAddr: s6, dstAddr: d6, srcPort: src.port, dstPort: dst.port })
    : encodeV2({ command: 'PROXY', family: 'inet6', protocol: 'stream', srcAddr: s6, dstAddr: d6, srcPort: src.port, dstPort: dst.port });
}
