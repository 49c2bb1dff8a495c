/**
 * The PURGE method at a node (what Varnish and Fastly accept):
 *
 *   PURGE /path?q                       exact URL (the request's Host; absolute-form also works)
 *   PURGE /img/    X-Purge-Prefix: 1    every URL starting with it
 *   PURGE /        X-Purge-Tag: a b     every object tagged a or b (Surrogate-Key / Cache-Tag)
 *                  X-Purge-Mode: soft   mark stale instead of deleting (default hard)
 *   Authorization: Bearer <token>       required; 401 without it, and always when no token is set
 *
 * answered 200 `{"purged": n}`.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { CdnError } from '../errors.js';
import type { PurgeRequest } from '../types.js';

/** Most tags one PURGE may name. */
export const MAX_PURGE_TAGS = 64;

/** True when `authorization` is `Bearer <token>` for exactly `token` (constant-time compare). False when no token is configured. */
export function purgeAuthorized(authorization: string | undefined, token: string | undefined): boolean {
  if (token === undefined || authorization === undefined) return false;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  if (m === null) return false;
  const given = Buffer.from(m[1]!);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * The purge requests one PURGE asks for (one per tag for a tag purge). `keyOf(url)` turns the
 * request target into a primary key (throws CdnError ARCHLAB_CDN_BAD_REQUEST when it cannot).
 * Throws ARCHLAB_CDN_BAD_REQUEST for a bad X-Purge-Mode or too many tags.
 */
export function parsePurge(headers: IncomingHttpHeaders, keyOf: () => string): PurgeRequest[] {
  const modeRaw = single(headers['x-purge-mode'])?.trim().toLowerCase();
  if (modeRaw !== undefined && modeRaw !== 'soft' && modeRaw !== 'hard') {
    throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', `X-Purge-Mode must be soft or hard, got ${JSON.stringify(modeRaw)}`);
  }
  const mode = modeRaw === 'soft' ? 'soft' : 'hard';
  const tagHeader = single(headers['x-purge-tag']);
  if (tagHeader !== undefined) {
    const tags = tagHeader.split(/[\s,]+/).filter((t) => t !== '');
    if (tags.length === 0) throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', 'X-Purge-Tag is empty');
    if (tags.length > MAX_PURGE_TAGS) throw new CdnError('ARCHLAB_CDN_BAD_REQUEST', `X-Purge-Tag names more than ${MAX_PURGE_TAGS} tags`);
    return [...new Set(tags)].map((tag) => ({ selector: { kind: 'tag', tag }, mode }));
  }
  const prefix = single(headers['x-purge-prefix'])?.trim().toLowerCase();
  if (prefix === '1' || prefix === 'true' || prefix === 'yes') return [{ selector: { kind: 'prefix', prefix: keyOf() }, mode }];
  return [{ selector: { kind: 'url', primaryKey: keyOf() }, mode }];
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}
