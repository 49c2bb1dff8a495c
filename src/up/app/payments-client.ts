/**
 * The demo app's outbound client: authorizes an order's payment with the payments service
 * (src/up/payments.ts), through the forward proxy when one is given.
 *
 * Through the proxy the request goes in absolute form (`POST http://127.0.0.1:port/charges` sent to
 * the proxy, undici's ProxyAgent with `proxyTunnel: false`), not through a CONNECT tunnel: the proxy
 * then sees, checks against its ACL and logs every request, method and URL included, which is the
 * point of an egress proxy. (A CONNECT tunnel would show it only a host and port, and archlab's proxy
 * allows CONNECT to port 443 only by default.) An https:// payments URL would still go through a
 * tunnel: the proxy cannot read TLS.
 *
 * One attempt, never retried: an authorization is not idempotent without an idempotency key, and
 * a retry after a timeout could authorize twice. The caller (the order) fails instead, with a typed
 * error whose `retryable` says whether trying the order again can help.
 *
 * Outcomes (the `result` label of archlab_app_outbound_total{target="payments"}):
 *   authorized   201 with a charge id
 *   refused      a 4xx from payments or from the proxy (bad request, ACL, auth)   -> 502 ARCHLAB_APP_PAYMENT_REFUSED
 *   error        a 5xx, a broken connection, an answer that is not a charge      -> 502 ARCHLAB_APP_PAYMENT_FAILED
 *   timeout      no full answer within timeoutMs, or the proxy's own 504          -> 504 ARCHLAB_APP_PAYMENT_TIMEOUT
 *   unreachable  the proxy (or, direct, payments) refuses the connection         -> 503 ARCHLAB_APP_PAYMENT_UNAVAILABLE
 *   busy         maxInFlight calls already out; not sent                         -> 503 ARCHLAB_APP_PAYMENT_UNAVAILABLE
 */
import { performance } from 'node:perf_hooks';
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import { readAtMost } from '../../core/http.js';
import { InvalidArgumentError } from '../../core/index.js';
import { AppError } from './errors.js';

export const OUTBOUND_RESULTS = ['authorized', 'refused', 'error', 'timeout', 'unreachable', 'busy'] as const;
export type OutboundResult = (typeof OUTBOUND_RESULTS)[number];

/** Largest answer read from payments (a charge is ~100 bytes); more is an error. */
const MAX_ANSWER_BYTES = 16 * 1024;
/** Errors raised before a connection exists: nothing was sent, the far end is not there. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

export interface OutboundOptions {
  /** The payments service, http://host:port (https:// would be tunnelled through the proxy with CONNECT). */
  paymentsUrl: string;
  /** The forward proxy, http://host:port. Absent: the app calls payments directly. */
  proxyUrl?: string;
  /** An authorization not fully answered within this fails the order (504), in ms. Default 2000. */
  timeoutMs?: number;
  /** Calls out at once; one more fails at once (503) instead of queueing. Default 64. */
  maxInFlight?: number;
  /** Connections kept to the proxy (or to payments, direct). Default 16. */
  maxConnections?: number;
}

/** A payment authorized: the charge's id at the payments service. */
export interface Authorization {
  id: string;
  status: 'authorized';
}

export interface ChargeRequest {
  /** The app's reference for the charge (the order has no database id yet). */
  orderId: string;
  userId: number;
  amountCents: number;
}

function checkUrl(name: string, url: string, schemes: readonly string[]): URL {
  if (typeof url !== 'string' || !URL.canParse(url)) throw new InvalidArgumentError(`outbound.${name} must be a URL, got ${JSON.stringify(url)}`);
  const u = new URL(url);
  if (!schemes.includes(u.protocol)) throw new InvalidArgumentError(`outbound.${name} must be a ${schemes.map((s) => `${s}//`).join(' or ')} URL, got ${JSON.stringify(url)}`);
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') throw new InvalidArgumentError(`outbound.${name} must be an origin (scheme, host, port) without a path, got ${JSON.stringify(url)}`);
  return u;
}

/** Marks the abort our own deadline caused (as opposed to anything else ending the request). */
class Deadline extends AppError {
  constructor(timeoutMs: number) {
    super('ARCHLAB_APP_PAYMENT_TIMEOUT', `payments did not answer within ${timeoutMs} ms`);
  }
}

/** The outcome of one call: the authorization, or the typed error and its result label. */
type Outcome = { ok: true; authorization: Authorization } | { ok: false; result: Exclude<OutboundResult, 'authorized'>; error: AppError };

export class PaymentsClient {
  readonly paymentsUrl: string;
  readonly proxyUrl: string | undefined;
  readonly timeoutMs: number;
  readonly maxInFlight: number;
  private readonly origin: string;
  private readonly dispatcher: Dispatcher;
  private inFlight = 0;
  private readonly counts: Record<OutboundResult, number> = { authorized: 0, refused: 0, error: 0, timeout: 0, unreachable: 0, busy: 0 };

  constructor(opts: OutboundOptions) {
    const payments = checkUrl('paymentsUrl', opts.paymentsUrl, ['http:', 'https:']);
    const proxy = opts.proxyUrl === undefined ? undefined : checkUrl('proxyUrl', opts.proxyUrl, ['http:']);
    const positive = (name: string, v: number): number => {
      if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`outbound.${name} must be a positive integer, got ${v}`);
      return v;
    };
    this.timeoutMs = positive('timeoutMs', opts.timeoutMs ?? 2000);
    this.maxInFlight = positive('maxInFlight', opts.maxInFlight ?? 64);
    const connections = positive('maxConnections', opts.maxConnections ?? 16);
    this.origin = payments.origin;
    this.paymentsUrl = payments.origin;
    this.proxyUrl = proxy?.origin;
    const pool = { connections, connectTimeout: this.timeoutMs, keepAliveTimeout: 4000 };
    this.dispatcher =
      proxy === undefined
        ? new Pool(payments.origin, pool)
        : new ProxyAgent({
            uri: proxy.origin,
            proxyTunnel: false,
            // The connections to the proxy, bounded (undici's default pool has no bound).
            factory: (origin: string | URL, o: object) => new Pool(origin, { ...o, ...pool }),
            clientFactory: (origin: URL, o: object) => new Pool(origin, { ...o, ...pool }),
          });
  }

  /** Calls by result since start; `busy` were never sent. */
  stats(): Record<OutboundResult, number> {
    return { ...this.counts };
  }

  /**
   * Authorizes a charge, once. Resolves with the charge, or rejects with an AppError
   * (ARCHLAB_APP_PAYMENT_REFUSED | _FAILED | _TIMEOUT | _UNAVAILABLE). `observe` gets the result
   * and the call's duration in seconds (for the app's metrics).
   */
  async authorize(charge: ChargeRequest, observe?: (result: OutboundResult, seconds: number) => void): Promise<Authorization> {
    if (this.inFlight >= this.maxInFlight) {
      this.counts.busy++;
      observe?.('busy', 0);
      throw new AppError('ARCHLAB_APP_PAYMENT_UNAVAILABLE', `payments: ${this.maxInFlight} calls in flight already; not sent`);
    }
    this.inFlight++;
    const t0 = performance.now();
    let outcome: Outcome;
    try {
      outcome = await this.call(charge);
    } finally {
      this.inFlight--;
    }
    const result = outcome.ok ? 'authorized' : outcome.result;
    this.counts[result]++;
    observe?.(result, (performance.now() - t0) / 1000);
    if (!outcome.ok) throw outcome.error;
    return outcome.authorization;
  }

  private async call(charge: ChargeRequest): Promise<Outcome> {
    const via = this.proxyUrl === undefined ? '' : ` (through the proxy ${this.proxyUrl})`;
    const controller = new AbortController();
    const deadline = new Deadline(this.timeoutMs);
    const timer = setTimeout(() => controller.abort(deadline), this.timeoutMs);
    try {
      const res = await this.dispatcher.request({
        origin: this.origin,
        path: '/charges',
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(charge),
        signal: controller.signal,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const text = await readAnswer(res);
      const status = res.statusCode;
      const code = errorCode(text, res.headers);
      if (status === 201) {
        const authorization = parseAuthorization(text);
        if (authorization !== undefined) return { ok: true, authorization };
        return { ok: false, result: 'error', error: new AppError('ARCHLAB_APP_PAYMENT_FAILED', `payments answered 201 without a charge id${via}`) };
      }
      const what = `${status}${code === undefined ? '' : ` ${code}`}`;
      if (status === 504) return { ok: false, result: 'timeout', error: new AppError('ARCHLAB_APP_PAYMENT_TIMEOUT', `payments timed out${via}: ${what}`) };
      if (status >= 400 && status < 500) return { ok: false, result: 'refused', error: new AppError('ARCHLAB_APP_PAYMENT_REFUSED', `payments refused the authorization${via}: ${what}`) };
      return { ok: false, result: 'error', error: new AppError('ARCHLAB_APP_PAYMENT_FAILED', `payments could not authorize${via}: ${what}`) };
    } catch (err) {
      if (controller.signal.aborted || err === deadline) return { ok: false, result: 'timeout', error: new AppError('ARCHLAB_APP_PAYMENT_TIMEOUT', `payments did not answer within ${this.timeoutMs} ms${via}`, { cause: err }) };
      const code = (err as { code?: string }).code ?? '';
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
        return { ok: false, result: 'timeout', error: new AppError('ARCHLAB_APP_PAYMENT_TIMEOUT', `payments did not answer within ${this.timeoutMs} ms${via}`, { cause: err }) };
      }
      if (CONNECT_ERRORS.has(code)) {
        const target = this.proxyUrl === undefined ? `payments at ${this.origin}` : `the forward proxy at ${this.proxyUrl}`;
        return { ok: false, result: 'unreachable', error: new AppError('ARCHLAB_APP_PAYMENT_UNAVAILABLE', `${target} cannot be reached (${code})`, { cause: err }) };
      }
      const why = err instanceof Error ? err.message : String(err);
      return { ok: false, result: 'error', error: new AppError('ARCHLAB_APP_PAYMENT_FAILED', `payments call failed${via}: ${code === '' ? why : `${code} ${why}`}`, { cause: err }) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connections; calls in flight fail. */
  async close(): Promise<void> {
    await this.dispatcher.destroy();
  }
}

/** The answer's body as text, at most MAX_ANSWER_BYTES (more is an error). */
async function readAnswer(res: Dispatcher.ResponseData): Promise<string> {
  const body = await readAtMost(res.body, MAX_ANSWER_BYTES);
  if (body === null) throw new AppError('ARCHLAB_APP_PAYMENT_FAILED', `payments answered more than ${MAX_ANSWER_BYTES} bytes`);
  return body.toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `{ id, status: "authorized" }` from a 201's body, or undefined. */
function parseAuthorization(text: string): Authorization | undefined {
  const j = parseJson(text) as { id?: unknown; status?: unknown } | undefined;
  if (typeof j !== 'object' || j === null || typeof j.id !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(j.id) || j.status !== 'authorized') return undefined;
  return { id: j.id, status: 'authorized' };
}

/** The typed code of an error answer: payments' `{ error: { code } }`, or the proxy's X-Archlab-Error header. */
function errorCode(text: string, headers: Dispatcher.ResponseData['headers']): string | undefined {
  const j = parseJson(text) as { error?: { code?: unknown } } | undefined;
  const fromBody = typeof j === 'object' && j !== null ? j.error?.code : undefined;
  if (typeof fromBody === 'string' && /^[A-Z0-9_]{1,64}$/.test(fromBody)) return fromBody;
  const h = headers['x-archlab-error'];
  const fromHeader = Array.isArray(h) ? h[0] : h;
  return typeof fromHeader === 'string' && /^[A-Z0-9_]{1,64}$/.test(fromHeader) ? fromHeader : undefined;
}
