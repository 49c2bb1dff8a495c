import { ArchlabError, type ArchlabErrorOptions } from '../core/errors.js';

/** Stable codes of the CDN block. `retryable`: whether the same request can succeed later. */
export type CdnErrorCode =
  /** The upstream tier (shield or origin) refused the connection or reset it (HTTP 502); retryable. */
  | 'ARCHLAB_CDN_UPSTREAM_FAILED'
  /** The upstream did not answer within its timeout (HTTP 504); retryable. */
  | 'ARCHLAB_CDN_UPSTREAM_TIMEOUT'
  /** `only-if-cached` and nothing usable is stored (HTTP 504). */
  | 'ARCHLAB_CDN_NOT_CACHED'
  /** A request or response header block is over the limit (HTTP 431 / 502). */
  | 'ARCHLAB_CDN_HEADERS_TOO_LARGE'
  /** A request that cannot be served as given: an unsafe target, an unknown client region, a malformed purge (HTTP 400). */
  | 'ARCHLAB_CDN_BAD_REQUEST'
  /** A request body over the configured limit (HTTP 413). */
  | 'ARCHLAB_CDN_BODY_TOO_LARGE'
  /** A purge or admin call without the right token (HTTP 401). */
  | 'ARCHLAB_CDN_UNAUTHORIZED'
  /** A purge did not reach every node within its timeout (details: nodes that did not ack); retryable. */
  | 'ARCHLAB_CDN_PURGE_INCOMPLETE'
  /** A limit was reached (collapsed waiters, connections...) (HTTP 503); retryable. */
  | 'ARCHLAB_CDN_LIMIT'
  /** Storage I/O failed (disk tier); the object is served uncached. */
  | 'ARCHLAB_CDN_STORAGE'
  /** The edge or network was closed. */
  | 'ARCHLAB_CDN_CLOSED';

const RETRYABLE: ReadonlySet<CdnErrorCode> = new Set<CdnErrorCode>([
  'ARCHLAB_CDN_UPSTREAM_FAILED',
  'ARCHLAB_CDN_UPSTREAM_TIMEOUT',
  'ARCHLAB_CDN_PURGE_INCOMPLETE',
  'ARCHLAB_CDN_LIMIT',
]);

export class CdnError extends ArchlabError {
  declare readonly code: CdnErrorCode;

  constructor(code: CdnErrorCode, message: string, options: Omit<ArchlabErrorOptions, 'retryable'> = {}) {
    super(code, message, { ...options, retryable: RETRYABLE.has(code) });
  }
}

export function isCdnError(err: unknown, code?: CdnErrorCode): err is CdnError {
  return err instanceof CdnError && (code === undefined || err.code === code);
}
