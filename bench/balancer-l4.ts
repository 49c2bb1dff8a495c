/**
 * "L4 is faster and cheaper than L7", measured: the same backends on loopback reached directly,
 * through archlab in `mode: tcp` (L4) and `mode: http` (L7), and through HAProxy with one thread in
 * `mode tcp` and `mode http`.
 *
 * 1. Small requests: wrk, closed loop, 50 keep-alive connections GETting a 64-byte body from the
 *    node:http backend of the L7 bench (bench/balancer-l7/backend.ts): req/s, p50, p99 and the CPU
 *    seconds the balancer's process group (and the backend's) spent per 100k requests. In L4 mode
 *    each client connection is relayed over one backend connection of its own, so the backend sees
 *    the same 50 keep-alive connections as when reached directly.
 * 2. Bulk transfer: one connection moving 1 GiB (256 MiB quick) from a TCP source
 *    (bench/balancer-l4/source.ts: writes as fast as the socket drains) to a client in a process of
 *    its own (bench/balancer-l4/client.ts: reads into one buffer, counts, checks the byte pattern),
 *    and the same upstream (upload). Framed as one HTTP/1.1 request, so the L7 systems can carry it
 *    too. A transfer with a wrong byte count or pattern is void: no number is reported for it.
 *    Every system is measured once per round, in turn, so a slow spell of the machine spreads over
 *    all of them; the median of the rounds is reported.
 *
 * Every process under test runs in its own process group (bench/balancer-l7/procs.ts); CPU is read
 * from /proc for the whole group, and the CPU that processes outside the bench took meanwhile is
 * measured too: a measurement disturbed by more than MAX_OTHER_CPU of the machine is repeated in
 * full runs (within a time budget) and flagged in the report if it stays disturbed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { sizeLabel, type BulkResult } from './balancer-l4/bulk.js';
import { haproxyTcpConfig } from './balancer-l4/configs.js';
import { backendBody } from './balancer-l7/common.js';
import { haproxyConfig, type ProxySite } from './balancer-l7/configs.js';
import { BenchProcessError, Child, cpuSnapshot, findBinary, freePort, httpGet, otherCpuShare, runJson, sleep, type CpuSnapshot } from './balancer-l7/procs.js';
import { errorCount, runWrk, type WrkResult } from './balancer-l7/wrk.js';
import { ROOT, find, format, median, table, type Bench, type BenchContext, type Results } from './harness.js';

const CONNECTIONS = 50;
export const GET_SCENARIO = `GET 64B, ${CONNECTIONS} conns`;
export type Direction = 'download' | 'upload';
export function bulkScenario(direction: Direction, bytes: number): string {
  return `bulk ${direction} ${sizeLabel(bytes)}`;
}

/** The systems, in the order measured and shown. */
export const SYSTEMS = {
  direct: 'direct',
  archlabL4: 'archlab L4 (tcp)',
  archlabL7: 'archlab L7 (http)',
  haproxyTcp: 'haproxy mode tcp',
  haproxyHttp: 'haproxy mode http',
} as const;

/** Metric names of the rows. */
export const METRICS = {
  cpuPerReq: 'cpu s per 100k req',
  backendCpuPerReq: 'backend cpu s per 100k req',
  mbps: 'MB/s',
  cpuPerGiB: 'cpu s per GiB',
  other: 'other CPU',
} as const;

const MB = 1e6;
const GiB = 2 ** 30;
/** A share of requests with errors above this flags a run's numbers as unreliable. */
const MAX_ERROR_SHARE = 0.001;
/** Share of the machine's CPUs that processes outside the bench may take before a measurement is flagged (and, in full runs, repeated). */
const MAX_OTHER_CPU = 0.1;

interface Settings {
  /** wrk runs, whole seconds (wrk takes no fractions). */
  warmupS: number;
  durationS: number;
  /** Rounds of GET runs (every system once per round, in turn); rate and latency are the median, CPU is summed over all rounds. */
  getRounds: number;
  /** Bytes per timed bulk transfer, each direction. */
  bulkBytes: number;
  /** Bytes of the untimed transfer each system gets first, each direction. */
  bulkWarmupBytes: number;
  /** Rounds of bulk transfers (every system once per round); the median is reported. */
  bulkRounds: number;
  /** Longest wait for other processes to leave the CPUs alone before each measurement (0: don't wait). */
  quietWaitS: number;
  /** Timed runs per measurement at most: a run disturbed by other processes is repeated. */
  attempts: number;
  /** Total seconds the whole bench may spend waiting for quiet and repeating disturbed runs. */
  extraBudgetS: number;
}

export const QUICK: Settings = { warmupS: 1, durationS: 3, getRounds: 1, bulkBytes: 256 * 2 ** 20, bulkWarmupBytes: 32 * 2 ** 20, bulkRounds: 1, quietWaitS: 0, attempts: 1, extraBudgetS: 0 };
export const FULL: Settings = { warmupS: 2, durationS: 10, getRounds: 2, bulkBytes: GiB, bulkWarmupBytes: 128 * 2 ** 20, bulkRounds: 3, quietWaitS: 10, attempts: 2, extraBudgetS: 90 };

/** A system under test: where each scenario's load goes, and which process group pays for it. */
interface System {
  name: string;
  /** wrk's URL and the group charged (direct: the backend's, reported as the backend's only). */
  get?: { url: string; child: Child };
  /** The bulk client's port and the group charged (direct: the source). */
  bulk?: { port: number; child: Child };
}

const NODE_SCRIPT = (path: string): string[] => ['--import', 'tsx', join(ROOT, 'bench', path)];

interface GetSample {
  r: WrkResult;
  /** CPU of the system's process group and of the backend's during the timed run, ms. */
  cpuMs: number;
  backendMs: number;
  other: number;
}

interface BulkRun {
  mbps: number;
  cpuMs: number;
  bytes: number;
  other: number;
}

class Run {
  readonly children: Child[] = [];
  /** Measurements that processes outside the bench disturbed, noted once at the end. */
  readonly disturbed: string[] = [];
  /** Left of Settings.extraBudgetS, in ms. */
  private extraLeftMs: number;
  readonly dir = mkdtempSync(join(tmpdir(), 'archlab-bench-l4-'));

  constructor(
    readonly ctx: BenchContext,
    readonly s: Settings,
    readonly wrk: string,
  ) {
    this.extraLeftMs = s.extraBudgetS * 1000;
  }

  spawn(name: string, command: string, args: string[]): Child {
    const c = new Child(command, args, { name, cwd: ROOT });
    this.children.push(c);
    return c;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Process groups of everything this run started. */
  groups(): number[] {
    return this.children.map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /** A node child script printing a ready line; throws when it cannot start (the backends must). */
  async script(name: string, path: string, args: string[]): Promise<{ port: number; child: Child }> {
    const child = this.spawn(name, process.execPath, [...NODE_SCRIPT(path), ...args]);
    const line = await child.readyLine(30_000);
    if (!('port' in line)) throw new BenchProcessError(`${name} did not start: ${JSON.stringify(line)}`);
    return { port: line.port, child };
  }

  /** Like script(), but a system that fails to start is noted and left out. */
  async optional(name: string, path: string, args: string[]): Promise<{ port: number; child: Child } | undefined> {
    try {
      return await this.script(name, path, args);
    } catch (err) {
      this.ctx.note(`${name} skipped: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** HAProxy (foreground, -db) with one frontend per site; undefined (noted) when not installed or failing. */
  async haproxy(name: string, config: string, sites: ProxySite[]): Promise<Child | undefined> {
    const bin = findBinary('haproxy');
    if (!bin) {
      this.ctx.note(`haproxy not installed, ${name} skipped: apt-get install -y haproxy`);
      return undefined;
    }
    const file = join(this.dir, `${name.replace(/\W+/g, '-')}.cfg`);
    writeFileSync(file, config);
    const child = this.spawn(name, bin, ['-db', '-f', file]);
    try {
      for (const site of sites) await child.waitForPort(site.port, 15_000);
      return child;
    } catch (err) {
      this.ctx.note(`${name} skipped: ${(err as Error).message}`);
      await child.stop();
      return undefined;
    }
  }

  /** Whether a disturbed run may be repeated (and then charges its time to the budget). */
  private mayRepeat(attempt: number, runMs: number): boolean {
    if (attempt + 1 >= this.s.attempts || this.extraLeftMs < runMs) return false;
    this.extraLeftMs -= runMs;
    return true;
  }

  /** Full runs: waits (up to quietWaitS) until processes outside the bench take at most MAX_OTHER_CPU of the CPUs. */
  async waitQuiet(what: string): Promise<void> {
    const deadline = Date.now() + Math.min(this.s.quietWaitS * 1000, this.extraLeftMs);
    let waited = false;
    while (Date.now() < deadline) {
      const a = cpuSnapshot();
      await sleep(500);
      const b = cpuSnapshot();
      if (!a || !b || this.other(a, b) <= MAX_OTHER_CPU) break;
      this.extraLeftMs -= 500;
      if (!waited) this.ctx.log(`  (waiting for other processes to leave the CPUs before measuring ${what})`);
      waited = true;
    }
  }

  other(a: CpuSnapshot, b: CpuSnapshot): number {
    return otherCpuShare(a, b, this.groups(), cpus().length);
  }

  /** A benchmark of a wrong answer is void: three GETs must each come back 200 with the backend's body. */
  async verifyGet(s: System, url: string): Promise<boolean> {
    const body = backendBody('main');
    try {
      for (let i = 0; i < 3; i++) {
        const r = await httpGet(url);
        if (r.status !== 200 || r.body !== body) {
          this.ctx.note(`${s.name} answered ${r.status} ${JSON.stringify(r.body.slice(0, 80))} instead of the backend's 200 and body; ${GET_SCENARIO} not measured`);
          return false;
        }
      }
      return true;
    } catch (err) {
      this.ctx.note(`${s.name}: GET failed (${(err as Error).message}); ${GET_SCENARIO} not measured`);
      return false;
    }
  }

  /**
   * One timed wrk run (after a discarded warm-up when `warm`), repeated in full runs when
   * disturbed; the least disturbed attempt, or undefined (noted) when wrk fails.
   */
  async getOnce(s: System, backend: Child, warm: boolean): Promise<GetSample | undefined> {
    const get = s.get!;
    const o = { wrk: this.wrk, url: get.url, connections: CONNECTIONS, threads: 1 };
    let best: GetSample | undefined;
    try {
      if (warm) await runWrk({ ...o, durationS: this.s.warmupS });
      for (let attempt = 0; ; attempt++) {
        await this.waitQuiet(s.name);
        const a = cpuSnapshot();
        const r = await runWrk({ ...o, durationS: this.s.durationS });
        const b = cpuSnapshot();
        const used = (c: Child): number => (a && b && c.pid !== undefined ? (b.groups.get(c.pid) ?? 0) - (a.groups.get(c.pid) ?? 0) : Number.NaN);
        const other = a && b ? this.other(a, b) : 0;
        if (!best || other < best.other) best = { r, cpuMs: used(get.child), backendMs: used(backend), other };
        if (other <= MAX_OTHER_CPU || !this.mayRepeat(attempt, this.s.durationS * 1000)) break;
        this.ctx.log(`  (${s.name}: other processes took ${pct(other)} of the CPUs; measuring again)`);
      }
      return best;
    } catch (err) {
      this.ctx.note(`${s.name} (${GET_SCENARIO}): wrk failed: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** The rows of GET_SCENARIO from every round: medians of rate and latency, CPU summed over all of them. */
  getRows(s: System, samples: GetSample[]): void {
    const { ctx } = this;
    const sc = GET_SCENARIO;
    const requests = samples.reduce((acc, x) => acc + x.r.requests, 0);
    const per100k = (ms: number): number => (ms / 1000 / requests) * 100_000;
    const sum = (f: (x: GetSample) => number): number => samples.reduce((acc, x) => acc + f(x), 0);
    ctx.row({ system: s.name, scenario: sc, metric: 'req/s', value: median(samples.map((x) => x.r.rps)), unit: 'req/s' });
    ctx.row({ system: s.name, scenario: sc, metric: 'p50', value: median(samples.map((x) => x.r.p50Ms)), unit: 'ms' });
    ctx.row({ system: s.name, scenario: sc, metric: 'p99', value: median(samples.map((x) => x.r.p99Ms)), unit: 'ms' });
    if (requests > 0) {
      const cpuMs = sum((x) => x.cpuMs);
      const backendMs = sum((x) => x.backendMs);
      if (s.name !== SYSTEMS.direct && Number.isFinite(cpuMs)) ctx.row({ system: s.name, scenario: sc, metric: METRICS.cpuPerReq, value: per100k(cpuMs), unit: 's' });
      if (Number.isFinite(backendMs)) ctx.row({ system: s.name, scenario: sc, metric: METRICS.backendCpuPerReq, value: per100k(backendMs), unit: 's' });
    }
    const other = median(samples.map((x) => x.other));
    ctx.row({ system: s.name, scenario: sc, metric: METRICS.other, value: other, unit: 'share of machine' });
    if (other > MAX_OTHER_CPU) this.disturbed.push(`${s.name} (${sc}) ${pct(other)}`);
    const errors = sum((x) => errorCount(x.r));
    if (errors > 0) {
      ctx.row({ system: s.name, scenario: sc, metric: 'errors', value: errors, unit: 'requests' });
      const se = (k: keyof WrkResult['socketErrors']): number => sum((x) => x.r.socketErrors[k]);
      ctx.note(
        `${s.name} (${sc}): ${sum((x) => x.r.non2xx)} non-2xx/3xx, socket errors connect ${se('connect')} read ${se('read')} write ${se('write')} timeout ${se('timeout')} in ${requests} requests` +
          (errors / Math.max(1, requests) > MAX_ERROR_SHARE ? `: above ${MAX_ERROR_SHARE * 100}%, its numbers are flagged as unreliable` : ''),
      );
    }
  }

  /** One bulk transfer by the client process; throws with the client's reason when it fails its checks. */
  async transfer(port: number, direction: Direction, bytes: number): Promise<number> {
    const timeoutS = Math.ceil(20 + bytes / (10 * MB));
    const args = [...NODE_SCRIPT('balancer-l4/client.ts'), '--port', String(port), '--direction', direction, '--bytes', String(bytes), '--timeout-s', String(timeoutS)];
    const r = await runJson<BulkResult>(process.execPath, args, (timeoutS + 15) * 1000);
    if (!r.ok) throw new BenchProcessError(r.error);
    if (r.bytes !== bytes || r.direction !== direction) throw new BenchProcessError(`the client reports ${r.bytes} bytes ${r.direction}, asked for ${bytes} ${direction}`);
    return r.ms;
  }

  /** One timed transfer, repeated in full runs when disturbed; undefined (noted) when it fails. */
  async bulkOnce(s: System, direction: Direction): Promise<BulkRun | undefined> {
    const bulk = s.bulk!;
    const bytes = this.s.bulkBytes;
    let best: BulkRun | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        await this.waitQuiet(s.name);
        const a = cpuSnapshot();
        const ms = await this.transfer(bulk.port, direction, bytes);
        const b = cpuSnapshot();
        const cpuMs = a && b && bulk.child.pid !== undefined ? (b.groups.get(bulk.child.pid) ?? 0) - (a.groups.get(bulk.child.pid) ?? 0) : Number.NaN;
        const other = a && b ? this.other(a, b) : 0;
        const mbps = bytes / MB / (ms / 1000);
        this.ctx.log(`  ${s.name} ${direction}: ${format(mbps)} MB/s, ${format(cpuMs / 1000 / (bytes / GiB))} CPU s per GiB, other processes ${pct(other)}`);
        if (!best || other < best.other) best = { mbps, cpuMs, bytes, other };
        if (other <= MAX_OTHER_CPU || !this.mayRepeat(attempt, ms)) break;
        this.ctx.log(`  (${s.name} ${direction}: other processes took ${pct(other)} of the CPUs; measuring again)`);
      }
      return best;
    } catch (err) {
      this.ctx.note(`${s.name} (${bulkScenario(direction, bytes)}) void: ${(err as Error).message}`);
      return undefined;
    }
  }
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}


async function run(ctx: BenchContext): Promise<void> {
  const s = ctx.quick ? QUICK : FULL;
  const wrk = findBinary('wrk');
  if (!wrk) ctx.note(`wrk not installed, ${GET_SCENARIO} not measured: apt-get install -y wrk`);
  const r = new Run(ctx, s, wrk ?? '');
  const a = cpuSnapshot();
  await sleep(500);
  const b = cpuSnapshot();
  const busy = a && b ? r.other(a, b) : 0;
  if (busy > MAX_OTHER_CPU) {
    ctx.note(`other processes kept ${pct(busy)} of the machine's CPUs busy just before the run: every number below is lower and noisier than on an idle machine`);
  }
  // Stop everything on Ctrl-C too; the default would leave the detached groups running.
  const onSignal = (): void => {
    void r.stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await measureAll(ctx, r, s, wrk !== undefined);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await r.stopAll();
  }
}

async function measureAll(ctx: BenchContext, r: Run, s: Settings, haveWrk: boolean): Promise<void> {
  const t0 = Date.now();
  const elapsed = (): string => `[${((Date.now() - t0) / 1000).toFixed(0)}s]`;
  const [backend, source] = await Promise.all([r.script('backend', 'balancer-l7/backend.ts', ['0', '--name', 'main']), r.script('source', 'balancer-l4/source.ts', [])]);
  const getSite: ProxySite = { port: await freePort(), backends: [backend.port], balance: 'roundrobin' };
  const bulkSite: ProxySite = { port: await freePort(), backends: [source.port], balance: 'roundrobin' };
  const tcpSites = [getSite, { ...bulkSite }];
  const httpSites: ProxySite[] = [
    { ...getSite, port: await freePort() },
    { ...bulkSite, port: await freePort() },
  ];
  const archlab = (mode: 'tcp' | 'http', name: string, port: number): Promise<{ port: number; child: Child } | undefined> =>
    r.optional(name, 'balancer-l4/archlab.ts', ['--mode', mode, '--backend', `127.0.0.1:${port}`]);
  // Start everything at once (idle processes cost nothing), then measure one at a time.
  const [l4Get, l4Bulk, l7Get, l7Bulk, hpTcp, hpHttp] = await Promise.all([
    archlab('tcp', `${SYSTEMS.archlabL4} for GET`, backend.port),
    archlab('tcp', `${SYSTEMS.archlabL4} for bulk`, source.port),
    archlab('http', `${SYSTEMS.archlabL7} for GET`, backend.port),
    archlab('http', `${SYSTEMS.archlabL7} for bulk`, source.port),
    r.haproxy(SYSTEMS.haproxyTcp, haproxyTcpConfig(tcpSites), tcpSites),
    r.haproxy(SYSTEMS.haproxyHttp, haproxyConfig(httpSites), httpSites),
  ]);
  const url = (port: number): string => `http://127.0.0.1:${port}/`;
  const systems: System[] = [
    { name: SYSTEMS.direct, get: { url: url(backend.port), child: backend.child }, bulk: source },
    { name: SYSTEMS.archlabL4, ...(l4Get ? { get: { url: url(l4Get.port), child: l4Get.child } } : {}), ...(l4Bulk ? { bulk: l4Bulk } : {}) },
    { name: SYSTEMS.archlabL7, ...(l7Get ? { get: { url: url(l7Get.port), child: l7Get.child } } : {}), ...(l7Bulk ? { bulk: l7Bulk } : {}) },
    ...(hpTcp ? [{ name: SYSTEMS.haproxyTcp, get: { url: url(tcpSites[0]!.port), child: hpTcp }, bulk: { port: tcpSites[1]!.port, child: hpTcp } }] : []),
    ...(hpHttp ? [{ name: SYSTEMS.haproxyHttp, get: { url: url(httpSites[0]!.port), child: hpHttp }, bulk: { port: httpSites[1]!.port, child: hpHttp } }] : []),
  ];
  ctx.log(`${elapsed()} started ${r.children.filter((c) => !c.hasExited).length} processes`);

  if (haveWrk) {
    ctx.log(`\n${elapsed()} ${GET_SCENARIO}: wrk -t1 -c${CONNECTIONS}, ${s.warmupS}s warm-up + ${s.durationS}s measured per system; CPU is the process group's`);
    const verified: System[] = [];
    for (const sys of systems) if (sys.get && (await r.verifyGet(sys, sys.get.url))) verified.push(sys);
    const samples = new Map<System, (GetSample | undefined)[]>();
    for (let round = 0; round < s.getRounds; round++) {
      for (const sys of verified) {
        if (samples.get(sys)?.includes(undefined)) continue; // wrk failed on it
        samples.set(sys, [...(samples.get(sys) ?? []), await r.getOnce(sys, backend.child, round === 0)]);
      }
      if (s.getRounds > 1) ctx.log(`${elapsed()} GET round ${round + 1} of ${s.getRounds} done`);
    }
    for (const sys of verified) {
      const list = samples.get(sys) ?? [];
      if (list.length > 0 && !list.includes(undefined)) r.getRows(sys, list as GetSample[]);
    }
  }

  // Bulk: a checked small transfer and an untimed warm-up each way, then rounds of timed ones.
  const directions: Direction[] = ['download', 'upload'];
  ctx.log(`\n${elapsed()} bulk: ${sizeLabel(s.bulkBytes)} per transfer each way, one connection, ${s.bulkRounds} round(s) after a ${sizeLabel(s.bulkWarmupBytes)} warm-up`);
  // A direction that fails its check is left out for that system; the other one is still measured.
  const ready: { sys: System; d: Direction }[] = [];
  for (const sys of systems) {
    if (!sys.bulk) continue;
    for (const d of directions) {
      try {
        await r.transfer(sys.bulk.port, d, 2 ** 20 + 7);
        await r.transfer(sys.bulk.port, d, s.bulkWarmupBytes);
        ready.push({ sys, d });
      } catch (err) {
        ctx.note(`${sys.name}: a checked ${d} failed (${(err as Error).message}); ${bulkScenario(d, s.bulkBytes)} not measured`);
      }
    }
  }
  const runs = new Map<{ sys: System; d: Direction }, (BulkRun | undefined)[]>();
  for (let round = 0; round < s.bulkRounds; round++) {
    for (const pair of ready) {
      const list = runs.get(pair) ?? [];
      if (list.includes(undefined)) continue; // void already
      list.push(await r.bulkOnce(pair.sys, pair.d));
      runs.set(pair, list);
    }
    ctx.log(`${elapsed()} bulk round ${round + 1} of ${s.bulkRounds} done`);
  }
  for (const pair of ready) {
    const { sys, d } = pair;
    const list = runs.get(pair) ?? [];
    if (list.length === 0 || list.includes(undefined)) continue;
    const done = list as BulkRun[];
    const sc = bulkScenario(d, s.bulkBytes);
    ctx.row({ system: sys.name, scenario: sc, metric: METRICS.mbps, value: median(done.map((x) => x.mbps)), unit: 'MB/s' });
    const cpuMs = done.reduce((acc, x) => acc + x.cpuMs, 0);
    const bytes = done.reduce((acc, x) => acc + x.bytes, 0);
    if (sys.name !== SYSTEMS.direct && Number.isFinite(cpuMs)) ctx.row({ system: sys.name, scenario: sc, metric: METRICS.cpuPerGiB, value: cpuMs / 1000 / (bytes / GiB), unit: 's' });
    const other = median(done.map((x) => x.other));
    ctx.row({ system: sys.name, scenario: sc, metric: METRICS.other, value: other, unit: 'share of machine' });
    if (other > MAX_OTHER_CPU) r.disturbed.push(`${sys.name} (${sc}) ${pct(other)}`);
  }

  ctx.log(`${elapsed()} done`);
  if (r.disturbed.length) {
    ctx.note(
      `processes outside the bench took more than ${pct(MAX_OTHER_CPU)} of the CPUs while measuring ${r.disturbed.join(', ')}: ` +
        'those numbers are lower and noisier than this machine gives when idle (run again on a quiet machine)',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Targets and report

function v(results: Results, system: string, scenario: string, metric: string): number | undefined {
  return find(results, { system, scenario, metric })?.value;
}

function settingsOf(results: Results): Settings {
  return results.quick ? QUICK : FULL;
}

/** A measurement with errors, or one that processes outside the bench disturbed. */
function flagged(results: Results, system: string, scenario: string): boolean {
  const errors = v(results, system, scenario, 'errors') ?? 0;
  const rps = v(results, system, scenario, 'req/s') ?? 0;
  const st = settingsOf(results);
  return errors > Math.max(1, rps * st.durationS * st.getRounds * MAX_ERROR_SHARE) || (v(results, system, scenario, METRICS.other) ?? 0) > MAX_OTHER_CPU;
}

export function targets(results: Results): string[] {
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  const flag = (pairs: [string, string][]): string => {
    const bad = pairs.filter(([sys, sc]) => flagged(results, sys, sc)).map(([sys]) => sys);
    return bad.length ? `; ${bad.join(' and ')} flagged unreliable, see notes` : '';
  };
  const down = bulkScenario('download', settingsOf(results).bulkBytes);
  // Whether a miss is the balancer's CPU (per byte) rather than the machine: the CPU each spent per GiB.
  const cpuPerGiB = (): string => {
    const a = v(results, SYSTEMS.archlabL4, down, METRICS.cpuPerGiB);
    const b = v(results, SYSTEMS.haproxyTcp, down, METRICS.cpuPerGiB);
    return a === undefined || b === undefined ? '' : `; CPU ${format(a)} vs ${format(b)} s per GiB`;
  };
  const l4 = v(results, SYSTEMS.archlabL4, down, METRICS.mbps);
  const hp = v(results, SYSTEMS.haproxyTcp, down, METRICS.mbps);
  check(
    "archlab L4 bulk throughput >= 0.5x HAProxy's (mode tcp)",
    l4 === undefined || hp === undefined ? undefined : l4 >= 0.5 * hp,
    l4 === undefined || hp === undefined
      ? `${l4 === undefined ? SYSTEMS.archlabL4 : SYSTEMS.haproxyTcp} not measured`
      : `${down}: ${format(l4)} vs ${format(hp)} MB/s = ${(l4 / hp).toFixed(3)}x${cpuPerGiB()}${flag([[SYSTEMS.archlabL4, down], [SYSTEMS.haproxyTcp, down]])}`,
  );
  const c4 = v(results, SYSTEMS.archlabL4, GET_SCENARIO, METRICS.cpuPerReq);
  const c7 = v(results, SYSTEMS.archlabL7, GET_SCENARIO, METRICS.cpuPerReq);
  check(
    "archlab L4 CPU per request below archlab L7's",
    c4 === undefined || c7 === undefined ? undefined : c4 < c7,
    c4 === undefined || c7 === undefined
      ? `${c4 === undefined ? SYSTEMS.archlabL4 : SYSTEMS.archlabL7} not measured`
      : `${GET_SCENARIO}: ${format(c4)} vs ${format(c7)} CPU s per 100k requests = ${(c4 / c7).toFixed(3)}x${flag([[SYSTEMS.archlabL4, GET_SCENARIO], [SYSTEMS.archlabL7, GET_SCENARIO]])}`,
  );
  return out;
}

export function report(results: Results): string {
  const st = settingsOf(results);
  const down = bulkScenario('download', st.bulkBytes);
  const up = bulkScenario('upload', st.bulkBytes);
  const n = (x: number | undefined, digits = 2): string => (x === undefined ? '-' : x < 10 ? x.toFixed(digits) : format(x));
  const x = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '-' : `${(a / b).toFixed(2)}x`);
  const mark = (system: string, scenario: string): string => (flagged(results, system, scenario) ? ' (unreliable, see notes)' : '');
  const all = Object.values(SYSTEMS);

  const getSystems = all.filter((s) => v(results, s, GET_SCENARIO, 'req/s') !== undefined);
  const rps = (s: string): number | undefined => v(results, s, GET_SCENARIO, 'req/s');
  const getTable = table(
    ['system', 'req/s', 'vs direct', 'p50 ms', 'p99 ms', 'balancer CPU s per 100k req', 'backend CPU s per 100k req'],
    getSystems.map((s) => [
      s + mark(s, GET_SCENARIO),
      Math.round(rps(s) ?? 0),
      s === SYSTEMS.direct ? '-' : x(rps(s), rps(SYSTEMS.direct)),
      n(v(results, s, GET_SCENARIO, 'p50')),
      n(v(results, s, GET_SCENARIO, 'p99')),
      n(v(results, s, GET_SCENARIO, METRICS.cpuPerReq)),
      n(v(results, s, GET_SCENARIO, METRICS.backendCpuPerReq)),
    ]),
  );

  const mbps = (s: string, sc: string): number | undefined => v(results, s, sc, METRICS.mbps);
  const bulkSystems = all.filter((s) => mbps(s, down) !== undefined || mbps(s, up) !== undefined);
  const bulkMark = (s: string): string => (flagged(results, s, down) || flagged(results, s, up) ? ' (unreliable, see notes)' : '');
  const bulkTable = table(
    ['system', 'download MB/s', 'vs direct', 'vs haproxy tcp', 'CPU s per GiB', 'upload MB/s', 'vs direct', 'vs haproxy tcp', 'CPU s per GiB'],
    bulkSystems.map((s) => [
      s + bulkMark(s),
      n(mbps(s, down), 0),
      s === SYSTEMS.direct ? '-' : x(mbps(s, down), mbps(SYSTEMS.direct, down)),
      s === SYSTEMS.haproxyTcp || s === SYSTEMS.direct ? '-' : x(mbps(s, down), mbps(SYSTEMS.haproxyTcp, down)),
      n(v(results, s, down, METRICS.cpuPerGiB)),
      n(mbps(s, up), 0),
      s === SYSTEMS.direct ? '-' : x(mbps(s, up), mbps(SYSTEMS.direct, up)),
      s === SYSTEMS.haproxyTcp || s === SYSTEMS.direct ? '-' : x(mbps(s, up), mbps(SYSTEMS.haproxyTcp, up)),
      n(v(results, s, up, METRICS.cpuPerGiB)),
    ]),
  );

  // The claim itself: each implementation's L4 mode against its own L7 mode.
  const pairs: [string, string, string][] = [
    ['archlab: tcp ÷ http', SYSTEMS.archlabL4, SYSTEMS.archlabL7],
    ['haproxy: mode tcp ÷ mode http', SYSTEMS.haproxyTcp, SYSTEMS.haproxyHttp],
  ];
  const claim = table(
    ['L4 ÷ L7', 'req/s', 'p99', 'CPU per request', 'download MB/s', 'download CPU per GiB', 'upload MB/s', 'upload CPU per GiB'],
    pairs.map(([label, a, b]) => [
      label,
      x(rps(a), rps(b)),
      x(v(results, a, GET_SCENARIO, 'p99'), v(results, b, GET_SCENARIO, 'p99')),
      x(v(results, a, GET_SCENARIO, METRICS.cpuPerReq), v(results, b, GET_SCENARIO, METRICS.cpuPerReq)),
      x(mbps(a, down), mbps(b, down)),
      x(v(results, a, down, METRICS.cpuPerGiB), v(results, b, down, METRICS.cpuPerGiB)),
      x(mbps(a, up), mbps(b, up)),
      x(v(results, a, up, METRICS.cpuPerGiB), v(results, b, up, METRICS.cpuPerGiB)),
    ]),
  );

  const notes = results.notes.filter((t) => !t.startsWith('target '));
  return [
    `Measured by \`npm run bench -- balancer-l4${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}, loopback. ` +
      'archlab runs one process per listener (`mode: tcp` or `mode: http`, otherwise the same config, access log off); HAProxy 1 thread, `mode tcp` or `mode http`, default settings (no splicing). ' +
      'Load generator, backend and system under test share the same cores, and other processes (other work on this shared machine) may have run meanwhile: the CPU they took is measured for every row, and rows they disturbed by more than ' +
      `${pct(MAX_OTHER_CPU)} of the machine are marked. Ratios carry over to other machines better than absolute numbers.`,
    '',
    `**Small requests** (${GET_SCENARIO}: wrk 4.1, one thread, closed loop, keep-alive, ${st.warmupS} s warm-up then ${st.durationS} s measured` +
      `${st.getRounds > 1 ? `, ${st.getRounds} rounds (every system once per round, in turn), rate and latency the median of the rounds` : ''}; one node:http backend answering 64 bytes). ` +
      'CPU is user + system time of the balancer\u2019s process group (and of the backend\u2019s) from /proc over the measured runs, per 100k requests. ' +
      'In L4 mode every client connection gets a backend connection of its own, so the backend sees the same 50 keep-alive connections as when reached directly; the L7 balancers keep their own pool of backend connections.',
    '',
    getSystems.length ? getTable : '_not measured_',
    '',
    `**Bulk transfer** (${sizeLabel(st.bulkBytes)} over one connection each way, from a node:net source that writes as fast as the socket drains to a client process that reads and counts (upload: the reverse); ` +
      `framed as one HTTP/1.1 request so the L7 systems can carry it; every byte counted and its pattern sampled, a wrong count voids the run; median of ${st.bulkRounds} round${st.bulkRounds > 1 ? 's' : ''} after a ${sizeLabel(st.bulkWarmupBytes)} warm-up; MB = 10^6 bytes, wall time from connect to the last byte (upload: to the sink\u2019s answer); CPU is the balancer\u2019s per GiB moved)`,
    '',
    bulkSystems.length ? bulkTable : '_not measured_',
    '',
    '**L4 against L7, same implementation** (below 1x is better for p99 and CPU, above 1x for req/s and MB/s)',
    '',
    claim,
    '',
    ...pairs.map(([label, a, b]) => `- ${label.split(':')[0]}: ${reading(results, a, b)}`),
    '',
    'An L7 balancer parses every request and response, rewrites headers and keeps its own pool of backend connections; an L4 one does none of that per request and only copies bytes. ' +
      'For small requests that per-request work is most of the cost, so that is where L4 should win; in a bulk transfer it is paid once per gigabyte and both modes spend their time copying bytes, so the gap should shrink to what HTTP framing costs.',
    '',
    '**Targets**',
    '',
    ...targets(results).map((t) => `- ${t}`),
    ...(notes.length ? ['', '**Notes**', '', ...notes.map((t) => `- ${t}`)] : []),
  ].join('\n');
}

/** One sentence on what L4 (`a`) bought over L7 (`b`) in this run. */
function reading(results: Results, a: string, b: string): string {
  const down = bulkScenario('download', settingsOf(results).bulkBytes);
  const ratio = (sys: string, scenario: string, metric: string): number | undefined => {
    const p = v(results, sys, scenario, metric);
    const q = v(results, b, scenario, metric);
    return p === undefined || q === undefined ? undefined : p / q;
  };
  const r = (x: number | undefined): string => (x === undefined ? 'not measured' : `${x.toFixed(2)}x`);
  return (
    `L4 served ${r(ratio(a, GET_SCENARIO, 'req/s'))} the requests per second of L7 at ${r(ratio(a, GET_SCENARIO, METRICS.cpuPerReq))} the CPU per request; ` +
    `${down}: ${r(ratio(a, down, METRICS.mbps))} the throughput at ${r(ratio(a, down, METRICS.cpuPerGiB))} the CPU per GiB.`
  );
}

const bench: Bench = {
  name: 'balancer-l4',
  description: `L4 (tcp) against L7 (http) on loopback: archlab both modes, HAProxy both modes, direct; GET 64B at ${CONNECTIONS} connections (req/s, p50/p99, CPU per request) and 1 GiB bulk transfer each way (MB/s, CPU per GiB)`,
  docsPage: 'docs/balancer.md',
  run,
  targets,
  report,
};

export default bench;
