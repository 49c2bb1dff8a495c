/** Shared pieces of the balancer's integration tests: backends on loopback, a balancer, requests. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { ArchlabError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { startBalancer, type BalancerConfigInput, type BalancerHandle } from '../../src/balancer/index.js';

export interface TestBackend {
  name: string;
  port: number;
  address: string;
  server: http.Server;
  /** Requests seen, with their headers. */
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/**
 * A backend that answers `name` (its body says who answered) unless `handler` takes the request.
 * Closed in t.after.
 */
export async function backend(t: TestContext, name: string, handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | void, port = 0): Promise<TestBackend> {
  const seen: TestBackend['seen'] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (handler?.(req, res) === true) return;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
      res.end(name);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const p = (server.address() as AddressInfo).port;
  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  t.after(async () => {
    if (server.listening) await close();
  });
  return { name, port: p, address: `127.0.0.1:${p}`, server, seen, close };
}

export async function balancer(t: TestContext, config: Omit<BalancerConfigInput, 'listeners'> & { listeners?: BalancerConfigInput['listeners'] }): Promise<BalancerHandle & { url: string }> {
  const lb = await startBalancer(
    { listeners: [{ port: 0 }], accessLog: false, metrics: { defaultMetrics: false }, ...config } as BalancerConfigInput,
    { logger: createLogger({ level: 'silent' }) },
  );
  t.after(() => lb.close());
  return Object.assign(lb, { url: `http://127.0.0.1:${lb.listeners[0]!.port}` });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection (no keep-alive surprises between tests), bounded by a timeout. */
export function request(url: string, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(opts.path ?? '/', url);
    const req = http.request(u, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- Added for the bad-input, resilience, chaos and streaming tests. ----

/** A loopback port nothing listens on (bound, then released): connecting to it is refused. */
export async function deadPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `cond` every `everyMs` until it holds (true) or `timeoutMs` passes (false). */
export async function waitFor(cond: () => boolean, timeoutMs: number, everyMs = 10): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (performance.now() >= end) return false;
    await sleep(everyMs);
  }
}

/** The live state of backend `id` in pool `pool` of a running balancer (health, ejection, counters). */
export function liveBackend(lb: BalancerHandle, pool: string, id: string): NonNullable<ReturnType<typeof findBackend>> {
  const b = findBackend(lb, pool, id);
  if (!b) throw new ArchlabError('TEST_NO_BACKEND', `no backend ${id} in pool ${pool}`);
  return b;
}

function findBackend(lb: BalancerHandle, pool: string, id: string) {
  return lb.state().pools.get(pool)?.pool.find(id);
}
