/**
 * The load client, a child process of its own (so it never shares an event loop with a proxy):
 *
 *   load.ts --proxy <port|0> --source <port> --sink <port> --http <port> --bytes N --runs R
 *           --connections C --warmup S --duration S [--auth <Proxy-Authorization value>]
 *
 * 1. Checks first: 1 MiB down a tunnel, every byte compared with the source's pattern; a proxy
 *    that corrupts or truncates is void (the result line says "failed").
 * 2. Tunnel throughput: CONNECT through the proxy (port 0: straight to the target), then move N
 *    bytes one way, R times each way; timed from the request for bytes to the last byte through.
 * 3. HTTP: a closed loop on C keep-alive connections sending absolute-form GETs through the proxy
 *    (origin-form straight to the target with port 0); every body is checked.
 *
 * Prints {"result":{"down":[ms...],"up":[ms...],"http":{requests,errors,rps,p50Ms,p90Ms,p99Ms,maxMs}}}.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { BenchProcessError, printLine } from './procs.js';
import { BODY } from './common.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt?: string): string => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? argv[i + 1] : dflt;
  if (v === undefined) throw new BenchProcessError(`load.ts: --${name} is required`);
  return v;
};
const proxyPort = Number(opt('proxy'));
const ports = { source: Number(opt('source')), sink: Number(opt('sink')), http: Number(opt('http')) };
const auth = argv.includes('--auth') ? opt('auth') : undefined;

/** A socket to the target: through a CONNECT tunnel, or direct. */
function open(targetPort: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort || targetPort, '127.0.0.1');
    s.setNoDelay(true);
    s.once('error', reject);
    if (!proxyPort) {
      s.once('connect', () => resolve(s));
      return;
    }
    let head = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const status = head.subarray(0, 12).toString();
      if (!/^HTTP\/1\.[01] 200/.test(status)) return reject(new BenchProcessError(`CONNECT answered ${JSON.stringify(head.subarray(0, end).toString())}`));
      if (end + 4 < head.length) s.unshift(head.subarray(end + 4));
      resolve(s);
    };
    s.on('data', onData);
    s.write(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
  });
}

async function tunnelRun(direction: 'down' | 'up', bytes: number, verify: boolean): Promise<number> {
  const s = await open(direction === 'down' ? ports.source : ports.sink);
  const t0 = performance.now();
  if (direction === 'down') {
    let got = 0;
    let bad = -1;
    await new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => {
        if (verify && bad < 0) {
          for (let i = 0; i < d.length; i++) {
            if (d[i] !== ((got + i) & 255)) {
              bad = got + i;
              break;
            }
          }
        }
        got += d.length;
      });
      s.on('end', () => resolve());
      s.on('error', reject);
      s.write(`${bytes}\n`);
    });
    const ms = performance.now() - t0;
    s.destroy();
    if (got !== bytes) throw new BenchProcessError(`download: got ${got} of ${bytes} bytes`);
    if (bad >= 0) throw new BenchProcessError(`download: wrong byte at offset ${bad}`);
    return ms;
  }
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  await new Promise<void>((resolve, reject) => {
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    s.on('end', () => (answer === 'k' ? resolve() : reject(new BenchProcessError(`upload: sink answered ${JSON.stringify(answer)}`))));
    s.on('error', reject);
    s.write(`${bytes}\n`);
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const take = Math.min(left, chunk.length);
        left -= take;
        if (!s.write(take === chunk.length ? chunk : chunk.subarray(0, take))) {
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
  const ms = performance.now() - t0;
  s.destroy();
  return ms;
}


function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface HttpResult {
  requests: number;
  errors: number;
  /** Requests sent again after a reused connection turned out closed. */
  retries: number;
  /** Failed requests by kind (status or error code). */
  faults: Record<string, number>;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function httpLoad(): Promise<HttpResult> {
  const targetPort = ports.http;
  const connections = Number(opt('connections'));
  const warmupMs = Number(opt('warmup')) * 1000;
  const durationMs = Number(opt('duration')) * 1000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const path = proxyPort ? `http://127.0.0.1:${targetPort}/` : '/';
  const headers: Record<string, string> = { host: `127.0.0.1:${targetPort}` };
  if (auth) headers['proxy-authorization'] = auth;
  let samples = new Float64Array(1 << 16);
  let n = 0;
  let errors = 0;
  let measuring = false;
  let stop = false;
  const record = (ms: number): void => {
    if (n === samples.length) {
      const bigger = new Float64Array(samples.length * 2);
      bigger.set(samples);
      samples = bigger;
    }
    samples[n++] = ms;
  };
  let retries = 0;
  const faults: Record<string, number> = {};
  const fault = (kind: string): void => {
    errors++;
    faults[kind] = (faults[kind] ?? 0) + 1;
  };
  /**
   * One GET; `t0` is when the first attempt started. A request that fails on a reused keep-alive
   * socket before any response (the server closed it meanwhile) is sent again once on a new one,
   * as Node's docs, undici and curl do for idempotent requests; the latency includes the failed try.
   */
  const one = (t0 = performance.now(), retried = false): Promise<void> =>
    new Promise((resolve) => {
      // The retry goes on a new connection: another pooled one may be just as stale.
      const req = http.request({ host: '127.0.0.1', port: proxyPort || targetPort, path, headers, agent: retried ? false : agent }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          if (measuring) {
            if (res.statusCode === 200 && body === BODY) record(performance.now() - t0);
            else fault(`status ${res.statusCode}${res.statusCode === 200 ? ', wrong body' : ''}`);
          }
          resolve();
        });
        res.on('error', (err: NodeJS.ErrnoException) => {
          if (measuring) fault(err.code ?? err.message);
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (req.reusedSocket && !retried && (err.code === 'ECONNRESET' || err.message === 'socket hang up')) {
          if (measuring) retries++;
          resolve(one(t0, true));
          return;
        }
        if (measuring) fault(err.code ?? err.message);
        resolve();
      });
      req.end();
    });
  const loop = async (): Promise<void> => {
    while (!stop) await one();
  };
  const loops = Array.from({ length: connections }, () => loop());
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, durationMs));
  measuring = false;
  const elapsed = performance.now() - t0;
  stop = true;
  await Promise.all(loops);
  agent.destroy();
  const sorted = samples.subarray(0, n).sort();
  return {
    requests: n,
    errors,
    retries,
    faults,
    rps: (n / elapsed) * 1000,
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    maxMs: n ? sorted[n - 1]! : 0,
  };
}

try {
  await tunnelRun('down', 1024 * 1024, true);
  const bytes = Number(opt('bytes'));
  const runs = Number(opt('runs'));
  const down: number[] = [];
  const up: number[] = [];
  for (let r = 0; r < runs; r++) down.push(await tunnelRun('down', bytes, false));
  for (let r = 0; r < runs; r++) up.push(await tunnelRun('up', bytes, false));
  const httpResult = await httpLoad();
  printLine({ result: { down, up, http: httpResult } });
} catch (err) {
  printLine({ failed: (err as Error).message });
}
process.exit(0);
