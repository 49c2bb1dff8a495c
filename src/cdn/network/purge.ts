/**
 * Purge fan-out: one PURGE over HTTP to every node (edges and shield) at once, each node's ack
 * awaited within one shared deadline. The answer lists every node with what it purged and when it
 * acknowledged; `propagationMs` is the time until the last ack (how long until the whole network
 * has forgotten the object). A node that did not ack in time, refused, or failed makes the purge
 * incomplete: `fanOutPurge` still returns the report (`complete: false`) and the caller decides
 * (the network throws ARCHLAB_CDN_PURGE_INCOMPLETE with it, the admin API answers 504).
 *
 * Tier by tier, upstream first: the shield is purged, then every edge at once. Purging all nodes at
 * once would let a request racing the purge refill an edge from a shield not yet purged, and keep
 * the purged object alive at that edge; the shield-first order costs one shield round trip.
 *
 * The wire format is the edge's: `PURGE <path>` with `Host`, `Authorization: Bearer <token>`,
 * `X-Purge-Mode: soft|hard`, and `X-Purge-Prefix: 1` or `X-Purge-Tag: <tag>`; the node answers
 * `200 {"purged": n}`.
 */
import type { Dispatcher } from 'undici';
import type { Clock } from '../../core/clock.js';
import { CdnError } from '../errors.js';

/** What the admin API and `CdnHandle.purge` take: exactly one of url, prefix, tag. */
export interface CdnPurgeRequest {
  /** An absolute URL (`http://host/path?q`) or a path (`/path?q`, qualified with the site host). */
  url?: string;
  /** A URL prefix, absolute or a path, e.g. `/img/`. */
  prefix?: string;
  /** A surrogate key / cache tag (from Surrogate-Key or Cache-Tag). */
  tag?: string;
  /** soft: mark stale (kept for stale-if-error and revalidation); hard: delete. Default hard. */
  mode?: 'soft' | 'hard';
}

/** One node's answer to a purge. */
export interface NodeAck {
  name: string;
  region: string;
  tier: 'edge' | 'shield';
  /** The node answered 200 within the deadline. */
  acked: boolean;
  /** Objects it purged (0 when not acked). */
  purged: number;
  /** From the start of the fan-out to this node's ack (or its failure), ms. */
  ms: number;
  /** Why it did not ack: "timeout", "HTTP 401", a connection error code. */
  error?: string;
}

export interface CdnPurgeReport {
  /** What was purged, as sent to the nodes. */
  selector: { kind: 'url' | 'prefix'; host: string; path: string } | { kind: 'tag'; tag: string };
  mode: 'soft' | 'hard';
  /** Objects purged over all nodes. */
  purged: number;
  nodes: NodeAck[];
  /** Time until the last ack, ms (until the deadline when a node is missing). */
  propagationMs: number;
  /** Every node acknowledged. */
  complete: boolean;
}

/** A node the purge goes to: its base URL and the dispatcher (keep-alive pool) that reaches it. */
export interface PurgeTarget {
  name: string;
  region: string;
  tier: 'edge' | 'shield';
  dispatcher: Dispatcher;
}

export interface FanOutOptions {
  /** Host for a url/prefix given as a path. */
  siteHost: string;
  /** Bearer token the nodes accept for PURGE. */
  token: string;
  /** Deadline for every ack, ms from the start. */
  timeoutMs: number;
  clock: Clock;
}

/** Largest tag or URL accepted in a purge. */
export const MAX_PURGE_TARGET_BYTES = 8192;

type Selector = CdnPurgeReport['selector'];

function bad(message: string): CdnError {
  return new CdnError('ARCHLAB_CDN_BAD_REQUEST', message);
}

function parseTarget(kind: 'url' | 'prefix', value: unknown, siteHost: string): Selector {
  if (typeof value !== 'string' || value === '' || value.length > MAX_PURGE_TARGET_BYTES) {
    throw bad(`purge ${kind} must be a non-empty string of at most ${MAX_PURGE_TARGET_BYTES} characters`);
  }
  if (value.startsWith('/')) {
    if (/[\s#]/.test(value)) throw bad(`purge ${kind} ${JSON.stringify(value)} contains whitespace or a fragment`);
    return { kind, host: siteHost, path: value };
  }
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw bad(`purge ${kind} ${JSON.stringify(value)} is neither a path starting with "/" nor an absolute http(s) URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(`purge ${kind} must be an http(s) URL, got ${u.protocol}`);
  return { kind, host: u.host, path: `${u.pathname}${u.search}` };
}

/** Checks a purge request and turns it into what is sent to the nodes. Throws ARCHLAB_CDN_BAD_REQUEST. */
export function parsePurgeRequest(req: CdnPurgeRequest, siteHost: string): { selector: Selector; mode: 'soft' | 'hard' } {
  if (typeof req !== 'object' || req === null) throw bad('a purge is an object { url | prefix | tag, mode }');
  const given = (['url', 'prefix', 'tag'] as const).filter((k) => req[k] !== undefined);
  if (given.length !== 1) throw bad(`a purge names exactly one of url, prefix, tag (got ${given.length === 0 ? 'none' : given.join(', ')})`);
  const mode = req.mode ?? 'hard';
  if (mode !== 'soft' && mode !== 'hard') throw bad(`purge mode must be "soft" or "hard", got ${JSON.stringify(mode)}`);
  if (req.tag !== undefined) {
    const tag = req.tag as unknown;
    // Tags are separated by spaces (Surrogate-Key) or commas (Cache-Tag), so a tag holds neither.
    if (typeof tag !== 'string' || !/^[\x21-\x2b\x2d-\x7e]{1,1024}$/.test(tag)) throw bad('purge tag must be 1-1024 visible ASCII characters without spaces or commas');
    return { selector: { kind: 'tag', tag }, mode };
  }
  const kind = req.url !== undefined ? 'url' : 'prefix';
  return { selector: parseTarget(kind, req[kind], siteHost), mode };
}

/** Sends the purge to the shield tier, then to every edge at once, and waits for all acks or the deadline. Never throws for a node's failure. */
export async function fanOutPurge(targets: readonly PurgeTarget[], req: CdnPurgeRequest, opts: FanOutOptions): Promise<CdnPurgeReport> {
  const { selector, mode } = parsePurgeRequest(req, opts.siteHost);
  const headers: Record<string, string> = {
    authorization: `Bearer ${opts.token}`,
    'x-purge-mode': mode,
    'content-length': '0',
  };
  let path = '/';
  if (selector.kind === 'tag') {
    headers['x-purge-tag'] = selector.tag;
  } else {
    headers.host = selector.host;
    path = selector.path;
    if (selector.kind === 'prefix') headers['x-purge-prefix'] = '1';
  }
  const t0 = opts.clock.monotonic();
  // One deadline per tier (one timer however many nodes), so a silent shield still leaves the
  // edges their full timeout: the whole fan-out takes at most twice timeoutMs.
  const purgeTier = async (tier: readonly PurgeTarget[]): Promise<NodeAck[]> => {
    if (tier.length === 0) return [];
    const abort = new AbortController();
    const timer = opts.clock.setTimer(opts.timeoutMs, () => abort.abort());
    try {
      return await Promise.all(tier.map((t) => purgeNode(t, abort.signal)));
    } finally {
      timer.cancel();
    }
  };
  const purgeNode = async (t: PurgeTarget, signal: AbortSignal): Promise<NodeAck> => {
    const base = { name: t.name, region: t.region, tier: t.tier };
    try {
      const res = await t.dispatcher.request({ method: 'PURGE', path, headers, signal });
      const text = await res.body.text();
      const ms = opts.clock.monotonic() - t0;
      if (res.statusCode !== 200) return { ...base, acked: false, purged: 0, ms, error: `HTTP ${res.statusCode}` };
      let purged = 0;
      try {
        const n = (JSON.parse(text) as { purged?: unknown }).purged;
        if (typeof n === 'number' && Number.isFinite(n)) purged = n;
      } catch {
        return { ...base, acked: false, purged: 0, ms, error: 'ack is not JSON' };
      }
      return { ...base, acked: true, purged, ms };
    } catch (err) {
      const ms = opts.clock.monotonic() - t0;
      const error = signal.aborted ? 'timeout' : ((err as NodeJS.ErrnoException).code ?? (err as Error).message);
      return { ...base, acked: false, purged: 0, ms, error };
    }
  };
  const shieldTier = targets.filter((t) => t.tier === 'shield');
  const edgeTier = targets.filter((t) => t.tier !== 'shield');
  const acks = new Map<PurgeTarget, NodeAck>();
  (await purgeTier(shieldTier)).forEach((a, i) => acks.set(shieldTier[i]!, a));
  (await purgeTier(edgeTier)).forEach((a, i) => acks.set(edgeTier[i]!, a));
  // Reported in the targets' order.
  const nodes = targets.map((t) => acks.get(t)!);
  const complete = nodes.every((n) => n.acked);
  const propagationMs = complete ? Math.max(0, ...nodes.map((n) => n.ms)) : Math.max(opts.timeoutMs, ...nodes.map((n) => n.ms));
  return { selector, mode, purged: nodes.reduce((s, n) => s + n.purged, 0), nodes, propagationMs, complete };
}

/** The typed error for an incomplete purge: names the nodes that did not ack; `details.report` is the partial result. */
export function purgeIncomplete(report: CdnPurgeReport): CdnError {
  const missing = report.nodes.filter((n) => !n.acked);
  return new CdnError(
    'ARCHLAB_CDN_PURGE_INCOMPLETE',
    `purge not acknowledged by ${missing.length} of ${report.nodes.length} nodes: ${missing.map((n) => `${n.name} (${n.error ?? 'no ack'})`).join(', ')}`,
    { details: { missing: missing.map((n) => n.name), report } },
  );
}
