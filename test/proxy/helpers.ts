/** Shared pieces of the proxy's integration tests: a proxy whose log lines are kept, loopback backends, raw clients. */
import { execFile } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { ArchlabError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { startProxy, type ProxyConfigInput, type ProxyHandle, type ProxyOptions } from '../../src/proxy/index.js';

export type LogLine = Record<string, unknown> & { msg?: string; type?: string; status?: number; reason?: string };

export interface TestProxy extends ProxyHandle {
  url: string;
  port: number;
  /** Every JSON line the proxy logged. */
  logs: LogLine[];
  /** Access lines only. */
  access(): LogLine[];
}

/**
 * A proxy on a free loopback port. Test defaults: CONNECT to any port, 127.0.0.1 as an SSRF
 * exception (the backends live there), a 1 s drain. Closed in t.after.
 */
export async function proxy(t: TestContext, config: Partial<ProxyConfigInput> = {}, opts: Omit<ProxyOptions, 'logger'> = {}): Promise<TestProxy> {
  const logs: LogLine[] = [];
  let pending = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        logs.push(JSON.parse(pending.slice(0, nl)) as LogLine);
        pending = pending.slice(nl + 1);
      }
      cb();
    },
  });
  const p = await startProxy(
    {
      listeners: [{ port: 0 }],
      metrics: { defaultMetrics: false },
      acl: { connectPorts: ['1-65535'], ssrfGuard: { exceptions: ['127.0.0.1'] } },
      timeouts: { drain: '1s' },
      ...config,
    } as ProxyConfigInput,
    { ...opts, logger: createLogger({ level: 'info', destination: sink, pretty: false }) },
  );
  t.after(() => p.close());
  return Object.assign(p, { url: p.address.url!, port: p.address.port, logs, access: () => logs.filter((l) => l.type === 'access') });
}

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TestBackend {
  port: number;
  server: http.Server;
  seen: Seen[];
}

/** An HTTP server on 127.0.0.1 answering "ok <path>" unless `handler` takes the request (returns true). */
export async function backend(t: TestContext, handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => boolean | void): Promise<TestBackend> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (handler?.(req, res, body) === true) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`ok ${req.url}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, server, seen };
}

/** A TCP echo server on 127.0.0.1. */
export async function echoServer(t: TestContext): Promise<{ port: number; server: net.Server }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, server };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Node's own http client sending absolute-form to the proxy, on a fresh connection. */
export function viaProxy(p: { port: number }, url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { host: '127.0.0.1', port: p.port, method: opts.method ?? 'GET', path: url, headers: { host: u.host, ...opts.headers }, agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new ArchlabError('TEST_CLIENT_TIMEOUT', 'client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export interface RawReply {
  status: number;
  head: string;
  body: string;
  raw: string;
}

/** Writes `text` as it is and reads until the proxy closes the connection (or timeoutMs). */
export function raw(port: number, text: string, timeoutMs = 5000): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      // One complete response with a body of content-length is enough (keep-alive answers do not close).
      const end = buf.indexOf('\r\n\r\n');
      const cl = /\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end));
      if (end >= 0 && cl && buf.length >= end + 4 + Number(cl[1])) s.end();
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      const end = buf.indexOf('\r\n\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
      resolve({ status: m ? Number(m[1]) : 0, head: end >= 0 ? buf.slice(0, end) : buf, body: end >= 0 ? buf.slice(end + 4) : '', raw: buf });
    });
    s.write(text);
  });
}

export interface Tunnel {
  status: number;
  head: string;
  socket: net.Socket;
  /** Bytes that came after the response head. */
  rest: Buffer;
}

/** Sends CONNECT and resolves with the response head; on 200 the socket is the tunnel. */
export function connect(port: number, authority: string, headers: Record<string, string> = {}): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const head = buf.subarray(0, end).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, head, socket: s, rest: buf.subarray(end + 4) });
    };
    s.on('data', onData);
    s.on('error', reject);
    s.on('close', () => resolve({ status: 0, head: buf.toString('latin1'), socket: s, rest: Buffer.alloc(0) }));
    let text = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
    for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
    s.write(`${text}\r\n`);
  });
}

/** Writes `data` into an open tunnel to an echo server and resolves with what comes back. */
export function echoThrough(tunnel: Tunnel, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = tunnel.rest;
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= data.length) {
        tunnel.socket.off('data', onData);
        resolve(got);
      }
    };
    tunnel.socket.on('data', onData);
    tunnel.socket.on('error', reject);
    tunnel.socket.write(data);
  });
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

let curlPath: string | null | undefined;
/** The curl binary, or undefined when it is not installed (tests using it skip). */
export async function findCurl(): Promise<string | undefined> {
  if (curlPath === undefined) {
    curlPath = await new Promise<string | null>((resolve) => execFile('curl', ['--version'], (err) => resolve(err ? null : 'curl')));
  }
  return curlPath ?? undefined;
}

/** Runs curl (asynchronously: the proxy shares this event loop), returning its exit code and output. */
export function curl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { env: { PATH: process.env.PATH, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` until it holds or `timeoutMs` passes. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(10);
  }
  return true;
}
