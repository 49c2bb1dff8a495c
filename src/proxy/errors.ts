import { ArchlabError } from '../core/errors.js';

export type ProxyErrorCode =
  /** The request target is not something a client could mean: malformed, no port, userinfo, wrong form. */
  | 'ARCHLAB_PROXY_BAD_TARGET'
  /** Absolute-form request whose Host header names another authority than its target. */
  | 'ARCHLAB_PROXY_HOST_MISMATCH'
  /** An ACL rule, the port policy or the SSRF guard refused the target. */
  | 'ARCHLAB_PROXY_DENIED'
  /** Proxy-Authorization missing or wrong (always the same answer to the client). */
  | 'ARCHLAB_PROXY_AUTH_REQUIRED'
  /** Rate or concurrency limit of a client address or user. */
  | 'ARCHLAB_PROXY_LIMITED'
  /** The target name does not resolve. */
  | 'ARCHLAB_PROXY_DNS'
  /** The target refused, reset, or could not be reached. */
  | 'ARCHLAB_PROXY_UPSTREAM'
  /** Connecting (DNS + TCP) or waiting for response headers took too long. */
  | 'ARCHLAB_PROXY_TIMEOUT'
  /** Request body over limits.maxBody. */
  | 'ARCHLAB_PROXY_BODY_TOO_LARGE'
  /** A password hash line or a users file that cannot be used. */
  | 'ARCHLAB_PROXY_PASSWORD_FORMAT'
  /** A method the proxy does not carry (upgrades over plain HTTP, https:// in absolute-form ...). */
  | 'ARCHLAB_PROXY_NOT_IMPLEMENTED'
  | 'ARCHLAB_PROXY_SHUTTING_DOWN';

/** Errors of the forward proxy; `retryable` says whether the same request may succeed later. */
export class ProxyError extends ArchlabError {
  declare readonly code: ProxyErrorCode;

  constructor(code: ProxyErrorCode, message: string, options: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(code, message, options);
  }
}
