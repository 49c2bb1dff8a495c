/**
 * Fixtures for the policy's unit tests (imported by *.test.ts files only; left out of the build):
 * requests, dates and a stored object made the way the edge makes one.
 */
import type { CacheRequest, Headers, StoredObjectMeta } from '../types.js';
import { type CdnPolicy, type StoreDecision, formatHttpDate } from './index.js';

/** A fixed start time, on a whole second: 2024-01-01T00:00:00Z. */
export const T0 = Date.UTC(2024, 0, 1);
export const S = 1000;

export function httpDate(ms: number): string {
  return formatHttpDate(ms);
}

export function req(headers: Headers = {}, method = 'GET', url = '/obj'): CacheRequest {
  return { method, scheme: 'https', host: 'example.com', url, headers };
}

/** Response headers with a Date at `at` (default T0) unless the test gives one. */
export function res(headers: Headers, at = T0): Headers {
  return { date: httpDate(at), ...headers };
}

/** The decision on a 200 (or `status`) received at `now`, and the meta the edge would store from it. */
export function store(
  policy: CdnPolicy,
  resHeaders: Headers,
  opts: { now?: number; status?: number; request?: CacheRequest } = {},
): { decision: StoreDecision; meta: StoredObjectMeta } {
  const now = opts.now ?? T0;
  const status = opts.status ?? 200;
  const decision = policy.storable(opts.request ?? req(), { status, headers: resHeaders }, now);
  const meta: StoredObjectMeta = {
    key: 'https://example.com/obj',
    primaryKey: 'https://example.com/obj',
    status,
    headers: decision.headers,
    // Storage keeps the state as JSON: every test reads it back the same way.
    policy: JSON.parse(JSON.stringify(decision.state)) as StoredObjectMeta['policy'],
    tags: decision.tags,
    storedAt: now,
    bodyBytes: 10,
  };
  return { decision, meta };
}
