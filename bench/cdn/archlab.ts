/**
 * archlab's edge node and its storage as the bench drives them (`startEdge`, `createStorage`),
 * loaded lazily: if src/cdn/edge or src/cdn/storage cannot be loaded (being rewritten, broken),
 * the bench still runs its peers and says why archlab's rows are missing instead of failing.
 */
import type { startEdge as StartEdge } from '../../src/cdn/edge/index.js';
import type { createStorage as CreateStorage } from '../../src/cdn/storage/index.js';

export type { EdgeHandle } from '../../src/cdn/edge/index.js';

export interface EdgeApi {
  startEdge: typeof StartEdge;
  createStorage: typeof CreateStorage;
}

/** Computed specifiers: loaded at run time, so a module that fails to load is reported, not fatal. */
const EDGE = '../../src/cdn/edge/index.js';
const STORAGE = '../../src/cdn/storage/index.js';

async function importPart(spec: string, what: string): Promise<Record<string, unknown> | string> {
  try {
    return (await import(spec)) as Record<string, unknown>;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'ERR_MODULE_NOT_FOUND') {
      const missing = /Cannot find module '([^']+)'/.exec(e.message ?? '')?.[1] ?? '?';
      return `${what} is not complete yet (${missing.replace(/^.*?(src[/\\])/, '$1')} is missing)`;
    }
    return `importing ${what} failed: ${e.message ?? String(err)}`;
  }
}

/** The edge and storage modules, or why they cannot be used. */
export async function loadEdgeApi(): Promise<EdgeApi | { unavailable: string }> {
  const edge = await importPart(EDGE, 'src/cdn/edge');
  if (typeof edge === 'string') return { unavailable: edge };
  const storage = await importPart(STORAGE, 'src/cdn/storage');
  if (typeof storage === 'string') return { unavailable: storage };
  if (typeof edge.startEdge !== 'function') return { unavailable: 'src/cdn/edge/index.ts does not export startEdge' };
  if (typeof storage.createStorage !== 'function') return { unavailable: 'src/cdn/storage/index.ts does not export createStorage' };
  return { startEdge: edge.startEdge as EdgeApi['startEdge'], createStorage: storage.createStorage as EdgeApi['createStorage'] };
}
