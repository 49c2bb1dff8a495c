import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Logger } from 'pino';
import { ArchlabError, InvalidArgumentError } from './errors.js';
import { formatHostPort, parsePort } from './net.js';
import { SlotSet } from './slot-set.js';

/**
 * Start, stop, drain. Every archlab server is started through `listen()` and so behaves the same:
 * it reports the address it really got, and `close()` stops accepting, lets in-flight requests
 * finish, and after a bounded drain cuts whatever is left.
 */

export interface ServerAddress {
  host: string;
  port: number;
  /** `http://127.0.0.1:8080` for HTTP(S) servers; absent for plain TCP. */
  url?: string;
}

/** What every start() returns. */
export interface ServerHandle {
  address: ServerAddress;
  /** Stops accepting, drains, resolves once every connection is closed. Safe to call more than once. */
  close(): Promise<void>;
}

export interface ListenOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** TCP port; 0 picks a free one, read back into `address.port`. */
  port: number;
  /** How long close() lets in-flight work finish before destroying the connections left. Default 10000 ms. */
  drainTimeoutMs?: number;
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** A server could not bind its address (port in use, no such interface, permission denied). */
export class ListenError extends ArchlabError {
  constructor(host: string, port: number, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const why =
      code === 'EADDRINUSE'
        ? 'address already in use'
        : code === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges)'
          : code === 'EADDRNOTAVAIL'
            ? 'no such local address'
            : cause instanceof Error
              ? cause.message
              : String(cause);
    super('ARCHLAB_LISTEN_FAILED', `cannot listen on ${formatHostPort(host, port)}: ${why}${code ? ` (${code})` : ''}`, {
      cause,
      // Another process may let go of the port (a restart racing its predecessor).
      retryable: code === 'EADDRINUSE',
      details: { host, port, errno: code },
    });
  }
}

function checkDrain(ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms < 0) {
    throw new InvalidArgumentError(`${name} must be a finite number of milliseconds >= 0, got ${ms}`, { [name]: ms });
  }
  return ms;
}

/**
 * Listens on `host:port` and returns a handle. For http/https servers, close() closes idle
 * keep-alive connections at once and makes every response still to come carry `Connection: close`,
 * so busy connections end after their current request; after `drainTimeoutMs` the rest are destroyed.
 * Plain TCP servers get the same bound; their protocol decides when a connection is done.
 * Rejects with ListenError (ARCHLAB_LISTEN_FAILED) when the address cannot be bound.
 */
export async function listen(server: net.Server | http.Server | https.Server, opts: ListenOptions): Promise<ServerHandle> {
  const host = opts.host ?? '127.0.0.1';
  const port = parsePort(opts.port);
  const drainTimeoutMs = checkDrain(opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, 'drainTimeoutMs');
  if (server.listening) throw new InvalidArgumentError('listen(): the server is already listening');

  const isHttps = server instanceof https.Server;
  const isHttp = isHttps || server instanceof http.Server;
  const sockets = new Set<net.Socket>();
  // Responses not yet finished, so close() can mark them `Connection: close`. One add and one
  // delete per request: a SlotSet, not a Set (see slot-set.ts).
  const active = new SlotSet<http.ServerResponse>();
  let closing = false;

  const onConnection = (socket: net.Socket): void => {
    if (closing) {
      // Accepted in the same tick as close(): nothing has been read from it, so nothing is lost.
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  server.on('connection', onConnection);

  const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (closing) res.setHeader('Connection', 'close');
    active.add(res);
    res.once('close', () => active.delete(res));
  };
  if (isHttp) (server as http.Server).prependListener('request', onRequest);

  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        server.off('listening', onListening);
        reject(new ListenError(host, port, err));
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host, port });
    });
  } catch (err) {
    server.off('connection', onConnection);
    if (isHttp) (server as http.Server).off('request', onRequest);
    throw err;
  }

  const bound = server.address();
  const address: ServerAddress =
    bound !== null && typeof bound === 'object' ? { host: bound.address, port: bound.port } : { host, port };
  if (isHttp) {
    // A wildcard address is not somewhere to connect to; the URL points at loopback instead.
    const urlHost = address.host === '0.0.0.0' ? '127.0.0.1' : address.host === '::' ? '::1' : address.host;
    address.url = `${isHttps ? 'https' : 'http'}://${formatHostPort(urlHost, address.port)}`;
  }

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      closing = true;
      let timer: NodeJS.Timeout | undefined;
      server.close(() => {
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      });
      if (isHttp) {
        const h = server as http.Server;
        for (const res of active) {
          if (!res.headersSent) {
            res.setHeader('Connection', 'close');
          } else {
            // Headers promised keep-alive already: end the connection once this response is out.
            const socket = res.socket;
            res.once('finish', () => socket?.end());
          }
        }
        h.closeIdleConnections();
      }
      if (sockets.size > 0) {
        timer = setTimeout(() => {
          if (isHttp) (server as http.Server).closeAllConnections();
          for (const s of sockets) s.destroy();
        }, drainTimeoutMs);
      }
    });
    return closed;
  };

  return { address, close };
}

export interface RunUntilSignalOptions {
  /** Where shutdown is logged. Default: not logged. */
  logger?: Logger;
  /**
   * Bound on the whole shutdown: if the handles have not closed by then, exit with code 1 anyway.
   * Default 15000 ms, above listen()'s own 10 s drain so a server's forced close normally wins.
   */
  drainTimeoutMs?: number;
  /** Called once with the exit code. Default process.exit. */
  exit?: (code: number) => void;
  /** Signals that start a shutdown. Default SIGINT and SIGTERM. */
  signals?: NodeJS.Signals[];
  /**
   * The same signal again within this many ms of the first is the same request, not a second one.
   * One Ctrl-C under `npm start` arrives twice: the terminal sends SIGINT to the whole foreground
   * process group, and npm forwards the one it got to its child. Default 1000 ms.
   */
  repeatWindowMs?: number;
}

export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 15_000;

/**
 * Closes `handles` on the first SIGINT/SIGTERM and exits 0 (1 if a close failed or the drain took
 * longer than `drainTimeoutMs`). A second signal exits at once with 130, unless it is the first one
 * again within `repeatWindowMs` (one Ctrl-C delivered twice). Returns a disposer that removes the
 * signal handlers.
 */
export function runUntilSignal(
  handles: ReadonlyArray<{ close(): Promise<void> }>,
  opts: RunUntilSignalOptions = {},
): () => void {
  const log = opts.logger;
  const drainTimeoutMs = checkDrain(opts.drainTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS, 'drainTimeoutMs');
  const exit = opts.exit ?? ((code: number): void => process.exit(code));
  const signals = opts.signals ?? ['SIGINT', 'SIGTERM'];
  const repeatWindowMs = checkDrain(opts.repeatWindowMs ?? 1000, 'repeatWindowMs');
  let state: 'running' | 'draining' | 'exited' = 'running';
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  let timer: NodeJS.Timeout | undefined;

  const exitOnce = (code: number): void => {
    if (state === 'exited') return;
    state = 'exited';
    if (timer !== undefined) clearTimeout(timer);
    exit(code);
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (state === 'exited') return;
    if (state === 'draining') {
      if (first !== undefined && signal === first.signal && performance.now() - first.at < repeatWindowMs) {
        log?.debug({ signal }, 'the same signal again at once (delivered twice, as under npm): ignored');
        return;
      }
      log?.warn({ signal }, 'second signal, exiting without waiting for the drain');
      exitOnce(130);
      return;
    }
    state = 'draining';
    first = { signal, at: performance.now() };
    // close() is called before the log line so that, once the line is out, no listener accepts.
    const closing = handles.map((h) => {
      try {
        return h.close();
      } catch (err) {
        return Promise.reject(err);
      }
    });
    log?.info({ signal, handles: handles.length, drainTimeoutMs }, 'signal received, draining');
    timer = setTimeout(() => {
      log?.error({ drainTimeoutMs }, 'drain did not finish in time, exiting anyway');
      exitOnce(1);
    }, drainTimeoutMs);
    void Promise.allSettled(closing).then((results) => {
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length > 0) {
        for (const f of failed) log?.error({ err: f.reason }, 'close failed');
        exitOnce(1);
      } else {
        log?.info('drained, exiting');
        exitOnce(0);
      }
    });
  };

  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
  };
}
