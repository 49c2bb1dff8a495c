import { ArchlabError } from '../core/errors.js';

export type BalancerErrorCode =
  | 'ARCHLAB_NO_BACKEND'
  | 'ARCHLAB_QUEUE_FULL'
  | 'ARCHLAB_QUEUE_TIMEOUT'
  | 'ARCHLAB_UPSTREAM_CONNECT'
  | 'ARCHLAB_UPSTREAM_TIMEOUT'
  | 'ARCHLAB_UPSTREAM_RESET'
  | 'ARCHLAB_BAD_REQUEST'
  /** An active TCP health check connected but did not read the bytes it expects. */
  | 'ARCHLAB_HEALTH_UNEXPECTED'
  | 'ARCHLAB_BALANCER_CONFIG'
  /** A broken invariant inside the balancer (a bug): never the client's or a backend's doing. */
  | 'ARCHLAB_BALANCER_INTERNAL';

/** Errors of the balancer; `retryable` says whether another backend might succeed. */
export class BalancerError extends ArchlabError {
  declare readonly code: BalancerErrorCode;

  constructor(code: BalancerErrorCode, message: string, options: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
  }
}
