/**
 * Fixtures shared by the CDN network's tests (imported by test files only; left out of the build):
 * a config on loopback with free ports and silent logs, a CDN started for one test and closed after
 * it even when it fails, and a small HTTP client with its own keep-alive pool.
 */
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import type { CdnConfigInput } from '../config.js';
import { startCdnServer, type CdnServerHandle } from '../server.js';

export const TEST_TOKEN = 'test-token-0123456789';

/** A config with free ports, silent logs, no process metrics, short timeouts; `over` replaces top-level blocks. */
export function testConfig(over: Partial<CdnConfigInput> = {}): CdnConfigInput {
  return {
    listeners: [{ port: 0 }],
    admin: { port: 0, token: TEST_TOKEN },
    log: { level: 'silent' },
    metrics: { defaultMetrics: false },
    timeouts: { connect: '1s', response: '5s', drain: '1s' },
    purge: { token: TEST_TOKEN, timeout: '1s' },
    origin: { demo: { port: 0, slow: '300ms' } },
    regions: [
      { name: 'eu', edges: 2, storage: { memory: '4MiB' } },
      { name: 'us', edges: 1, storage: { memory: '4MiB' } },
      { name: 'ap', edges: 1, storage: { memory: '4MiB' } },
    ],
    shield: { storage: { memory: '8MiB' } },
    ...over,
  };
}

/** Starts a CDN for the test and closes it when the test ends, pass or fail. */
export async function withCdn(t: TestContext, config: CdnConfigInput): Promise<CdnServerHandle> {
  const cdn = await startCdnServer(config);
  t.after(() => cdn.close());
  return cdn;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** From sending the request to the whole body read, ms. */
  ms: number;
}

/** An HTTP client with its own pool, closed with the test. */
export function client(t: TestContext): (url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<Reply> {
  const agent = new Agent({ keepAliveTimeout: 1000 });
  t.after(() => agent.close());
  return async (url, init = {}) => {
    const t0 = performance.now();
    const res = await request(url, { dispatcher: agent, method: (init.method ?? 'GET') as 'GET', headers: init.headers ?? {}, ...(init.body === undefined ? {} : { body: init.body }) });
    const body = await res.body.text();
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    return { status: res.statusCode, headers, body, ms: performance.now() - t0 };
  };
}

/** POST /purge on the admin listener; `token` null sends none. */
export function purgeVia(http: ReturnType<typeof client>, cdn: CdnServerHandle, body: unknown, token: string | null = TEST_TOKEN): Promise<Reply> {
  return http(`${cdn.admin!.url}/purge`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify(body),
  });
}
