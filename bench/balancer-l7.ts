/**
 * The L7 load balancer against its peers on loopback: one shared node:http backend answering 64
 * bytes, the same wrk load (closed loop, 50 connections, same duration) through each of: nothing
 * (direct), archlab (one process, and node:cluster on two workers), nginx with one worker and
 * upstream keepalive, HAProxy in http mode with one thread, the `http-proxy` npm package and
 * fastify with `@fastify/reply-from` (undici). Then the added latency at half of archlab's maximum
 * rate (open loop, fixed rate), and every picking algorithm on three backends of 1, 5 and 20 ms.
 *
 * Measured in R interleaved rounds (Settings.rounds: 3 full, 1 quick), table by table: the main
 * table's rounds 1..R, then the half-load table's rounds 1..R, then the algorithms', then the
 * fixed-rate algorithms'. Round k of a table measures every system of that table once, back to
 * back in the same order, so systems compared with each other ran in the same minute of a machine
 * whose speed swings 2x from one minute to the next. Each round's numbers are rows of scenario
 * `${scenario} #k`; after a table's last round, one row of the plain scenario holds the median
 * over the rounds (what the docs tables show). The targets (balancer-l7/report.ts) are judged on
 * the median of per-round comparisons: archlab ÷ peer req/s within each round (for the req/s
 * targets, the rounds of the paired windows: archlab, http-proxy, reply-from and nginx only, in
 * short windows back to back, many rounds, order reversed every other round), archlab's p99 −
 * direct's p99 within each round; the algorithms' on their median p99s, with the rounds each won.
 * The half-load rate is half of archlab's median maximum over the main table's rounds, so it is
 * known only once those are done: hence table by table rather than every table in each round.
 * wrk warms each system up in round 1 only; the fixed-rate generator, a new process every time,
 * warms up in every round. A median row is marked unreliable when any of its rounds was disturbed
 * (report.ts, flaggedRounds); a disturbed run is repeated as before, within the extra budget.
 *
 * Every system under test, the backends too, runs in its own process group (bench/balancer-l7/),
 * so none shares an event loop with the load generator; all are stopped at the end, even on error.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { backendBody, type FixedRateResult } from './balancer-l7/common.js';
import { HAPROXY_BALANCE, NGINX_BALANCE, haproxyConfig, nginxConfig, type ProxySite } from './balancer-l7/configs.js';
import { BenchProcessError, benchCpuShare, Child, cpuSnapshot, findBinary, freePort, hasPackage, httpGet, otherCpuShare, runJson, sleep } from './balancer-l7/procs.js';
import {
  ALGO_OPEN_SCENARIO,
  ALGO_SCENARIO,
  CONNECTIONS,
  FULL,
  HALF_SCENARIO,
  MACHINE,
  MAX_ERROR_SHARE,
  MAX_OTHER_CPU,
  PAIRED_SCENARIO,
  PAIRED_SYSTEMS,
  QUICK,
  SCENARIO,
  SYSTEMS,
  ZERO_WHEN_ABSENT,
  report,
  targets,
  type Settings,
} from './balancer-l7/report.js';
import { medianRows, roundScenario, spreadOf } from './balancer-l7/rounds.js';
import { errorCount, runWrk, type WrkResult } from './balancer-l7/wrk.js';
import { ROOT, median, type Bench, type BenchContext, type Row } from './harness.js';

const DELAYS = { fast: 1, medium: 5, slow: 20 } as const;
type Speed = keyof typeof DELAYS;
const SPEEDS = Object.keys(DELAYS) as Speed[];

const ARCHLAB_ALGORITHMS = ['round-robin', 'least-connections', 'p2c', 'peak-ewma'] as const;
/** Measured in full runs only (quick must stay under a minute). */
const ARCHLAB_ALGORITHMS_FULL = ['random'] as const;

/** The fixed-rate generator's timer fires ~1 ms late as a rule; later than this (p99) is noted. */
const MAX_GENERATOR_LATE_MS = 5;
/** Share of the machine's CPUs the bench's own idle processes may take before a measurement starts (timers, health checks: well under this). */
const MAX_BENCH_IDLE_CPU = 0.02;

/** A running system: where to send requests, and the process group to charge CPU to. */
interface Target {
  system: string;
  url: string;
  child: Child;
}

const NODE_SCRIPT = (script: string): string[] => ['--import', 'tsx', join(ROOT, 'bench', 'balancer-l7', script)];

class Run {
  readonly children: Child[] = [];
  /** Measurements that processes outside the bench disturbed, noted once at the end. */
  readonly disturbed: string[] = [];
  private readonly noted = new Set<string>();
  /** Left of Settings.extraBudgetS, in ms. */
  private extraLeftMs: number;
  readonly dir = mkdtempSync(join(tmpdir(), 'archlab-bench-l7-'));
  /** Every row written so far: the per-round rows the median rows are computed from. */
  private readonly rows: Row[] = [];

  constructor(
    readonly ctx: BenchContext,
    readonly s: Settings,
    readonly wrk: string,
  ) {
    this.extraLeftMs = s.extraBudgetS * 1000;
  }

  /** Whether a disturbed run may be repeated (and then charges its time to the budget). */
  private mayRepeat(attempt: number, runMs: number): boolean {
    if (attempt + 1 >= this.s.attempts || this.extraLeftMs < runMs) return false;
    this.extraLeftMs -= runMs;
    return true;
  }

  readonly taskset = findBinary('taskset');
  /** The core every proxy under test runs on, when pinning is possible (the last one). */
  get serverCpu(): string | undefined {
    const n = cpus().length;
    return this.taskset && n >= 2 ? String(n - 1) : undefined;
  }

  /** The cores the backends and the load generators run on, when pinning is possible. */
  get loadCpus(): string | undefined {
    const n = cpus().length;
    return this.taskset && n >= 2 ? (n === 2 ? '0' : `0-${n - 2}`) : undefined;
  }

  /** wrk's pinning, for runWrk. */
  get wrkPin(): { pin: { taskset: string; cpus: string } } | Record<string, never> {
    return this.loadCpus ? { pin: { taskset: this.taskset!, cpus: this.loadCpus } } : {};
  }

  pinningNote(): string {
    if (this.serverCpu) {
      return `each proxy under test (one process: archlab, nginx's worker, HAProxy, http-proxy, reply-from) pinned to core ${this.serverCpu} with taskset; the backends and the load generators (wrk, the fixed-rate client) to core(s) ${this.loadCpus}; archlab cluster x2 is not pinned (its two workers take both cores, sharing them with the backend and wrk)`;
    }
    return this.taskset ? 'one CPU: everything shares it' : 'taskset not found: nothing pinned (apt-get install util-linux)';
  }

  /** Spawns `command` in its own process group, under `taskset -c cpus` when given and possible. */
  spawn(name: string, command: string, args: string[], cpus?: string): Child {
    const c = cpus && this.taskset ? new Child(this.taskset, ['-c', cpus, command, ...args], { name, cwd: ROOT }) : new Child(command, args, { name, cwd: ROOT });
    this.children.push(c);
    return c;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Writes a row (to the results and to this run's record). */
  row(row: Row): void {
    this.rows.push(row);
    this.ctx.row(row);
  }

  /** After a table's last round: one row per (system, metric) of `scenario` with the median over its rounds. */
  medians(scenario: string): void {
    for (const row of medianRows(this.rows, scenario, ZERO_WHEN_ABSENT)) this.row(row);
  }

  /** A note said once, however many systems share its cause (every archlab variant, say). */
  noteOnce(text: string): void {
    if (this.noted.has(text)) return;
    this.noted.add(text);
    this.ctx.note(text);
  }

  /** A child script printing its ready line; undefined (with a note) when it cannot run here. */
  async startScript(system: string, script: string, args: string[]): Promise<Target | undefined> {
    const child = this.spawn(system, process.execPath, [...NODE_SCRIPT(script), ...args], system === SYSTEMS.cluster ? undefined : this.serverCpu);
    try {
      const line = await child.readyLine(30_000);
      if ('port' in line) return { system, url: `http://127.0.0.1:${line.port}/`, child };
      const who = system.startsWith('archlab') ? 'archlab rows' : system;
      this.noteOnce(`${who} skipped: ${'unavailable' in line ? line.unavailable : `failed to start: ${line.failed}`}`);
    } catch (err) {
      this.ctx.note(`${system} skipped: ${(err as Error).message}`);
    }
    await child.stop();
    return undefined;
  }

  async backend(name: string, delayMs: number): Promise<{ port: number; child: Child }> {
    const child = this.spawn(`backend ${name}`, process.execPath, [...NODE_SCRIPT('backend.ts'), '0', '--name', name, '--delay-ms', String(delayMs)], this.loadCpus);
    const line = await child.readyLine(30_000);
    if (!('port' in line)) throw new BenchProcessError(`backend ${name} did not start: ${JSON.stringify(line)}`);
    return { port: line.port, child };
  }

  /** nginx serving every site from one master and one worker; undefined (noted) when not installed or failing. */
  async nginx(sites: ProxySite[]): Promise<Child | undefined> {
    const bin = findBinary('nginx');
    if (!bin) {
      this.ctx.note('nginx not installed, skipped: apt-get install -y nginx');
      return undefined;
    }
    const conf = join(this.dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(this.dir, sites));
    const child = this.spawn('nginx', bin, ['-p', `${this.dir}/`, '-c', conf, '-e', join(this.dir, 'nginx-startup.log')], this.serverCpu);
    return this.waitSites('nginx', child, sites, () => readTail(join(this.dir, 'nginx-error.log')) || readTail(join(this.dir, 'nginx-startup.log')));
  }

  async haproxy(sites: ProxySite[]): Promise<Child | undefined> {
    const bin = findBinary('haproxy');
    if (!bin) {
      this.ctx.note('haproxy not installed, skipped: apt-get install -y haproxy');
      return undefined;
    }
    const cfg = join(this.dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(sites));
    // -db: stay in the foreground, no daemon, so the process group is ours to stop.
    const child = this.spawn('haproxy', bin, ['-db', '-f', cfg], this.serverCpu);
    return this.waitSites('haproxy', child, sites, () => '');
  }

  private async waitSites(name: string, child: Child, sites: ProxySite[], log: () => string): Promise<Child | undefined> {
    try {
      for (const site of sites) await child.waitForPort(site.port, 15_000);
      return child;
    } catch (err) {
      this.ctx.note(`${name} skipped: ${(err as Error).message}${log() ? ` (${log()})` : ''}`);
      await child.stop();
      return undefined;
    }
  }

  /** A benchmark of a wrong answer is void: three GETs must each come back 200 with a backend's body. */
  async verify(t: Target, bodies: string[]): Promise<boolean> {
    try {
      for (let i = 0; i < 3; i++) {
        const r = await httpGet(t.url);
        if (r.status !== 200 || !bodies.includes(r.body)) {
          this.ctx.note(`${t.system} answered ${r.status} ${JSON.stringify(r.body.slice(0, 80))} instead of the backend's 200 and body; not measured`);
          return false;
        }
      }
      return true;
    } catch (err) {
      this.ctx.note(`${t.system}: GET failed (${(err as Error).message}); not measured`);
      return false;
    }
  }

  /** Process groups of everything this run started. */
  groups(): number[] {
    return this.children.map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /**
   * Warm-up (discarded; `warmupS` 0 skips it), then the timed wrk run; rows of `scenario` (a
   * round's) for req/s, latency, CPU and errors. The CPU used meanwhile by processes outside the
   * bench is measured too; in a full run a measurement disturbed by more than MAX_OTHER_CPU of the
   * machine is repeated (twice at most) and the least disturbed one kept.
   */
  async measure(
    t: Target,
    scenario: string,
    durationS: number,
    extra: { warmupS: number; p90?: boolean; counters?: () => Promise<number[]> },
  ): Promise<{ r: WrkResult; counted?: number[] } | undefined> {
    const { ctx } = this;
    let best: { r: WrkResult; cpuMs: number; other: number; counted?: number[] } | undefined;
    try {
      if (extra.warmupS > 0) await runWrk({ wrk: this.wrk, url: t.url, connections: CONNECTIONS, threads: this.s.threads, durationS: extra.warmupS, ...this.wrkPin });
      for (let attempt = 0; ; attempt++) {
        await this.waitQuiet(t.system);
        const c0 = await extra.counters?.();
        const a = cpuSnapshot();
        const r = await runWrk({ wrk: this.wrk, url: t.url, connections: CONNECTIONS, threads: this.s.threads, durationS, ...this.wrkPin });
        const b = cpuSnapshot();
        const c1 = await extra.counters?.();
        const counted = c0 && c1 ? c1.map((x, i) => x - (c0[i] ?? 0)) : undefined;
        const cpuMs = a && b && t.child.pid !== undefined ? (b.groups.get(t.child.pid) ?? 0) - (a.groups.get(t.child.pid) ?? 0) : Number.NaN;
        const other = a && b ? otherCpuShare(a, b, this.groups(), cpus().length) : 0;
        if (!best || other < best.other) best = { r, cpuMs, other, ...(counted ? { counted } : {}) };
        if (other <= MAX_OTHER_CPU || !this.mayRepeat(attempt, durationS * 1000)) break;
        ctx.log(`  (${t.system}: other processes took ${pct(other)} of the CPUs; measuring again)`);
      }
    } catch (err) {
      ctx.note(`${t.system} (${scenario}): wrk failed: ${(err as Error).message}`);
      return undefined;
    }
    const { r, cpuMs, other, counted } = best!;
    this.row({ system: t.system, scenario, metric: 'req/s', value: r.rps, unit: 'req/s' });
    this.row({ system: t.system, scenario, metric: 'p50', value: r.p50Ms, unit: 'ms' });
    if (extra.p90) this.row({ system: t.system, scenario, metric: 'p90', value: r.p90Ms, unit: 'ms' });
    this.row({ system: t.system, scenario, metric: 'p99', value: r.p99Ms, unit: 'ms' });
    if (Number.isFinite(cpuMs) && r.requests > 0) this.row({ system: t.system, scenario, metric: 'CPU per 1k req', value: (cpuMs / r.requests) * 1000, unit: 'ms' });
    this.row({ system: t.system, scenario, metric: 'other CPU', value: other, unit: 'share of machine' });
    if (other > MAX_OTHER_CPU) this.disturbed.push(`${t.system} (${scenario}) ${pct(other)}`);
    const errors = errorCount(r);
    if (errors > 0) {
      this.row({ system: t.system, scenario, metric: 'errors', value: errors, unit: 'requests' });
      const se = r.socketErrors;
      const share = errors / Math.max(1, r.requests);
      ctx.note(
        `${t.system} (${scenario}): ${r.non2xx} non-2xx/3xx, socket errors connect ${se.connect} read ${se.read} write ${se.write} timeout ${se.timeout} ` +
          `in ${r.requests} requests${share > MAX_ERROR_SHARE ? `: above ${MAX_ERROR_SHARE * 100}%, its numbers are flagged as unreliable` : ''}`,
      );
    }
    return { r, ...(counted ? { counted } : {}) };
  }

  /**
   * Full runs: waits (up to quietWaitS) until processes outside the bench take at most
   * MAX_OTHER_CPU of the CPUs, and the bench's own processes (the systems measured before this one,
   * the backends) at most MAX_BENCH_IDLE_CPU: a system left overloaded by its run (reply-from at
   * half load queues for seconds) must not share the next one's core while it works off its
   * backlog. A measurement that starts before they are quiet is noted.
   */
  async waitQuiet(system: string): Promise<void> {
    const deadline = Date.now() + Math.min(this.s.quietWaitS * 1000, this.extraLeftMs);
    let waited = false;
    let benchBusy = 0;
    while (Date.now() < deadline) {
      const a = cpuSnapshot();
      await sleep(500);
      const b = cpuSnapshot();
      if (!a || !b) break;
      benchBusy = benchCpuShare(a, b, this.groups(), cpus().length);
      if (otherCpuShare(a, b, this.groups(), cpus().length) <= MAX_OTHER_CPU && benchBusy <= MAX_BENCH_IDLE_CPU) {
        benchBusy = 0;
        break;
      }
      this.extraLeftMs -= 500;
      if (!waited) this.ctx.log(`  (waiting for the CPUs to be quiet before measuring ${system})`);
      waited = true;
    }
    if (benchBusy > MAX_BENCH_IDLE_CPU) this.noteOnce(`${system}: measured while the bench's own processes still took ${pct(benchBusy)} of the CPUs (a system measured before it was still busy when the wait ran out)`);
  }

  /** The stalls of a spinning process on the proxies' core (hiccups.ts); undefined when it fails. */
  async hiccups(ms: number): Promise<{ durationMs: number; gaps: number; maxMs: number; p99GapMs: number; stalledShare: number } | undefined> {
    const args = [...NODE_SCRIPT('hiccups.ts'), String(ms)];
    try {
      return await (this.serverCpu ? runJson(this.taskset!, ['-c', this.serverCpu, process.execPath, ...args], ms + 20_000) : runJson(process.execPath, args, ms + 20_000));
    } catch (err) {
      this.ctx.note(`machine stalls not measured: ${(err as Error).message}`);
      return undefined;
    }
  }

  async fixedRate(
    t: Target,
    rate: number,
    o: { warmupS: number; durationS: number; countBodies?: boolean; /** The round's scenario, for the notes. */ scenario: string },
  ): Promise<(FixedRateResult & { other: number; core?: number }) | undefined> {
    const args = [
      ...NODE_SCRIPT('fixedrate.ts'),
      '--url', t.url, '--rate', String(rate), '--duration-s', String(o.durationS), '--warmup-s', String(o.warmupS),
      '--connections', '64', '--expect-bytes', '64', ...(o.countBodies ? ['--count-bodies'] : []),
    ];
    let best: (FixedRateResult & { other: number; core?: number }) | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        await this.waitQuiet(t.system);
        const a = cpuSnapshot();
        const fr = await (this.loadCpus
          ? runJson<FixedRateResult>(this.taskset!, ['-c', this.loadCpus, process.execPath, ...args], (o.warmupS + o.durationS + 20) * 1000)
          : runJson<FixedRateResult>(process.execPath, args, (o.warmupS + o.durationS + 20) * 1000));
        const b = cpuSnapshot();
        // The generator's warm-up and start-up fall inside the window; both are this process's children.
        const other = a && b ? otherCpuShare(a, b, this.groups(), cpus().length) : 0;
        // The system's own CPU over the window (generator start-up, warm-up and measured time), as a share of one core.
        const pid = t.child.pid;
        const core = a && b && pid !== undefined && b.at > a.at ? ((b.groups.get(pid) ?? 0) - (a.groups.get(pid) ?? 0)) / (b.at - a.at) : undefined;
        if (!best || other < best.other) best = { ...fr, other, ...(core === undefined ? {} : { core }) };
        if (other <= MAX_OTHER_CPU || !this.mayRepeat(attempt, (o.warmupS + o.durationS) * 1000)) break;
        this.ctx.log(`  (${t.system}: other processes took ${pct(other)} of the CPUs; measuring again)`);
      }
      if (!(best.completed > 0 && Number.isFinite(best.p99Ms))) {
        this.ctx.note(`${t.system} (${o.scenario}): none of ${best.scheduled} requests at a fixed rate came back 200 with the 64-byte body; not measured`);
        return undefined;
      }
      if (best.errors > 0) this.ctx.note(`${t.system} (${o.scenario}, fixed rate ${rate} req/s): ${best.errors} of ${best.scheduled} requests failed`);
      if (best.achievedRate < rate * 0.95) this.ctx.note(`${t.system} (${o.scenario}, fixed rate ${rate} req/s): completed only ${Math.round(best.achievedRate)} req/s`);
      if (best.p99LateMs > MAX_GENERATOR_LATE_MS) {
        this.ctx.note(`${t.system} (${o.scenario}, fixed rate ${rate} req/s): the load generator issued 1% of requests more than ${best.p99LateMs.toFixed(1)} ms late (CPU contention), so the load was burstier than asked`);
      }
      return best;
    } catch (err) {
      this.ctx.note(`${t.system} (${o.scenario}): fixed-rate load failed: ${(err as Error).message}`);
      return undefined;
    }
  }
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return '';
  }
}


/** Share of CPU time busy across all cores over `ms`, from /proc/stat (undefined off Linux). */
async function machineBusy(ms: number): Promise<number | undefined> {
  const read = (): number[] | undefined => {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
      return line.trim().split(/\s+/).slice(1).map(Number);
    } catch {
      return undefined;
    }
  };
  const a = read();
  await sleep(ms);
  const b = read();
  if (!a || !b) return undefined;
  const d = b.map((v, i) => v - (a[i] ?? 0));
  const total = d.reduce((x, y) => x + y, 0);
  const idle = (d[3] ?? 0) + (d[4] ?? 0);
  return total > 0 ? 1 - idle / total : undefined;
}

async function backendServed(port: number): Promise<number> {
  const r = await httpGet(`http://127.0.0.1:${port}/__stats`);
  return (JSON.parse(r.body) as { served: number }).served;
}

async function run(ctx: BenchContext): Promise<void> {
  const s = ctx.quick ? QUICK : FULL;
  const wrk = findBinary('wrk');
  if (!wrk) {
    ctx.note('wrk not installed, nothing measured: apt-get install -y wrk');
    return;
  }
  const busy = await machineBusy(300);
  if (busy !== undefined && busy > 0.1) {
    ctx.note(`the machine was ${Math.round(busy * 100)}% busy before the run (other processes); every number below is lower and noisier than on an idle machine`);
  }
  ctx.log(
    `\nwrk -t${s.threads} -c${CONNECTIONS}, ${s.warmupS}s warm-up (round 1) + ${s.durationS}s measured per system per round, ${s.rounds} round(s) per table; every process under test in its own process group`,
  );

  const r = new Run(ctx, s, wrk);
  ctx.note(r.pinningNote());
  // Stop everything on Ctrl-C too; the default would leave the detached groups running.
  const onSignal = (): void => {
    void r.stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await measureAll(ctx, r, s);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await r.stopAll();
  }
}

async function measureAll(ctx: BenchContext, r: Run, s: Settings): Promise<void> {
  const quick = ctx.quick;
  const t0 = Date.now();
  const elapsed = (): string => `[${((Date.now() - t0) / 1000).toFixed(0)}s]`;
  const [mainBackend, ...speedBackends] = await Promise.all([
    r.backend('main', 0),
    r.backend('fast', DELAYS.fast),
    r.backend('medium', DELAYS.medium),
    r.backend('slow', DELAYS.slow),
  ]);
  const mainPort = mainBackend.port;
  const three = speedBackends.map((b) => b.port);
  const speedPorts = Object.fromEntries(SPEEDS.map((n, i) => [n, three[i]!])) as Record<Speed, number>;
  const mainBody = [backendBody('main')];
  const threeBodies = SPEEDS.map((n) => backendBody(n));

  // Peers' own algorithms on the three backends are measured in full runs, beside archlab's.
  const nginxAlgos = quick ? [] : (Object.keys(NGINX_BALANCE) as (keyof typeof NGINX_BALANCE)[]);
  const haproxyAlgos = quick ? [] : (Object.keys(HAPROXY_BALANCE) as (keyof typeof HAPROXY_BALANCE)[]);
  const nginxSites: ProxySite[] = [{ port: await freePort(), backends: [mainPort], balance: '' }];
  for (const a of nginxAlgos) nginxSites.push({ port: await freePort(), backends: three, balance: NGINX_BALANCE[a] });
  const haproxySites: ProxySite[] = [{ port: await freePort(), backends: [mainPort], balance: 'roundrobin' }];
  for (const a of haproxyAlgos) haproxySites.push({ port: await freePort(), backends: three, balance: HAPROXY_BALANCE[a] });

  const algorithms = [...ARCHLAB_ALGORITHMS, ...(quick ? [] : ARCHLAB_ALGORITHMS_FULL)];
  const peerScript = (system: string, pkgs: string[], script: string): Promise<Target | undefined> => {
    const missing = pkgs.filter((p) => !hasPackage(p));
    if (missing.length) {
      ctx.note(`peer ${missing.join(', ')} not installed, ${system} skipped: npm install (it is a devDependency) or npm install --no-save ${missing.join(' ')}`);
      return Promise.resolve(undefined);
    }
    return r.startScript(system, script, [String(mainPort)]);
  };

  // Start everything at once (idle processes cost nothing), then measure one at a time.
  const [archlab, cluster, nginx, haproxy, httpProxy, replyFrom, ...algoTargets] = await Promise.all([
    r.startScript(SYSTEMS.archlab, 'archlab.ts', ['--backends', `127.0.0.1:${mainPort}`]),
    r.startScript(SYSTEMS.cluster, 'archlab.ts', ['--backends', `127.0.0.1:${mainPort}`, '--workers', '2']),
    r.nginx(nginxSites),
    r.haproxy(haproxySites),
    peerScript(SYSTEMS.httpProxy, ['http-proxy'], 'http-proxy.ts'),
    peerScript(SYSTEMS.replyFrom, ['fastify', '@fastify/reply-from'], 'reply-from.ts'),
    ...algorithms.map((a) => r.startScript(`archlab ${a}`, 'archlab.ts', ['--backends', three.map((p) => `127.0.0.1:${p}`).join(','), '--algorithm', a])),
  ]);
  const at = (child: Child | undefined, system: string, port: number): Target | undefined => (child ? { system, url: `http://127.0.0.1:${port}/`, child } : undefined);
  ctx.log(`${elapsed()} started ${r.children.filter((c) => !c.hasExited).length} processes`);

  const main: (Target | undefined)[] = [
    { system: SYSTEMS.direct, url: `http://127.0.0.1:${mainPort}/`, child: mainBackend.child },
    archlab,
    cluster,
    at(nginx, SYSTEMS.nginx, nginxSites[0]!.port),
    at(haproxy, SYSTEMS.haproxy, haproxySites[0]!.port),
    httpProxy,
    replyFrom,
  ];

  const R = s.rounds;
  const roundLog = (k: number, what: string): void => ctx.log(`\n${elapsed()} ${what}, round ${k} of ${R}`);

  // Main table, round by round: every system once per round, in the same order, so that the
  // systems compared with each other ran in the same minute. Warm-up in round 1 only: a system
  // is warm by round 2, and the rounds are what give the time to measure.
  ctx.log(`\n${elapsed()} ${SCENARIO}: closed loop, req/s and latency; CPU is the process group's (for direct: the backend's); ${R} round(s)`);
  const mainVerified: Target[] = [];
  for (const t of main) if (t && (await r.verify(t, mainBody))) mainVerified.push(t);
  const maxRps = new Map<string, Map<number, number>>();
  for (let k = 1; k <= R; k++) {
    if (R > 1) roundLog(k, SCENARIO);
    for (const t of mainVerified) {
      const res = await r.measure(t, roundScenario(SCENARIO, k), s.durationS, { warmupS: k === 1 ? s.warmupS : 0 });
      if (!res) continue;
      if (!maxRps.has(t.system)) maxRps.set(t.system, new Map());
      maxRps.get(t.system)!.set(k, res.r.rps);
    }
  }
  r.medians(SCENARIO);

  // Paired windows: archlab and the peers of its req/s targets in short windows back to back,
  // many rounds, the order reversed every other round (ABCD DCBA) so neither side always runs
  // first. Each ratio then compares windows seconds apart; the targets are judged on these.
  const pairedTargets = PAIRED_SYSTEMS.map((name) => mainVerified.find((t) => t.system === name)).filter((t): t is Target => t !== undefined);
  if (pairedTargets.length > 1 && pairedTargets[0]!.system === SYSTEMS.archlab) {
    const P = s.pairedRounds;
    ctx.log(`\n${elapsed()} ${PAIRED_SCENARIO}: ${pairedTargets.map((t) => t.system).join(', ')}, ${s.pairedDurationS} s each, ${P} rounds, order reversed every other round`);
    for (let k = 1; k <= P; k++) {
      const order = k % 2 === 1 ? pairedTargets : [...pairedTargets].reverse();
      for (const t of order) await r.measure(t, roundScenario(PAIRED_SCENARIO, k), s.pairedDurationS, { warmupS: 0 });
    }
    r.medians(PAIRED_SCENARIO);
  } else ctx.note(`${PAIRED_SCENARIO} not measured: needs archlab and at least one of its peers`);
  /** A system's median req/s over the rounds of the main table. */
  const medianMax = (system: string): number | undefined => spreadOf(maxRps.get(system) ?? new Map())?.median;

  // Added latency at half load: open loop at half of archlab's median maximum over the main
  // table's rounds (one round's could be a fast or a slow minute), direct and through each proxy
  // that sustained well over that rate, round by round.
  const refName = medianMax(SYSTEMS.archlab) !== undefined ? SYSTEMS.archlab : medianMax(SYSTEMS.nginx) !== undefined ? SYSTEMS.nginx : undefined;
  if (refName === undefined || medianMax(SYSTEMS.direct) === undefined) {
    ctx.note('half-load latency not measured: needs direct and archlab (or nginx) measured first');
  } else {
    const rate = Math.max(100, Math.round((medianMax(refName)! * 0.5) / 100) * 100);
    if (refName !== SYSTEMS.archlab) ctx.note(`archlab not measured: half-load latency run at half of ${refName}'s maximum instead, for reference`);
    ctx.log(`\n${elapsed()} ${HALF_SCENARIO}: open loop at ${rate} req/s (half of ${refName}'s median maximum), ${s.fixedDurationS}s after ${s.fixedWarmupS}s warm-up; ${R} round(s)`);
    const halfTargets = mainVerified.filter(
      (t) => t.system === SYSTEMS.direct || t.system === refName || (!quick && (medianMax(t.system) ?? 0) >= rate * 1.5),
    );
    const stalls: { maxMs: number[]; gaps: number[]; share: number[] } = { maxMs: [], gaps: [], share: [] };
    for (let k = 1; k <= R; k++) {
      if (R > 1) roundLog(k, HALF_SCENARIO);
      const sc = roundScenario(HALF_SCENARIO, k);
      // What the machine itself allows: stalls a spinning process sees on the proxies' core (a
      // VM's hypervisor taking the vCPU shows here), measured just before each round's runs.
      const hic = await r.hiccups(s.hiccupsMs);
      if (hic) {
        r.row({ system: MACHINE, scenario: sc, metric: 'stall max', value: hic.maxMs, unit: 'ms' });
        r.row({ system: MACHINE, scenario: sc, metric: 'stalls over 1 ms', value: (hic.gaps * 1000) / hic.durationMs, unit: 'per second' });
        stalls.maxMs.push(hic.maxMs);
        stalls.gaps.push(hic.gaps);
        stalls.share.push(hic.stalledShare);
      }
      let directP99: number | undefined;
      for (const t of halfTargets) {
        const fr = await r.fixedRate(t, rate, { warmupS: s.fixedWarmupS, durationS: s.fixedDurationS, scenario: sc });
        if (!fr) continue;
        r.row({ system: t.system, scenario: sc, metric: 'rate', value: rate, unit: 'req/s' });
        r.row({ system: t.system, scenario: sc, metric: 'p50', value: fr.p50Ms, unit: 'ms' });
        r.row({ system: t.system, scenario: sc, metric: 'p99', value: fr.p99Ms, unit: 'ms' });
        // Against direct's p99 of this round (direct runs first in every round).
        if (t.system === SYSTEMS.direct) directP99 = fr.p99Ms;
        else if (directP99 !== undefined) r.row({ system: t.system, scenario: sc, metric: 'added p99', value: fr.p99Ms - directP99, unit: 'ms' });
        if (fr.core !== undefined && t.system !== SYSTEMS.direct) r.row({ system: t.system, scenario: sc, metric: 'core use', value: fr.core, unit: 'share of one core' });
        r.row({ system: t.system, scenario: sc, metric: 'other CPU', value: fr.other, unit: 'share of machine' });
        if (fr.other > MAX_OTHER_CPU) r.disturbed.push(`${t.system} (${sc}) ${pct(fr.other)}`);
      }
    }
    r.medians(HALF_SCENARIO);
    if (stalls.maxMs.length) {
      // One round: its numbers; several: each round's, then their median.
      const each = (xs: number[], f: (x: number) => string): string => (xs.length > 1 ? `${xs.map(f).join(', ')} (median ${f(median(xs))})` : f(xs[0]!));
      const n = stalls.maxMs.length;
      ctx.note(
        `the machine itself: a process spinning on ${r.serverCpu ? `core ${r.serverCpu}` : 'a core'} for ${s.hiccupsMs / 1000} s just before ${n > 1 ? `each of ${n} rounds of ` : ''}the half-load runs ` +
          `was stopped for over 1 ms ${each(stalls.gaps, String)} times (longest ${each(stalls.maxMs, (x) => `${x.toFixed(1)} ms`)}; ${each(stalls.share, (x) => `${(x * 100).toFixed(1)}%`)} of the time): ` +
          'no p99 on that core can be much below such stalls',
      );
    }
  }

  // Algorithms: three backends whose latency differs; which share each took, and the tail.
  ctx.log(`\n${elapsed()} ${ALGO_SCENARIO}: ${CONNECTIONS} connections, closed loop, ${s.warmupS}s warm-up (round 1) + ${s.algoDurationS}s measured; ${R} round(s)`);
  const algoList: (Target | undefined)[] = [
    ...algoTargets,
    ...nginxAlgos.map((a, i) => at(nginx, `nginx ${a}`, nginxSites[i + 1]!.port)),
    ...haproxyAlgos.map((a, i) => at(haproxy, `haproxy ${a}`, haproxySites[i + 1]!.port)),
  ];
  const verified: Target[] = [];
  for (const t of algoList) if (t && (await r.verify(t, threeBodies))) verified.push(t);
  const counters = (): Promise<number[]> => Promise.all(SPEEDS.map((n) => backendServed(speedPorts[n])));
  for (let k = 1; k <= R; k++) {
    if (R > 1) roundLog(k, ALGO_SCENARIO);
    const sc = roundScenario(ALGO_SCENARIO, k);
    for (const t of verified) {
      const served = (await r.measure(t, sc, s.algoDurationS, { warmupS: k === 1 ? s.warmupS : 0, p90: true, counters }))?.counted;
      if (!served) continue;
      // Requests each backend served during the measured run.
      const total = served.reduce((a, b) => a + b, 0);
      SPEEDS.forEach((n, i) => r.row({ system: t.system, scenario: sc, metric: `share ${n}`, value: total ? served[i]! / total : 0, unit: 'fraction' }));
    }
  }
  r.medians(ALGO_SCENARIO);

  // The same at a fixed rate far under every balancer's capacity: latency is then the backends'
  // and the picking, not CPU queueing in the balancer, and p99 shows whether the slow backend
  // still gets more than 1% of requests.
  if (s.algoOpenRate > 0) {
    ctx.log(`\n${elapsed()} ${ALGO_OPEN_SCENARIO}: open loop at ${s.algoOpenRate} req/s, ${s.algoOpenWarmupS}s warm-up + ${s.algoOpenDurationS}s measured; ${R} round(s)`);
    for (let k = 1; k <= R; k++) {
      if (R > 1) roundLog(k, ALGO_OPEN_SCENARIO);
      const sc = roundScenario(ALGO_OPEN_SCENARIO, k);
      for (const t of verified) {
        const fr = await r.fixedRate(t, s.algoOpenRate, { warmupS: s.algoOpenWarmupS, durationS: s.algoOpenDurationS, countBodies: true, scenario: sc });
        if (!fr) continue;
        r.row({ system: t.system, scenario: sc, metric: 'rate', value: s.algoOpenRate, unit: 'req/s' });
        r.row({ system: t.system, scenario: sc, metric: 'p50', value: fr.p50Ms, unit: 'ms' });
        r.row({ system: t.system, scenario: sc, metric: 'p90', value: fr.p90Ms, unit: 'ms' });
        r.row({ system: t.system, scenario: sc, metric: 'p99', value: fr.p99Ms, unit: 'ms' });
        const counted = SPEEDS.map((n) => fr.bodies?.[backendBody(n)] ?? 0);
        const total = counted.reduce((a, b) => a + b, 0);
        SPEEDS.forEach((n, i) => r.row({ system: t.system, scenario: sc, metric: `share ${n}`, value: total ? counted[i]! / total : 0, unit: 'fraction' }));
        r.row({ system: t.system, scenario: sc, metric: 'other CPU', value: fr.other, unit: 'share of machine' });
        if (fr.other > MAX_OTHER_CPU) r.disturbed.push(`${t.system} (${sc}) ${pct(fr.other)}`);
      }
    }
    r.medians(ALGO_OPEN_SCENARIO);
  }

  ctx.log(`${elapsed()} done`);
  if (r.disturbed.length) {
    ctx.note(
      `processes outside the bench took more than ${pct(MAX_OTHER_CPU)} of the CPUs while measuring ${r.disturbed.join(', ')}: ` +
        'those rounds are lower and noisier than this machine gives when idle (run again on a quiet machine)',
    );
  }
}

/** The labels and the report live in balancer-l7/report.ts; re-exported for readers of this module. */
export { ALGO_OPEN_SCENARIO, ALGO_SCENARIO, HALF_SCENARIO, SCENARIO, SYSTEMS, report, targets } from './balancer-l7/report.js';

const bench: Bench = {
  name: 'balancer-l7',
  description: `L7 balancer req/s and p50/p99 on loopback, ${CONNECTIONS} connections: direct, archlab (1 process, cluster x2), nginx, HAProxy, http-proxy, @fastify/reply-from; added p99 at half load; algorithms on backends of 1/5/20 ms`,
  docsPage: 'docs/balancer.md',
  run,
  targets,
  report,
};

export default bench;
