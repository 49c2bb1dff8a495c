/**
 * Purge propagation: archlab's CDN (startCdn) with three edge regions of one node each and a
 * shield, no injected latency on the links the purge or the fetches take (this measures the purge
 * mechanism, not the simulated geography).
 * For each purge: one object is fetched through every region twice (so every edge and the shield
 * hold it, and the second fetch must be a hit), then `POST /purge {url}` goes to the admin API.
 * Measured: `propagationMs` from the answer (the network's own clock: fan-out start to the last
 * node's ack) and the time to the answer at the client. After each purge the object must come back
 * as a miss at an edge, and every node must have acknowledged, or the purge is counted as failed.
 */
import { Agent, request } from 'undici';
import { percentile } from '../cache/measure.js';
import { isHit } from './hitpath.js';
import { startBenchCdn } from './network.js';
import { isObjectBody, objectPath, startOrigin } from './origin.js';
import type { CdnSession } from './session.js';
import type { CdnConfigInput } from '../../src/cdn/config.js';

export const PURGE_SCENARIO = 'purge by URL, 3 edges + shield';
export const PURGE_SYSTEM = 'archlab CDN';
const TOKEN = 'bench-cdn-purge-token';
const REGIONS = ['eu', 'us', 'ap'] as const;
const BODY_BYTES = 1024;

export interface PurgeSettings {
  purges: number;
}
export const PURGE_QUICK: PurgeSettings = { purges: 20 };
export const PURGE_FULL: PurgeSettings = { purges: 100 };

interface PurgeAnswer {
  purged?: number;
  propagationMs?: number;
  nodes?: { name: string; acked?: boolean; purged?: number }[];
}

function input(originUrl: string): CdnConfigInput {
  return {
    listeners: [{ port: 0 }],
    admin: { port: 0, token: TOKEN },
    log: { level: 'error' },
    metrics: { defaultMetrics: false },
    origin: { url: originUrl },
    shield: { enabled: true },
    regions: REGIONS.map((name) => ({ name, edges: 1 })),
    // Each client region nearest to its own edges (0 ms), the others 1 ms away: every region's
    // fetch lands on its own edge, and nearly nothing is injected.
    latency: { clients: Object.fromEntries(REGIONS.map((c) => [c, Object.fromEntries(REGIONS.map((r) => [r, c === r ? '0ms' : '1ms']))])) },
    purge: { token: TOKEN },
  } as CdnConfigInput;
}

export async function measurePurge(session: CdnSession, s: PurgeSettings): Promise<void> {
  const { ctx } = session;
  const origin = await startOrigin({ objects: s.purges + 1, bodyBytes: BODY_BYTES });
  const agent = new Agent({ connections: 16 });
  try {
    const cdn = await startBenchCdn(input(origin.url));
    if ('unavailable' in cdn) {
      ctx.note(`purge propagation: not measured, ${cdn.unavailable}`);
      return;
    }
    ctx.log(`\n${PURGE_SCENARIO}: ${s.purges} purges, one at a time, each of an object every node holds`);
    const propagation: number[] = [];
    const atClient: number[] = [];
    let failed = 0;
    let firstProblem: string | undefined;
    const fail = (why: string): void => {
      failed++;
      firstProblem ??= why;
    };
    const fetch = async (path: string, region: string): Promise<{ ok: boolean; hit: boolean }> => {
      const r = await request(`${cdn.routerUrl}${path}`, { dispatcher: agent, headers: { 'x-client-region': region } });
      const body = Buffer.from(await r.body.arrayBuffer());
      return { ok: r.statusCode === 200 && isObjectBody(path, body, BODY_BYTES), hit: isHit(r.headers['x-cache']) };
    };
    try {
      for (let i = 0; i < s.purges; i++) {
        const path = objectPath(i);
        let warm = true;
        for (const region of REGIONS) {
          const a = await fetch(path, region);
          const b = await fetch(path, region);
          if (!a.ok || !b.ok || !b.hit) warm = false;
        }
        if (!warm) {
          fail(`${path} was not cached at every edge before the purge`);
          continue;
        }
        const t = performance.now();
        const r = await request(`${cdn.adminUrl}/purge`, {
          dispatcher: agent,
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ url: path, mode: 'hard' }),
        });
        const text = await r.body.text();
        const clientMs = performance.now() - t;
        let answer: PurgeAnswer = {};
        try {
          answer = JSON.parse(text) as PurgeAnswer;
        } catch {
          // reported below
        }
        const nodes = answer.nodes ?? [];
        if (r.statusCode !== 200 || typeof answer.propagationMs !== 'number' || nodes.length !== REGIONS.length + 1 || nodes.some((n) => n.acked === false)) {
          fail(`purge of ${path} answered ${r.statusCode} ${text.slice(0, 200)}`);
          continue;
        }
        if ((answer.purged ?? 0) < REGIONS.length + 1) {
          fail(`purge of ${path} removed ${answer.purged} objects, expected one per node (${REGIONS.length + 1})`);
          continue;
        }
        const after = await fetch(path, REGIONS[i % REGIONS.length]!);
        if (!after.ok || after.hit) {
          fail(`${path} was still ${after.ok ? 'a hit' : 'failing'} after the purge`);
          continue;
        }
        propagation.push(answer.propagationMs);
        atClient.push(clientMs);
      }
    } finally {
      await cdn.close();
    }
    const row = (metric: string, value: number, unit: string): void => ctx.row({ system: PURGE_SYSTEM, scenario: PURGE_SCENARIO, metric, value, unit });
    if (propagation.length) {
      row('propagation p50', percentile(propagation, 50), 'ms');
      row('propagation p99', percentile(propagation, 99), 'ms');
      row('answer at client p50', percentile(atClient, 50), 'ms');
      row('answer at client p99', percentile(atClient, 99), 'ms');
    }
    row('purges', propagation.length, 'purges');
    if (failed) {
      row('failed purges', failed, 'purges');
      ctx.note(`purge propagation: ${failed} of ${s.purges} purges failed or could not be checked, first: ${firstProblem}`);
    }
  } finally {
    await agent.close();
    await origin.close();
  }
}
