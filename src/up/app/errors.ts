/**
 * The demo application's typed errors. Every error answered over HTTP carries a stable code and
 * the status it maps to; a database that cannot be reached (cut off from the dashboard, or a
 * PostgreSQL that is down) is ARCHLAB_APP_DATABASE_UNAVAILABLE, answered 503; an order whose payment
 * could not be authorized is ARCHLAB_APP_PAYMENT_* (502 refused or failed, 503 unreachable, 504 too slow).
 */
import { ArchlabError, type ArchlabErrorOptions } from '../../core/index.js';

export type AppErrorCode =
  | 'ARCHLAB_APP_BAD_REQUEST'
  | 'ARCHLAB_APP_NOT_FOUND'
  | 'ARCHLAB_APP_METHOD_NOT_ALLOWED'
  | 'ARCHLAB_APP_UNSUPPORTED_MEDIA_TYPE'
  | 'ARCHLAB_APP_BODY_TOO_LARGE'
  | 'ARCHLAB_APP_UNKNOWN_REFERENCE'
  | 'ARCHLAB_APP_OUT_OF_STOCK'
  /** An Idempotency-Key already used for a different order (IETF httpapi draft: 422). */
  | 'ARCHLAB_APP_IDEMPOTENCY_KEY_REUSED'
  | 'ARCHLAB_APP_DATABASE_UNAVAILABLE'
  | 'ARCHLAB_APP_CACHE_UNAVAILABLE'
  | 'ARCHLAB_APP_CLOSED'
  | 'ARCHLAB_APP_PAYMENT_REFUSED'
  | 'ARCHLAB_APP_PAYMENT_FAILED'
  | 'ARCHLAB_APP_PAYMENT_TIMEOUT'
  | 'ARCHLAB_APP_PAYMENT_UNAVAILABLE'
  | 'ARCHLAB_APP_INTERNAL';

const STATUS: Record<AppErrorCode, number> = {
  ARCHLAB_APP_BAD_REQUEST: 400,
  ARCHLAB_APP_NOT_FOUND: 404,
  ARCHLAB_APP_METHOD_NOT_ALLOWED: 405,
  ARCHLAB_APP_UNSUPPORTED_MEDIA_TYPE: 415,
  ARCHLAB_APP_BODY_TOO_LARGE: 413,
  ARCHLAB_APP_UNKNOWN_REFERENCE: 422,
  ARCHLAB_APP_OUT_OF_STOCK: 409,
  ARCHLAB_APP_IDEMPOTENCY_KEY_REUSED: 422,
  ARCHLAB_APP_DATABASE_UNAVAILABLE: 503,
  ARCHLAB_APP_CACHE_UNAVAILABLE: 503,
  ARCHLAB_APP_CLOSED: 503,
  // The payments service (through the forward proxy) refused, failed, was too slow, or could not be reached.
  ARCHLAB_APP_PAYMENT_REFUSED: 502,
  ARCHLAB_APP_PAYMENT_FAILED: 502,
  ARCHLAB_APP_PAYMENT_TIMEOUT: 504,
  ARCHLAB_APP_PAYMENT_UNAVAILABLE: 503,
  ARCHLAB_APP_INTERNAL: 500,
};

/**
 * Trying again can help. A payment that failed, timed out or could not be sent left no order behind
 * (the order commits only after its authorization), so placing the order again is safe; a refused one
 * (payments or the proxy said 4xx) will be refused again.
 */
const RETRYABLE = new Set<AppErrorCode>([
  'ARCHLAB_APP_DATABASE_UNAVAILABLE',
  'ARCHLAB_APP_CACHE_UNAVAILABLE',
  'ARCHLAB_APP_CLOSED',
  'ARCHLAB_APP_PAYMENT_FAILED',
  'ARCHLAB_APP_PAYMENT_TIMEOUT',
  'ARCHLAB_APP_PAYMENT_UNAVAILABLE',
]);

export class AppError extends ArchlabError {
  override readonly code: AppErrorCode;
  /** The HTTP status this error is answered with. */
  readonly status: number;
  /** The request field at fault (body or query), when there is one: `qty`, `category`. */
  readonly field: string | undefined;

  constructor(code: AppErrorCode, message: string, opts: Omit<ArchlabErrorOptions, 'retryable'> & { field?: string } = {}) {
    super(code, message, { ...opts, retryable: RETRYABLE.has(code) });
    this.code = code;
    this.status = STATUS[code];
    this.field = opts.field;
  }
}

/** The first AppError in `err`'s cause chain (the cache block wraps source errors), if any. */
export function findAppError(err: unknown): AppError | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 8 && e !== undefined && e !== null; depth++) {
    if (e instanceof AppError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
