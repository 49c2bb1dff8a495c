/**
 * Active TCP health checks (HAProxy `check` with `tcp-check send` / `tcp-check expect string`):
 * connect to the backend, optionally write `send`, and pass once the bytes read contain `expect`
 * (or, without `expect`, once connected and `send` is written). A Redis pool checks with
 * `send: "PING\r\n"`, `expect: "+PONG"`.
 *
 * Only the probe is new: `tcpHealthChecker` builds an ActiveHealthChecker with `tcpHealthRequest`
 * injected as its request, so rounds, rise/fall, the timeout, aborts on stop() and reload behaviour
 * are exactly those of the HTTP checks (health/active.ts).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { SystemClock, type Clock, type TimerHandle } from '../../core/clock.js';
import type { Backend } from '../backend.js';
import type { TcpHealthConfig } from '../config.js';
import { BalancerError } from '../errors.js';
import { ActiveHealthChecker, type ActiveHealthCheckerOptions } from './active.js';

/** What tcpHealthRequest resolves to when the check passes (the checker's expected "status"). */
export const TCP_CHECK_PASSED = 200;
/** Bytes read at most while looking for `expect`; a check that reads more without it fails. */
export const TCP_CHECK_MAX_READ_BYTES = 16 * 1024;

export interface TcpHealthRequestOptions {
  /** Written once connected. Default none. */
  send?: string | undefined;
  /** Passes once the bytes read contain it. Default none: connected (and `send` written) passes. */
  expect?: string | undefined;
  /** Bounds connect + send + expect. Required. */
  timeoutMs: number;
  /** Clock for the timeout. Default: the system clock. */
  clock?: Clock;
  /** Aborting it destroys the connection; the promise (if still pending) rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * One TCP check of `b` over a fresh connection (TLS without certificate checks when `b.tls`).
 * Resolves TCP_CHECK_PASSED; rejects with BalancerError ARCHLAB_UPSTREAM_CONNECT, _RESET, _TIMEOUT,
 * or ARCHLAB_HEALTH_UNEXPECTED when the peer closes, or sends 16 KiB, without `expect`.
 */
export function tcpHealthRequest(b: Pick<Backend, 'host' | 'port' | 'tls' | 'address'>, opts: TcpHealthRequestOptions): Promise<number> {
  const clock = opts.clock ?? new SystemClock();
  const { signal, send, timeoutMs } = opts;
  const expect = opts.expect === undefined ? undefined : Buffer.from(opts.expect);
  return new Promise<number>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const socket = b.tls
      ? tls.connect({ host: b.host, port: b.port, rejectUnauthorized: false, ...(net.isIP(b.host) === 0 ? { servername: b.host } : {}) })
      : net.connect({ host: b.host, port: b.port });
    let settled = false;
    let connected = false;
    let read: Buffer = Buffer.alloc(0);
    const done = (err: unknown): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err === undefined) resolve(TCP_CHECK_PASSED);
      else reject(err);
    };
    const unexpected = (why: string): BalancerError =>
      new BalancerError('ARCHLAB_HEALTH_UNEXPECTED', `health check of ${b.address}: ${why} without ${JSON.stringify(opts.expect)}; read ${JSON.stringify(read.toString('latin1', 0, 64))}`, {
        retryable: true,
      });
    const timer: TimerHandle = clock.setTimer(timeoutMs, () =>
      done(new BalancerError('ARCHLAB_UPSTREAM_TIMEOUT', `health check of ${b.address}: ${!connected ? 'not connected' : expect === undefined ? `${JSON.stringify(send)} not written` : `no ${JSON.stringify(opts.expect)}`} within ${timeoutMs} ms`, { retryable: true })),
    );
    const onAbort = (): void => done(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once(b.tls ? 'secureConnect' : 'connect', () => {
      connected = true;
      if (send !== undefined) {
        socket.write(send, () => {
          if (expect === undefined) done(undefined);
        });
      } else if (expect === undefined) done(undefined);
    });
    socket.on('data', (chunk: Buffer) => {
      if (expect === undefined) return;
      // Everything read so far (bounded by TCP_CHECK_MAX_READ_BYTES), so a split answer still matches.
      read = read.length === 0 ? chunk : Buffer.concat([read, chunk]);
      if (read.indexOf(expect) >= 0) done(undefined);
      else if (read.length >= TCP_CHECK_MAX_READ_BYTES) done(unexpected(`read ${read.length} bytes`));
    });
    socket.on('end', () => done(unexpected('the backend closed the connection')));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      done(
        new BalancerError(connected && RESET_CODES.has(code) ? 'ARCHLAB_UPSTREAM_RESET' : 'ARCHLAB_UPSTREAM_CONNECT', `health check of ${b.address}: ${err.message}`, {
          retryable: true,
          cause: err,
          details: { code },
        }),
      );
    });
  });
}

/** An ActiveHealthChecker whose probe is a TCP check: same rounds, rise/fall and lifecycle as the HTTP checks. */
export function tcpHealthChecker(opts: Omit<ActiveHealthCheckerOptions, 'config' | 'request' | 'label'> & { config: TcpHealthConfig }): ActiveHealthChecker {
  const { send, expect, intervalMs, timeoutMs, rise, fall } = opts.config;
  const clock = opts.clock;
  const label = `TCP check${send === undefined ? '' : ` send ${JSON.stringify(send)}`}${expect === undefined ? '' : ` expect ${JSON.stringify(expect)}`}`;
  return new ActiveHealthChecker({
    ...opts,
    // path and expectStatus mean nothing to a TCP probe: it resolves TCP_CHECK_PASSED or rejects.
    config: { path: '/', expectStatus: [TCP_CHECK_PASSED], intervalMs, timeoutMs, rise, fall },
    label,
    request: (b, _path, ms, signal) => tcpHealthRequest(b, { send, expect, timeoutMs: ms, clock, signal }),
  });
}
