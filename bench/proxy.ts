/**
 * The forward proxy against its peers on loopback: CONNECT tunnel throughput (one tunnel, bytes
 * down from a TCP source and up to a TCP sink) and plain-HTTP latency and rate through the proxy
 * (a closed loop of keep-alive connections sending absolute-form GETs for a 64-byte body), for:
 * no proxy (direct), archlab (access log on, SSRF guard on), archlab with Basic auth (credential
 * cache warm), tinyproxy (Debian package, its own config in a temp dir) and the proxy-chain npm
 * package. Same targets, same client, same settings for every system.
 *
 * Every system, the targets and the client run in their own process groups (bench/proxy/procs.ts),
 * so no two share an event loop; all are stopped at the end, even on error.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { userLine } from '../src/proxy/auth.js';
import { ROOT, find, median, table, type Bench, type BenchContext, type Results } from './harness.js';
import { Child, findBinary, freePort } from './proxy/procs.js';

const CONNECTIONS = 32;
const MB = 1e6;

interface Settings {
  /** Bytes per tunnel run, each way. */
  bytes: number;
  /** Rounds: every system is measured once per round, in turn, so a slow spell of the machine is spread over all of them; the median is reported. */
  rounds: number;
  warmupS: number;
  durationS: number;
  /** Longest wait for a quiet machine before each measurement (0: do not wait). */
  quietWaitS: number;
}

const QUICK: Settings = { bytes: 256 * 2 ** 20, rounds: 1, warmupS: 1, durationS: 3, quietWaitS: 0 };
const FULL: Settings = { bytes: 2 ** 30, rounds: 5, warmupS: 2, durationS: 8, quietWaitS: 20 };

export const SYSTEMS = {
  direct: 'direct (no proxy)',
  archlab: 'archlab',
  archlabAuth: 'archlab (Basic auth)',
  tinyproxy: 'tinyproxy',
  proxyChain: 'proxy-chain',
} as const;

export const SCENARIOS = {
  down: 'CONNECT tunnel, download',
  up: 'CONNECT tunnel, upload',
  http: `HTTP GET 64B, ${CONNECTIONS} keep-alive conns`,
} as const;

const node = (script: string): string[] => ['--import', 'tsx', join(ROOT, 'bench', 'proxy', script)];

interface System {
  name: string;
  /** Proxy port, 0 for direct. */
  port: number;
  auth?: string;
  child?: Child;
}

class Run {
  readonly dir = mkdtempSync(join(tmpdir(), 'archlab-bench-proxy-'));
  readonly children: Child[] = [];
  /** Measurements other processes may have disturbed, noted at the end. */
  readonly disturbed: string[] = [];

  constructor(readonly ctx: BenchContext) {}

  spawn(name: string, command: string, args: string[]): Child {
    const c = new Child(name, command, args, ROOT);
    this.children.push(c);
    return c;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  async nodeSystem(name: string, script: string, args: string[] = []): Promise<System | undefined> {
    const child = this.spawn(name, process.execPath, [...node(script), ...args]);
    const line = await child.line(['ready', 'unavailable'], 30_000);
    if ('unavailable' in line) {
      this.ctx.note(`${name} skipped: ${String(line.unavailable)}`);
      await child.stop();
      return undefined;
    }
    return { name, port: Number(line.port), child };
  }

  async tinyproxy(): Promise<System | undefined> {
    const bin = findBinary('tinyproxy');
    if (!bin) {
      this.ctx.note('tinyproxy not installed, skipped: apt-get install -y tinyproxy');
      return undefined;
    }
    const port = await freePort();
    const conf = join(this.dir, 'tinyproxy.conf');
    // No ConnectPort lines: CONNECT to any port (the targets use ephemeral ones). One log line per
    // connection and request, to a file, as archlab's access log.
    writeFileSync(
      conf,
      [
        `Port ${port}`,
        'Listen 127.0.0.1',
        'Timeout 600',
        'MaxClients 1024',
        `LogFile "${join(this.dir, 'tinyproxy.log')}"`,
        'LogLevel Connect',
        `PidFile "${join(this.dir, 'tinyproxy.pid')}"`,
        'Allow 127.0.0.1',
        '',
      ].join('\n'),
    );
    const child = this.spawn(SYSTEMS.tinyproxy, bin, ['-d', '-c', conf]);
    await child.waitForPort(port, 10_000);
    return { name: SYSTEMS.tinyproxy, port, child };
  }
}

interface Sample {
  down: number;
  up: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  requests: number;
  retries: number;
  faults: Record<string, number>;
}

/** One round for one system: a load client process runs the checks, one tunnel each way, then the HTTP loop. */
async function measureOnce(run: Run, s: Settings, sys: System, targets: { source: number; sink: number; http: number }): Promise<Sample | undefined> {
  const args = [
    '--proxy', String(sys.port),
    '--source', String(targets.source),
    '--sink', String(targets.sink),
    '--http', String(targets.http),
    '--bytes', String(s.bytes),
    '--runs', '1',
    '--connections', String(CONNECTIONS),
    '--warmup', String(s.warmupS),
    '--duration', String(s.durationS),
    ...(sys.auth ? ['--auth', sys.auth] : []),
  ];
  const client = run.spawn(`load via ${sys.name}`, process.execPath, [...node('load.ts'), ...args]);
  const line = await client.line(['result', 'failed'], 300_000);
  await client.stop();
  if ('failed' in line) {
    run.ctx.note(`${sys.name}: void, the client's checks failed: ${String(line.failed)}`);
    return undefined;
  }
  const r = line.result as { down: number[]; up: number[]; http: { requests: number; errors: number; retries: number; faults: Record<string, number>; rps: number; p50Ms: number; p99Ms: number } };
  return {
    down: s.bytes / MB / (r.down[0]! / 1000),
    up: s.bytes / MB / (r.up[0]! / 1000),
    rps: r.http.rps,
    p50: r.http.p50Ms,
    p99: r.http.p99Ms,
    errors: r.http.errors,
    requests: r.http.requests,
    retries: r.http.retries,
    faults: r.http.faults,
  };
}

/** Share of the machine's CPU time in use over `ms` (by anything: call it while the bench is idle). */
function busyShare(ms: number): Promise<number | undefined> {
  const read = (): [number, number] | undefined => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
      return [f.reduce((a, b) => a + b, 0), (f[3] ?? 0) + (f[4] ?? 0)];
    } catch {
      return undefined;
    }
  };
  const a = read();
  return new Promise((resolve) =>
    setTimeout(() => {
      const b = read();
      if (!a || !b || b[0] === a[0]) return resolve(undefined);
      resolve(1 - (b[1] - a[1]) / (b[0] - a[0]));
    }, ms),
  );
}

/**
 * Waits up to `waitS` for the machine to be quiet (under 15% of the CPUs busy) before a
 * measurement, so a neighbour's burst does not land in one system's numbers; records it when not.
 */
async function quiet(run: Run, waitS: number, what: string): Promise<void> {
  const deadline = performance.now() + waitS * 1000;
  let share = await busyShare(500);
  while (share !== undefined && share > 0.15 && performance.now() < deadline) share = await busyShare(1000);
  if (share !== undefined && share > 0.15) run.disturbed.push(`${what} (${Math.round(share * 100)}% busy)`);
}

const bench: Bench = {
  name: 'proxy',
  description: `forward proxy: CONNECT tunnel MB/s both ways and HTTP req/s, p50/p99 on ${CONNECTIONS} keep-alive connections; archlab vs tinyproxy and proxy-chain`,
  docsPage: 'docs/proxy.md',
  async run(ctx) {
    const s = ctx.quick ? QUICK : FULL;
    const run = new Run(ctx);
    try {
      const targetsChild = run.spawn('targets', process.execPath, node('targets.ts'));
      const t = await targetsChild.line('ready', 30_000);
      const targets = { source: Number(t.source), sink: Number(t.sink), http: Number(t.http) };
      ctx.log(`\n${(s.bytes / 2 ** 20).toFixed(0)} MiB per tunnel run each way; HTTP ${s.warmupS} s warm-up + ${s.durationS} s measured; ${s.rounds} round(s), median`);

      const password = 'bench-password';
      const line = await userLine('bench', password);
      const authHeader = `Basic ${Buffer.from(`bench:${password}`).toString('base64')}`;
      const starters: Array<() => Promise<System | undefined>> = [
        async () => ({ name: SYSTEMS.direct, port: 0 }),
        () => run.nodeSystem(SYSTEMS.archlab, 'archlab.ts'),
        async () => {
          const sys = await run.nodeSystem(SYSTEMS.archlabAuth, 'archlab.ts', ['--auth', line]);
          return sys && { ...sys, auth: authHeader };
        },
        () => run.tinyproxy(),
        () => run.nodeSystem(SYSTEMS.proxyChain, 'proxy-chain.ts'),
      ];
      // Every system stays up (an idle one costs nothing) and is measured in turn, round after round.
      const systems: System[] = [];
      for (const start of starters) {
        const sys = await start();
        if (sys) systems.push(sys);
      }
      const samples = new Map<string, Sample[]>(systems.map((sys) => [sys.name, []]));
      for (let round = 0; round < s.rounds; round++) {
        ctx.log(`round ${round + 1} of ${s.rounds}`);
        // Each round starts one system later, so none is always measured first (or right after another).
        for (let i = 0; i < systems.length; i++) {
          const sys = systems[(i + round) % systems.length]!;
          if (s.quietWaitS > 0) await quiet(run, s.quietWaitS, `${sys.name}, round ${round + 1}`);
          const sample = await measureOnce(run, s, sys, targets);
          if (sample) samples.get(sys.name)!.push(sample);
        }
      }
      for (const sys of systems) {
        const got = samples.get(sys.name)!;
        if (got.length === 0) continue;
        const med = (f: (x: Sample) => number): number => median(got.map(f));
        ctx.row({ system: sys.name, scenario: SCENARIOS.down, metric: 'throughput', value: med((x) => x.down), unit: 'MB/s' });
        ctx.row({ system: sys.name, scenario: SCENARIOS.up, metric: 'throughput', value: med((x) => x.up), unit: 'MB/s' });
        ctx.row({ system: sys.name, scenario: SCENARIOS.http, metric: 'rate', value: med((x) => x.rps), unit: 'req/s' });
        ctx.row({ system: sys.name, scenario: SCENARIOS.http, metric: 'p50', value: med((x) => x.p50), unit: 'ms' });
        ctx.row({ system: sys.name, scenario: SCENARIOS.http, metric: 'p99', value: med((x) => x.p99), unit: 'ms' });
        const errors = got.reduce((a, x) => a + x.errors, 0);
        const requests = got.reduce((a, x) => a + x.requests, 0);
        const retries = got.reduce((a, x) => a + x.retries, 0);
        const share = errors / Math.max(1, requests + errors);
        ctx.row({ system: sys.name, scenario: SCENARIOS.http, metric: 'errors', value: share, unit: 'share' });
        if (share > 0.001) {
          const kinds: Record<string, number> = {};
          for (const x of got) for (const [k, n] of Object.entries(x.faults)) kinds[k] = (kinds[k] ?? 0) + n;
          ctx.note(`${sys.name}: ${errors} of ${requests + errors} HTTP requests failed (${Object.entries(kinds).map(([k, n]) => `${k}: ${n}`).join(', ')}); its HTTP numbers are void`);
        }
        if (retries > 0) {
          ctx.note(
            `${sys.name}: ${retries} of ${requests} HTTP requests were sent twice: it closes a keep-alive connection after each answer without sending "Connection: close", so the client's next request on it fails and goes again on a new connection (as Node, undici and curl do; the latency includes it)`,
          );
        }
      }
      if (run.disturbed.length > 0) ctx.note(`the machine was busy with other processes before: ${run.disturbed.join('; ')}`);
    } finally {
      await run.stopAll();
    }
  },
  report: (results) => report(results),
};

function v(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

function report(results: Results): string {
  const systems = Object.values(SYSTEMS).filter((sys) => results.rows.some((r) => r.system === sys));
  const direct = (scenario: string, metric: string): number | undefined => v(results, SYSTEMS.direct, scenario, metric);
  const ratio = (x: number | undefined, base: number | undefined): string => (x === undefined || !base ? '-' : `${(x / base).toFixed(2)}x`);
  const num = (x: number | undefined, digits = 0): string => (x === undefined ? '-' : digits === 0 ? Math.round(x).toLocaleString('en-US') : x.toFixed(digits));
  const rows = systems.map((sys) => {
    const down = v(results, sys, SCENARIOS.down, 'throughput');
    const up = v(results, sys, SCENARIOS.up, 'throughput');
    const rps = v(results, sys, SCENARIOS.http, 'rate');
    return [
      sys,
      num(down),
      num(up),
      ratio(down, direct(SCENARIOS.down, 'throughput')),
      num(rps),
      num(v(results, sys, SCENARIOS.http, 'p50'), 2),
      num(v(results, sys, SCENARIOS.http, 'p99'), 2),
      ratio(rps, direct(SCENARIOS.http, 'rate')),
    ];
  });
  const bytes = `${(results.quick ? QUICK : FULL).bytes / 2 ** 20} MiB`;
  const rounds = results.quick ? 'One round.' : `Median of ${FULL.rounds} rounds, the systems measured in turn in each (each round starting with the next system).`;
  return [
    `Measured by \`npm run bench -- proxy${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}. ` +
      `Loopback; the proxy, the targets and the load client each in a process of its own. Tunnels: one CONNECT tunnel moving ${bytes} from a TCP source (down) or to a TCP sink (up), MB = 10^6 bytes. ` +
      `HTTP: a closed loop on ${CONNECTIONS} keep-alive connections for ${(results.quick ? QUICK : FULL).durationS} s after ${(results.quick ? QUICK : FULL).warmupS} s of warm-up, absolute-form GET of a 64-byte body, every body checked; p50/p99 are per request, in ms. ${rounds}`,
    '',
    table(['system', 'tunnel down MB/s', 'tunnel up MB/s', 'down vs direct', 'HTTP req/s', 'p50 ms', 'p99 ms', 'req/s vs direct'], rows),
    '',
    ...results.notes.map((n) => `- ${n}`),
  ].join('\n');
}

export default bench;
