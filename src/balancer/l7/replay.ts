/**
 * What the proxy may send again, decided once per request before its first attempt. Pure: the
 * request's method, framing and headers in, a plan out; the proxy (proxy.ts) does the reading and
 * the sending.
 *
 * A retry needs the request whole. A request without a body has it; one whose body has a declared
 * Content-Length of at most `retries.maxBodyBytes` is read into one buffer before its first attempt
 * (Envoy buffers for retries the same way, up to per_request_buffer_limit_bytes). Anything else — a
 * chunked body, an HTTP/2 body of undeclared length, a body over the limit — streams through with
 * backpressure, as every body did before, and is never retried: once bytes of it have left, they
 * cannot be sent again.
 *
 * A replayable request is then retried on another backend when the failure leaves it safe to do so:
 *
 *   failure                                  idempotent method     other methods (POST, PATCH ...)
 *   connect failure (refused, unreachable)   retried               retried: no backend saw it
 *   reset before any response byte           retried               retried only with an Idempotency-Key
 *   502 or 503 answer                        retried               never: the backend may have acted
 *   timeout, or a reset after response bytes never                never
 *
 * A connection that breaks before any response byte may still have delivered the request: the
 * backend may have acted on it. RFC 9110 §9.2.2 allows repeating idempotent methods then; for the
 * others the client's Idempotency-Key (IETF httpapi draft) promises the backend recognises a repeat
 * and does not act twice — Go's net/http transport treats such requests as replayable for the same
 * reason. A 502 or 503 is an answer: the backend (or something behind it) ran, so a non-idempotent
 * request is never sent again after one, key or not.
 */

/** RFC 9110 §9.2.2: methods whose repetition has the effect of one request. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** What happens to the request body. */
export type BodyPlan =
  /** No body: nothing to read, always replayable. */
  | { readonly kind: 'none' }
  /** Read `bytes` bytes whole before the first attempt; replayable. */
  | { readonly kind: 'buffer'; readonly bytes: number }
  /** Streamed through as it arrives; never retried. */
  | { readonly kind: 'stream' };

/** The plans without a size, shared by every request (no allocation on the common path). */
export const NO_BODY: BodyPlan = { kind: 'none' };
export const STREAM_BODY: BodyPlan = { kind: 'stream' };

/** Failures of an attempt that send the request to another backend (bits of retryOn's result). */
export const RETRY_ON_CONNECT = 1;
/** The connection broke before any response byte. */
export const RETRY_ON_RESET = 2;
/** The backend answered 502 or 503. */
export const RETRY_ON_STATUS = 4;

/** A request's headers, lowercase names (node:http's `req.headers`). */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * How the body is handled: read whole when its declared length is at most `limitBytes` (the smaller
 * of retries.maxBodyBytes and limits.maxBodyBytes), streamed otherwise. `hasBody`: a body follows
 * the head (HTTP/1 with Content-Length > 0 or Transfer-Encoding; HTTP/2 with a stream not ended by
 * its HEADERS frame). Allocates nothing unless the body is to be read.
 */
export function bodyPlan(hasBody: boolean, headers: RequestHeaders, limitBytes: number): BodyPlan {
  if (!hasBody) return NO_BODY;
  // Chunked (HTTP/1.1) or undeclared (HTTP/2) length: its size is only known at the end.
  if (headers['transfer-encoding'] !== undefined) return STREAM_BODY;
  const cl = headers['content-length'];
  if (typeof cl !== 'string' || !/^\d{1,15}$/.test(cl)) return STREAM_BODY;
  const bytes = Number(cl);
  return bytes <= limitBytes ? { kind: 'buffer', bytes } : STREAM_BODY;
}

/**
 * The failures after which a request whose body is handled as `plan` may be retried, as RETRY_ON_*
 * bits (the file comment's table); 0 = never. `keyHeader` is retries.idempotencyKeyHeader.
 */
export function retryOn(method: string, headers: RequestHeaders, plan: BodyPlan, keyHeader: string): number {
  if (plan.kind === 'stream') return 0;
  if (IDEMPOTENT_METHODS.has(method)) return RETRY_ON_CONNECT | RETRY_ON_RESET | RETRY_ON_STATUS;
  return hasIdempotencyKey(headers, keyHeader) ? RETRY_ON_CONNECT | RETRY_ON_RESET : RETRY_ON_CONNECT;
}

/** Whether the request carries a non-empty `header` (a lowercase name). */
export function hasIdempotencyKey(headers: RequestHeaders, header: string): boolean {
  const v = headers[header];
  return typeof v === 'string' ? v.length > 0 : Array.isArray(v) && v.length > 0;
}
