/**
 * archlab's CDN network as the bench drives it: `startCdnServer` (src/cdn/server.ts: startCdn's
 * origin, shield, edges and router, plus the admin API with POST /purge). Loaded lazily, so the
 * rest of the bench runs while the CDN is still being written (its rows are then skipped with a
 * note).
 */
import type { CdnConfigInput } from '../../src/cdn/config.js';
import type { ServerAddress } from '../../src/core/lifecycle.js';
import type { startCdnServer as StartCdnServer } from '../../src/cdn/server.js';

export interface BenchCdn {
  /** The router (front door), e.g. http://127.0.0.1:PORT (no path). */
  routerUrl: string;
  /** The admin API, e.g. http://127.0.0.1:PORT (no path). */
  adminUrl: string;
  close(): Promise<void>;
}

/** A computed specifier, so the bench runs (and skips these rows) before the module is complete. */
const SERVER = '../../src/cdn/server.js';

const base = (a: ServerAddress): string => (a.url ?? `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`).replace(/\/$/, '');

/** Starts the CDN from `input` (with an `admin` block); `{ unavailable }` while src/cdn cannot load. */
export async function startBenchCdn(input: CdnConfigInput): Promise<BenchCdn | { unavailable: string }> {
  let mod: { startCdnServer?: typeof StartCdnServer };
  try {
    mod = (await import(SERVER)) as { startCdnServer?: typeof StartCdnServer };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'ERR_MODULE_NOT_FOUND') {
      const missing = /Cannot find module '([^']+)'/.exec(e.message ?? '')?.[1] ?? '?';
      return { unavailable: `src/cdn is not complete yet (${missing.replace(/^.*?(src[/\\])/, '$1')} is missing)` };
    }
    return { unavailable: `importing src/cdn/server.ts failed: ${e.message ?? String(err)}` };
  }
  if (typeof mod.startCdnServer !== 'function') return { unavailable: 'src/cdn/server.ts does not export startCdnServer yet' };
  const h = await mod.startCdnServer(input);
  if (!h.admin) {
    await h.close();
    return { unavailable: 'the CDN started without its admin listener' };
  }
  return { routerUrl: base(h.address), adminUrl: base(h.admin), close: () => h.close() };
}
