/**
 * The payments service of `archlab up`: a stand-in for a third party the app must call before an
 * order stands (a card processor's "authorize" call), so the app's outbound path (app -> forward
 * proxy -> payments) carries real requests with a real latency and can be made to fail.
 *
 * HTTP API (JSON; errors are `{ error: { code, message, field? } }` with a typed code):
 *   POST /charges   { orderId, userId, amountCents } -> 201 { id, status: "authorized", orderId, amountCents }
 *                   400 bad field (named), 413 body over maxBodyBytes, 415 not application/json,
 *                   503 ARCHLAB_PAYMENTS_UNAVAILABLE when made to fail (failureRate),
 *                   503 ARCHLAB_PAYMENTS_BUSY over maxInFlight, 503 ARCHLAB_PAYMENTS_CLOSED while closing
 *   GET  /healthz   200 { status: "ok", latencyMs, failureRate }
 *   GET  /metrics   Prometheus text (archlab_payments_charges_total{result}, archlab_payments_in_flight)
 *
 * `orderId` is the caller's reference for the charge (the app authorizes before its database has
 * given the order an id; see src/up/app/payments-client.ts), 1-64 letters, digits, ".", "_", ":"
 * or "-". Every answer to POST /charges, failures included, comes after `latencyMs`.
 *
 * What it is not: no money moves and nothing is stored. An authorization exists as the answer and
 * the counter; it is never captured, so one whose order did not commit simply lapses, as a real
 * authorization hold does. That keeps the service bounded: its memory is its counters and the
 * requests in flight (at most maxInFlight, each with one timer).
 */
import * as http from 'node:http';
import { Counter, Gauge } from 'prom-client';
import { z } from 'zod';
import {
  ArchlabError,
  createRegistry,
  HttpError,
  InvalidArgumentError,
  listen,
  readBody,
  SystemRandom,
  type Logger,
  type Random,
  type Registry,
  type ServerAddress,
  type ServerHandle,
} from '../core/index.js';

/** Longest artificial latency, in ms: beyond any sane caller deadline, below the server's idle timeout. */
export const MAX_PAYMENTS_LATENCY_MS = 30_000;
/** Largest amount one charge may authorize, in cents. */
export const MAX_AMOUNT_CENTS = 1_000_000_000_000;

export type PaymentsErrorCode =
  | 'ARCHLAB_PAYMENTS_BAD_REQUEST'
  | 'ARCHLAB_PAYMENTS_NOT_FOUND'
  | 'ARCHLAB_PAYMENTS_METHOD_NOT_ALLOWED'
  | 'ARCHLAB_PAYMENTS_UNSUPPORTED_MEDIA_TYPE'
  | 'ARCHLAB_PAYMENTS_BODY_TOO_LARGE'
  | 'ARCHLAB_PAYMENTS_UNAVAILABLE'
  | 'ARCHLAB_PAYMENTS_BUSY'
  | 'ARCHLAB_PAYMENTS_CLOSED'
  | 'ARCHLAB_PAYMENTS_INTERNAL';

const STATUS: Record<PaymentsErrorCode, number> = {
  ARCHLAB_PAYMENTS_BAD_REQUEST: 400,
  ARCHLAB_PAYMENTS_NOT_FOUND: 404,
  ARCHLAB_PAYMENTS_METHOD_NOT_ALLOWED: 405,
  ARCHLAB_PAYMENTS_UNSUPPORTED_MEDIA_TYPE: 415,
  ARCHLAB_PAYMENTS_BODY_TOO_LARGE: 413,
  ARCHLAB_PAYMENTS_UNAVAILABLE: 503,
  ARCHLAB_PAYMENTS_BUSY: 503,
  ARCHLAB_PAYMENTS_CLOSED: 503,
  ARCHLAB_PAYMENTS_INTERNAL: 500,
};

const RETRYABLE = new Set<PaymentsErrorCode>(['ARCHLAB_PAYMENTS_UNAVAILABLE', 'ARCHLAB_PAYMENTS_BUSY', 'ARCHLAB_PAYMENTS_CLOSED']);

/** An error the payments service answers with: a stable code and its HTTP status. */
export class PaymentsError extends ArchlabError {
  override readonly code: PaymentsErrorCode;
  readonly status: number;
  /** The request field at fault, when there is one. */
  readonly field: string | undefined;

  constructor(code: PaymentsErrorCode, message: string, field?: string) {
    super(code, message, { retryable: RETRYABLE.has(code) });
    this.code = code;
    this.status = STATUS[code];
    this.field = field;
  }
}

export interface PaymentsOptions {
  /** Interface to bind. Default "127.0.0.1". */
  host?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Added to every answer of POST /charges, in ms, 0..MAX_PAYMENTS_LATENCY_MS. Default 5. */
  latencyMs?: number;
  /** Share of charges answered 503 ARCHLAB_PAYMENTS_UNAVAILABLE, 0..1 (1 = every charge fails). Default 0. */
  failureRate?: number;
  /** Draws which charges fail and the charge ids. Default: a SystemRandom. */
  random?: Random;
  /** POST /charges being answered at once; more get 503 ARCHLAB_PAYMENTS_BUSY at once. Default 1000. */
  maxInFlight?: number;
  /** Largest request body; bigger gets 413. Default 4096 bytes. */
  maxBodyBytes?: number;
  /** Concurrent connections; more are refused. Default 1024. */
  maxConnections?: number;
  /** How long close() lets requests in flight finish, in ms. Default 2000. */
  drainTimeoutMs?: number;
  logger?: Logger;
}

export interface PaymentsStats {
  /** Charges authorized (201). */
  charges: number;
  /** Requests refused for bad input: 400, 413, 415 on POST /charges. */
  refused: number;
  /** Charges answered 503 on purpose (failureRate). */
  failed: number;
  /** Charges answered 503 at once because maxInFlight were being answered. */
  busy: number;
  /** POST /charges being answered now. */
  inFlight: number;
  latencyMs: number;
  failureRate: number;
}

export interface PaymentsHandle {
  readonly address: ServerAddress;
  /** http://127.0.0.1:port */
  readonly url: string;
  /** The service's own metrics (served on GET /metrics). */
  readonly registry: Registry;
  /** Sets the artificial latency, ms (0..MAX_PAYMENTS_LATENCY_MS); applies to charges received from now on. */
  setLatency(ms: number): void;
  /** Sets the share of charges that fail with 503, 0..1. */
  setFailureRate(rate: number): void;
  stats(): PaymentsStats;
  /** Answers the charges still waiting out their latency with 503 ARCHLAB_PAYMENTS_CLOSED, then closes the listener (drains). Idempotent. */
  close(): Promise<void>;
}

const zCharge = z.strictObject({
  orderId: z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9._:-]{1,64}$/, 'expected 1-64 letters, digits, ".", "_", ":" or "-"'),
  userId: z.int({ error: 'expected a positive integer' }).min(1, 'expected a positive integer').max(2_147_483_647, 'expected at most 2147483647'),
  amountCents: z.int({ error: `expected an integer 1..${MAX_AMOUNT_CENTS}` }).min(1, `expected an integer 1..${MAX_AMOUNT_CENTS}`).max(MAX_AMOUNT_CENTS, `expected an integer 1..${MAX_AMOUNT_CENTS}`),
});

/** The first zod issue as a 400 naming its field. */
function badField(error: z.ZodError): PaymentsError {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') return new PaymentsError('ARCHLAB_PAYMENTS_BAD_REQUEST', `${issue.keys[0]!}: unknown field`, issue.keys[0]!);
  const field = issue.path.map(String).join('.');
  const message = issue.message.replace(/^Invalid input: /, '');
  return field === '' ? new PaymentsError('ARCHLAB_PAYMENTS_BAD_REQUEST', message) : new PaymentsError('ARCHLAB_PAYMENTS_BAD_REQUEST', `${field}: ${message}`, field);
}

function checkLatency(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_PAYMENTS_LATENCY_MS) throw new InvalidArgumentError(`payments latencyMs must be an integer 0..${MAX_PAYMENTS_LATENCY_MS}, got ${ms}`);
  return ms;
}

function checkRate(rate: number): number {
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) throw new InvalidArgumentError(`payments failureRate must be a number 0..1, got ${rate}`);
  return rate;
}

const JSON_TYPE = 'application/json; charset=utf-8';

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

/** A charge waiting out its latency: how to answer it now (close() does, early). */
interface Waiting {
  timer: NodeJS.Timeout;
  answer(): void;
}

/** Starts the payments service on a loopback port. */
export async function startPayments(opts: PaymentsOptions = {}): Promise<PaymentsHandle> {
  let latencyMs = checkLatency(opts.latencyMs ?? 5);
  let failureRate = checkRate(opts.failureRate ?? 0);
  const positive = (name: string, v: number): number => {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`payments ${name} must be a positive integer, got ${v}`);
    return v;
  };
  const maxInFlight = positive('maxInFlight', opts.maxInFlight ?? 1000);
  const maxBodyBytes = positive('maxBodyBytes', opts.maxBodyBytes ?? 4096);
  const maxConnections = positive('maxConnections', opts.maxConnections ?? 1024);
  const random = opts.random ?? new SystemRandom();
  const logger = opts.logger;

  const counts = { charges: 0, refused: 0, failed: 0, busy: 0 };
  const waiting = new Set<Waiting>();
  let inFlight = 0;
  let closing = false;

  const registry = createRegistry({ labels: { server: 'payments' } });
  new Counter({
    name: 'archlab_payments_charges_total',
    help: 'POST /charges answered, by result: authorized, refused (bad input), failed (made to fail), busy (over maxInFlight).',
    labelNames: ['result'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ result: 'authorized' }, counts.charges);
      this.inc({ result: 'refused' }, counts.refused);
      this.inc({ result: 'failed' }, counts.failed);
      this.inc({ result: 'busy' }, counts.busy);
    },
  });
  new Gauge({
    name: 'archlab_payments_in_flight',
    help: 'POST /charges being answered (waiting out the latency).',
    registers: [registry],
    collect() {
      this.set(inFlight);
    },
  });

  const chargeId = (): string => `ch_${random.uint32().toString(16).padStart(8, '0')}${random.uint32().toString(16).padStart(8, '0')}`;

  const readCharge = async (req: http.IncomingMessage): Promise<z.output<typeof zCharge>> => {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      throw new PaymentsError('ARCHLAB_PAYMENTS_UNSUPPORTED_MEDIA_TYPE', `expected Content-Type: application/json, received ${type === '' ? 'none' : JSON.stringify(type.slice(0, 64))}`);
    }
    let body: Buffer;
    try {
      body = await readBody(req, maxBodyBytes);
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) throw new PaymentsError('ARCHLAB_PAYMENTS_BODY_TOO_LARGE', `request body is over the ${maxBodyBytes}-byte limit`);
      throw new PaymentsError('ARCHLAB_PAYMENTS_BAD_REQUEST', `could not read the request body: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new PaymentsError('ARCHLAB_PAYMENTS_BAD_REQUEST', `request body is not JSON: ${(err as Error).message}`);
    }
    const parsed = zCharge.safeParse(json);
    if (!parsed.success) throw badField(parsed.error);
    return parsed.data;
  };

  const fail = (res: http.ServerResponse, e: PaymentsError): void => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A body we did not read is not drained: close the connection instead.
    const close = e.code === 'ARCHLAB_PAYMENTS_BODY_TOO_LARGE' || e.code === 'ARCHLAB_PAYMENTS_UNSUPPORTED_MEDIA_TYPE' || e.code === 'ARCHLAB_PAYMENTS_BUSY';
    send(res, e.status, { error: { code: e.code, message: e.message, ...(e.field === undefined ? {} : { field: e.field }) } }, close ? { Connection: 'close' } : {});
  };

  /** Waits out the latency (cut short by close()), then answers with `decide()`'s result. */
  const afterLatency = (res: http.ServerResponse, delayMs: number, decide: () => void): void => {
    inFlight++;
    let done = false;
    const w: Waiting = {
      timer: setTimeout(() => w.answer(), delayMs),
      answer: () => {
        if (done) return;
        done = true;
        clearTimeout(w.timer);
        waiting.delete(w);
        inFlight--;
        if (res.destroyed) return;
        if (closing) fail(res, new PaymentsError('ARCHLAB_PAYMENTS_CLOSED', 'the payments service is shutting down'));
        else decide();
      },
    };
    waiting.add(w);
    // A caller that gave up (its own timeout) frees the slot at once.
    res.once('close', () => {
      if (!done) w.answer();
    });
  };

  const charge = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (inFlight >= maxInFlight) {
      counts.busy++;
      throw new PaymentsError('ARCHLAB_PAYMENTS_BUSY', `${maxInFlight} charges in flight already`);
    }
    let c: z.output<typeof zCharge>;
    try {
      c = await readCharge(req);
    } catch (err) {
      if (err instanceof PaymentsError) counts.refused++;
      throw err;
    }
    afterLatency(res, latencyMs, () => {
      if (failureRate > 0 && random.next() < failureRate) {
        counts.failed++;
        fail(res, new PaymentsError('ARCHLAB_PAYMENTS_UNAVAILABLE', 'the payments service could not authorize the charge (failing on purpose)'));
        return;
      }
      counts.charges++;
      send(res, 201, { id: chargeId(), status: 'authorized', orderId: c.orderId, amountCents: c.amountCents });
    });
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const notAllowed = (allow: string): never => {
      res.setHeader('Allow', allow);
      throw new PaymentsError('ARCHLAB_PAYMENTS_METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`);
    };
    if (path === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      send(res, 200, { status: 'ok', latencyMs, failureRate });
      return;
    }
    if (path === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') notAllowed('GET, HEAD');
      const text = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (path === '/charges') {
      if (method !== 'POST') notAllowed('POST');
      if (closing) throw new PaymentsError('ARCHLAB_PAYMENTS_CLOSED', 'the payments service is shutting down');
      await charge(req, res);
      return;
    }
    throw new PaymentsError('ARCHLAB_PAYMENTS_NOT_FOUND', `no route ${method} ${path.slice(0, 200)}`);
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    route(req, res).catch((err: unknown) => {
      const e = err instanceof PaymentsError ? err : new PaymentsError('ARCHLAB_PAYMENTS_INTERNAL', 'internal error');
      if (e.code === 'ARCHLAB_PAYMENTS_INTERNAL') logger?.error({ err }, 'payments: request failed');
      fail(res, e);
    });
  };

  const server = http.createServer({ keepAliveTimeout: 5000, headersTimeout: 5000, requestTimeout: 10_000, maxHeaderSize: 16 * 1024 }, handler);
  server.maxConnections = maxConnections;
  // A socket with no traffic either way is closed after this: longer than the longest latency.
  server.timeout = MAX_PAYMENTS_LATENCY_MS + 30_000;
  const listener: ServerHandle = await listen(server, { ...(opts.host === undefined ? {} : { host: opts.host }), port: opts.port ?? 0, drainTimeoutMs: opts.drainTimeoutMs ?? 2000 });
  logger?.info({ address: listener.address, latencyMs, failureRate }, 'payments: listening');

  let closed: Promise<void> | undefined;
  return {
    address: listener.address,
    url: listener.address.url!,
    registry,
    setLatency(ms) {
      latencyMs = checkLatency(ms);
      logger?.info({ latencyMs }, 'payments: latency set');
    },
    setFailureRate(rate) {
      failureRate = checkRate(rate);
      logger?.info({ failureRate }, 'payments: failure rate set');
    },
    stats: () => ({ ...counts, inFlight, latencyMs, failureRate }),
    close() {
      closed ??= (async () => {
        closing = true;
        for (const w of [...waiting]) w.answer();
        await listener.close();
      })();
      return closed;
    },
  };
}
