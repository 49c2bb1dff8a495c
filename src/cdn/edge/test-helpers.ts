/**
 * Test support for the edge (used by test/cdn/edge-*.test.ts): a recording origin on port 0, a
 * small HTTP client that returns the whole response, and an edge over fresh memory storage.
 * Everything binds 127.0.0.1 and is closed by the returned close().
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Clock } from '../../core/clock.js';
import { createStorage, type StorageOptions } from '../storage/index.js';
import type { CdnStorage } from '../types.js';
import { startEdge, type EdgeHandle, type EdgeOptions } from './index.js';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface Origin {
  url: string;
  port: number;
  /** Every request the origin received, in order. */
  seen: SeenRequest[];
  /** Requests received for `url` (all when omitted). */
  count(url?: string): number;
  close(): Promise<void>;
}

/** An HTTP origin on 127.0.0.1:0 that records requests and answers with `handler`. Date is not sent unless the handler sets it (tests run on a ManualClock). */
export async function startOrigin(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Origin> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    res.sendDate = false;
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    count: (url?: string) => (url === undefined ? seen.length : seen.filter((s) => s.url === url).length),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

export interface SendOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Host header. Default 'example.test'. */
  host?: string;
}

/** One request on a fresh connection; resolves with the whole response. */
export function send(base: string, path: string, o: SendOptions = {}): Promise<Reply> {
  const u = new URL(base);
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method: o.method ?? 'GET',
        path,
        agent: false,
        setHost: false,
        headers: { host: o.host ?? 'example.test', ...o.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString() });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

export interface TestEdge {
  edge: EdgeHandle;
  storage: CdnStorage;
  url: string;
  close(): Promise<void>;
}

/** An edge (tier 'edge', purge token 'secret') in front of `upstream` over fresh memory storage. */
export async function startTestEdge(upstream: string, o: Partial<EdgeOptions> & { storageOptions?: Partial<StorageOptions>; clock?: Clock } = {}): Promise<TestEdge> {
  const { storageOptions, ...rest } = o;
  const storage = o.storage ?? (await createStorage({ memoryBytes: 8 * 1024 * 1024, ...storageOptions }));
  let edge: EdgeHandle;
  try {
    edge = await startEdge({ name: 'e1', region: 'eu', tier: 'edge', upstream, storage, purgeToken: 'secret', ...rest });
  } catch (err) {
    await storage.close();
    throw err;
  }
  return {
    edge,
    storage,
    url: edge.url,
    close: async () => {
      await edge.close();
      await storage.close();
    },
  };
}

/** Polls `cond` every 5 ms until it is true; rejects after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`); // eslint-disable-line no-restricted-syntax
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A ManualClock start on a whole second, so a Date the policy adds (second resolution) equals now. */
export const CLOCK_START_MS = 1_700_000_000_000;
