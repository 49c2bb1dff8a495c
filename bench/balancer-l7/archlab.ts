/**
 * The system under test: archlab's L7 balancer started from code with one pool.
 *
 *   node --import tsx bench/balancer-l7/archlab.ts --backends 127.0.0.1:P[,127.0.0.1:Q...] \
 *     [--algorithm round-robin] [--workers N]
 *
 * With `--workers N` (N > 1) the primary forks N node:cluster workers; each calls startBalancer on
 * the same port, which the primary picks first and passes in ARCHLAB_BENCH_PORT (node:cluster then
 * shares the one listening socket). Prints `{"port":N}` once every worker listens,
 * `{"unavailable":...}` while src/balancer/index.ts has no startBalancer, `{"failed":...}` when it
 * throws.
 */
import cluster from 'node:cluster';
import { createServer } from 'node:net';
import type { BalancerConfigInput } from '../../src/balancer/config.js';
import { printReady, type ReadyLine } from './common.js';

import type { startBalancer as StartBalancerFn } from '../../src/balancer/index.js';

type StartBalancer = typeof StartBalancerFn;
type BalancerHandle = Awaited<ReturnType<StartBalancer>>;

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const backends = (opt('--backends') ?? '').split(',').filter(Boolean);
const algorithm = (opt('--algorithm') ?? 'round-robin') as NonNullable<BalancerConfigInput['pools'][number]['algorithm']>;
const workers = Math.max(1, Number(opt('--workers') ?? '1'));

const INDEX = '../../src/balancer/index.js';

async function load(): Promise<StartBalancer | ReadyLine> {
  let mod: { startBalancer?: unknown };
  try {
    // A computed specifier: the bench must type-check (and skip archlab) before the module exists.
    const spec = INDEX;
    mod = (await import(spec)) as { startBalancer?: unknown };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'ERR_MODULE_NOT_FOUND') {
      // "Cannot find module '<path>' imported from <file>": the index itself, or a module it needs
      // that is still being written.
      const missing = /Cannot find module '([^']+)'/.exec(e.message ?? '')?.[1] ?? '?';
      if (/src[/\\]balancer[/\\]index\.[jt]s$/.test(missing)) return { unavailable: 'src/balancer/index.ts does not exist yet' };
      return { unavailable: `src/balancer is not complete yet (${missing.replace(/^.*?(src[/\\])/, '$1')} is missing)` };
    }
    return { failed: `importing src/balancer/index.ts: ${e.message ?? String(err)}` };
  }
  if (typeof mod.startBalancer !== 'function') return { unavailable: 'src/balancer/index.ts does not export startBalancer yet' };
  return mod.startBalancer as StartBalancer;
}

async function start(port: number): Promise<{ handle?: BalancerHandle; line: ReadyLine }> {
  const startBalancer = await load();
  if (typeof startBalancer !== 'function') return { line: startBalancer };
  const config: BalancerConfigInput = {
    listeners: [{ host: '127.0.0.1', port }],
    pools: [{ name: 'app', algorithm, backends: backends.map((address) => ({ address })) }],
    accessLog: false,
    log: { level: 'warn' },
  };
  try {
    const handle = await startBalancer(config);
    const listener = handle.listeners[0];
    if (!listener) return { handle, line: { failed: 'startBalancer returned no listeners' } };
    return { handle, line: { port: listener.port } };
  } catch (err) {
    return { line: { failed: `startBalancer: ${(err as Error).message ?? String(err)}` } };
  }
}

function onTerm(handle: BalancerHandle | undefined): void {
  process.on('SIGTERM', () => {
    const cap = setTimeout(() => process.exit(0), 2000);
    cap.unref();
    void (handle?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  });
}

function pickPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

if (workers === 1) {
  const { handle, line } = await start(0);
  printReady(line);
  if (!('port' in line)) process.exit(3);
  onTerm(handle);
} else if (cluster.isPrimary) {
  const port = await pickPort();
  let ready = 0;
  let done = false;
  const finish = (line: ReadyLine): void => {
    if (done) return;
    done = true;
    printReady(line);
    if (!('port' in line)) {
      for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
      process.exit(3);
    }
  };
  for (let i = 0; i < workers; i++) {
    const w = cluster.fork({ ARCHLAB_BENCH_PORT: String(port) });
    w.on('message', (m: ReadyLine) => {
      if (!('port' in m)) finish(m);
      else if (++ready === workers) finish({ port });
    });
    w.on('exit', (code, signal) => finish({ failed: `cluster worker ${i} ${signal ? `killed by ${signal}` : `exited with code ${code}`}` }));
  }
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2500).unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  });
} else {
  const { handle, line } = await start(Number(process.env.ARCHLAB_BENCH_PORT));
  process.send?.(line);
  onTerm(handle);
}
