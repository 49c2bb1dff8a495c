/**
 * Hit ratio against theory: a Zipf(0.9) trace (src/cdn/sim zipfTrace, seeded) over N same-size
 * objects goes through archlab's edge, whose memory holds exactly 10% of the objects, and the
 * edge's hit ratio (from its stats) is compared with an offline LRU simulation (src/cdn/sim
 * simulateLru) of the very same trace with the same capacity.
 *
 * The capacity is set in bytes, as the edge's store counts them: a probe edge stores a few objects
 * first and its stats give the bytes each takes (body plus the stored head); every object has the
 * same size (fixed-width paths and headers), so `memoryBytes = 10% x N x that` holds 10% of the
 * objects, and the simulation is given the same bytes and per-object size.
 *
 * Requests are sent in trace order, `window` at a time (default 1: strictly one after the other,
 * so the edge sees exactly the simulated order; with more, near-simultaneous misses of one key
 * would collapse and the order would blur). The edge runs in the bench process (its stats are read
 * directly), the origin in its own. Every body is checked. Bounded by `maxMs`: a run cut short
 * compares the prefix it did run (noted).
 */
import { Pool } from 'undici';
import { createLogger } from '../../src/core/log.js';
import { SeededRandom } from '../../src/core/random.js';
import { simulateLru } from '../../src/cdn/sim/index.js';
import { zipfTrace } from '../../src/cdn/sim/zipf.js';
import type { EdgeStats } from '../../src/cdn/types.js';
import { sleep } from '../balancer-l7/procs.js';
import { loadEdgeApi, type EdgeApi, type EdgeHandle } from './archlab.js';
import { BODY_BYTES, isHit } from './hitpath.js';
import { isObjectBody, objectPath } from './origin.js';
import type { CdnSession, Started } from './session.js';

export const ZIPF_SCENARIO = 'Zipf(0.9), cache holds 10% of the objects';
export const ZIPF_SYSTEMS = { edge: 'archlab edge', lru: 'offline LRU (src/cdn/sim)', diff: 'archlab edge - offline LRU' } as const;

export interface ZipfSettings {
  /** Distinct objects (the origin serves at least this many). */
  objects: number;
  /** Requests in the trace. */
  requests: number;
  /** Zipf exponent. */
  s: number;
  /** Share of the objects the cache holds. */
  cacheShare: number;
  /** Requests in flight at once. */
  window: number;
  seed: number;
  /** Longest the trace may run; a longer one is cut and the prefix compared. */
  maxMs: number;
}

export const ZIPF_QUICK: ZipfSettings = { objects: 10_000, requests: 20_000, s: 0.9, cacheShare: 0.1, window: 1, seed: 20240607, maxMs: 20_000 };
export const ZIPF_FULL: ZipfSettings = { objects: 100_000, requests: 200_000, s: 0.9, cacheShare: 0.1, window: 1, seed: 20240607, maxMs: 300_000 };

/** Bytes the edge's store charges per object, from a probe edge storing a few objects. */
async function bytesPerObject(api: EdgeApi, upstream: string, bodyBytes: number): Promise<number> {
  const storage = await api.createStorage({ memoryBytes: 16 * 1024 * 1024 });
  const edge = await api.startEdge({ name: 'probe', region: 'bench', tier: 'edge', upstream, storage, logger: createLogger({ level: 'error' }) });
  const pool = new Pool(edge.url, { connections: 1 });
  try {
    const sizes: number[] = [];
    let before = 0;
    for (const i of [0, 1, 2, 12345 % 10_000]) {
      const path = objectPath(i);
      const r = await pool.request({ path, method: 'GET' });
      const body = Buffer.from(await r.body.arrayBuffer());
      if (r.statusCode !== 200 || !isObjectBody(path, body, bodyBytes)) throw new TypeError(`probe edge answered ${path} with ${r.statusCode} and a wrong body`);
      // Storage commits when the body has been relayed: wait briefly for it to show.
      let st = storage.stats();
      for (let k = 0; k < 50 && st.memoryBytes === before; k++) {
        await sleep(10);
        st = storage.stats();
      }
      sizes.push(st.memoryBytes - before);
      before = st.memoryBytes;
    }
    if (sizes.some((x) => x !== sizes[0]) || !(sizes[0]! > 0)) throw new TypeError(`the edge's store charged different sizes for objects of the same size: ${sizes.join(', ')} bytes`);
    return sizes[0]!;
  } finally {
    await pool.close();
    await edge.close();
    await storage.close();
  }
}

function delta(a: EdgeStats, b: EdgeStats): { requests: number; hits: number; misses: number; collapsed: number; upstreamRequests: number } {
  return {
    requests: b.requests - a.requests,
    hits: b.hits - a.hits,
    misses: b.misses - a.misses,
    collapsed: b.collapsed - a.collapsed,
    upstreamRequests: b.upstreamRequests - a.upstreamRequests,
  };
}

/** Runs the trace through archlab's edge (when it can start) and the simulation; `origin` serves at least `s.objects` objects of BODY_BYTES. */
export async function measureZipf(session: CdnSession, origin: Started, s: ZipfSettings): Promise<void> {
  const { ctx } = session;
  const capacityObjects = Math.round(s.objects * s.cacheShare);
  const seed = s.seed;
  const trace = zipfTrace(s.objects, s.s, s.requests, new SeededRandom(seed));
  const distinct = new Set(trace).size;
  ctx.log(`\n${ZIPF_SCENARIO}: ${s.requests.toLocaleString('en-US')} requests over ${s.objects.toLocaleString('en-US')} objects (${distinct.toLocaleString('en-US')} distinct in the trace), cache of ${capacityObjects.toLocaleString('en-US')} objects, ${s.window} in flight`);
  const api = await loadEdgeApi();
  if ('unavailable' in api) {
    const sim = simulateLru({ keys: trace, sizes: 1 }, { capacity: { objects: capacityObjects } });
    ctx.row({ system: ZIPF_SYSTEMS.lru, scenario: ZIPF_SCENARIO, metric: 'hit ratio', value: sim.hitRatio, unit: 'fraction' });
    ctx.note(`Zipf hit ratio: archlab edge not measured, ${api.unavailable}`);
    return;
  }
  const bodyBytes = BODY_BYTES;
  const perObject = await bytesPerObject(api, origin.base, bodyBytes);
  const memoryBytes = capacityObjects * perObject;
  const storage = await api.createStorage({ memoryBytes });
  let edge: EdgeHandle | undefined;
  let pool: Pool | undefined;
  try {
    edge = await api.startEdge({ name: 'zipf', region: 'bench', tier: 'edge', upstream: origin.base, storage, logger: createLogger({ level: 'error' }) });
    pool = new Pool(edge.url, { connections: s.window, pipelining: 1 });
    const p = pool;
    const before = edge.stats();
    let next = 0;
    let done = 0;
    let xHits = 0;
    let bad: string | undefined;
    const t0 = performance.now();
    const deadline = t0 + s.maxMs;
    let lastLog = t0;
    const worker = async (): Promise<void> => {
      while (next < trace.length && bad === undefined && performance.now() < deadline) {
        const path = objectPath(trace[next++]!);
        const r = await p.request({ path, method: 'GET' });
        const body = Buffer.from(await r.body.arrayBuffer());
        if (r.statusCode !== 200 || !isObjectBody(path, body, bodyBytes)) bad ??= `${path} came back ${r.statusCode} with a wrong body`;
        if (isHit(r.headers['x-cache'])) xHits++;
        done++;
        const now = performance.now();
        if (now - lastLog > 5000) {
          lastLog = now;
          ctx.log(`  ${done.toLocaleString('en-US')} of ${trace.length.toLocaleString('en-US')} requests`);
        }
      }
    };
    await Promise.all(Array.from({ length: s.window }, () => worker()));
    const ms = performance.now() - t0;
    if (bad) {
      ctx.note(`Zipf hit ratio: void, the edge answered wrongly: ${bad}`);
      return;
    }
    // Let the last responses' stores commit before reading the counters.
    await sleep(50);
    const d = delta(before, edge.stats());
    const st = storage.stats();
    const sim = simulateLru({ keys: trace.subarray(0, done), sizes: perObject }, { capacity: { bytes: memoryBytes } });
    const edgeRatio = d.requests ? d.hits / d.requests : 0;
    const row = (system: string, metric: string, value: number, unit: string): void => ctx.row({ system, scenario: ZIPF_SCENARIO, metric, value, unit });
    row(ZIPF_SYSTEMS.edge, 'hit ratio', edgeRatio, 'fraction');
    row(ZIPF_SYSTEMS.edge, 'hit ratio (X-Cache)', done ? xHits / done : 0, 'fraction');
    row(ZIPF_SYSTEMS.edge, 'origin requests', d.upstreamRequests, 'requests');
    row(ZIPF_SYSTEMS.edge, 'evictions', st.evictions, 'objects');
    row(ZIPF_SYSTEMS.edge, 'objects stored at the end', st.objects, 'objects');
    row(ZIPF_SYSTEMS.edge, 'req/s', (done / ms) * 1000, 'req/s');
    row(ZIPF_SYSTEMS.lru, 'hit ratio', sim.hitRatio, 'fraction');
    row(ZIPF_SYSTEMS.lru, 'evictions', sim.evictions, 'objects');
    row(ZIPF_SYSTEMS.lru, 'objects stored at the end', sim.objects, 'objects');
    row(ZIPF_SYSTEMS.diff, 'hit ratio difference', (edgeRatio - sim.hitRatio) * 100, 'points');
    row(ZIPF_SYSTEMS.edge, 'requests', done, 'requests');
    row(ZIPF_SYSTEMS.edge, 'objects', s.objects, 'objects');
    ctx.note(
      `Zipf: ${done.toLocaleString('en-US')} requests (seed ${seed}) over ${s.objects.toLocaleString('en-US')} objects of ${bodyBytes} B, in trace order ${s.window} at a time; the edge's store charges ${perObject} B per object (body and stored head), so memoryBytes = ${capacityObjects.toLocaleString('en-US')} x ${perObject} = ${memoryBytes.toLocaleString('en-US')} holds 10% of them; the LRU simulation gets the same bytes and sizes. Edge hit ratio = hits / requests from its stats (${d.hits} / ${d.requests}, ${d.collapsed} collapsed)`,
    );
    if (d.requests !== done) ctx.note(`Zipf: the edge counted ${d.requests} requests for ${done} sent`);
    if (done < trace.length) ctx.note(`Zipf: cut at ${done.toLocaleString('en-US')} of ${trace.length.toLocaleString('en-US')} requests after ${Math.round(s.maxMs / 1000)} s; both sides compared on that prefix`);
  } finally {
    await pool?.close();
    await edge?.close();
    await storage.close();
  }
}
