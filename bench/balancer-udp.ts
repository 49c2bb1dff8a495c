/**
 * The UDP listener (`mode: udp`) against nginx's `stream` module over UDP, on loopback: one UDP
 * echo backend (bench/balancer-udp/echo.ts) reached directly, through archlab, and through nginx
 * with one worker. The load (bench/balancer-udp/load.ts) is a closed loop of FLOWS client sockets,
 * each its own flow with one 64-byte datagram in flight; an answer sends the next.
 *
 * Each proxy runs pinned to the last core, the backend and the generator to the others, as in the
 * L7 bench. Measured in rounds (3 full, 1 quick): each round measures every system once, back to
 * back, and the comparisons (÷ direct, ÷ nginx) are made within a round and summarised by the
 * median over the rounds (bench/balancer-l7/rounds.ts). Per run: datagrams answered per second,
 * p50 and p99 round trip, datagrams lost (unanswered for 200 ms), and the CPU of the system's
 * process group per 1,000 datagrams (for direct, the backend's). Lost or wrong datagrams are
 * counted per run and shown in the table's last column.
 */
import * as dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { nginxMain } from './balancer-l7/configs.js';
import { BenchProcessError, Child, findBinary, freePort, runJson, sleep } from './balancer-l7/procs.js';
import { medianRows, roundRatios, roundScenario, roundsOf, spreadOver } from './balancer-l7/rounds.js';
import { ROOT, find, format, table, type Bench, type BenchContext, type Results, type Row } from './harness.js';

export const FLOWS = 32;
export const SIZE = 64;
export const SCENARIO = `UDP ${SIZE} B, ${FLOWS} flows`;
export const SYSTEMS = { direct: 'direct', archlab: 'archlab (udp)', nginx: 'nginx stream (1 worker)' } as const;
/** Where Debian's libnginx-mod-stream puts the module. */
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

interface Settings {
  rounds: number;
  warmupS: number;
  durationS: number;
}
export const QUICK: Settings = { rounds: 1, warmupS: 1, durationS: 2 };
export const FULL: Settings = { rounds: 3, warmupS: 1, durationS: 6 };

interface LoadResult {
  datagrams: number;
  seconds: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  lost: number;
  wrong: number;
  total: number;
}

/** nginx with one worker and one UDP stream server in front of the backend; sessions last while datagrams flow. */
export function nginxUdpConfig(dir: string, listenPort: number, backendPort: number): string {
  return `${nginxMain(dir, 'bench/balancer-udp.ts', '', `load_module ${NGINX_STREAM_MODULE};\n`)}
stream {
  upstream echo {
    server 127.0.0.1:${backendPort};
  }
  server {
    listen 127.0.0.1:${listenPort} udp;
    proxy_pass echo;
    proxy_timeout 30s;
  }
}
`;
}

/** True once a datagram sent to 127.0.0.1:`port` comes back unchanged, within `timeoutMs`. */
async function echoes(port: number, timeoutMs: number): Promise<boolean> {
  const sock = dgram.createSocket('udp4');
  const probe = Buffer.from(`probe ${process.pid} ${Date.now()}`);
  try {
    const got = new Promise<boolean>((resolve) => sock.on('message', (m) => m.equals(probe) && resolve(true)));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      sock.send(probe, port, '127.0.0.1');
      if (await Promise.race([got, sleep(100).then(() => false)])) return true;
    }
    return false;
  } finally {
    sock.close();
  }
}

function runLoad(port: number, s: Settings, pin: string[]): Promise<LoadResult> {
  const [cmd, ...args] = [...pin, process.execPath, '--import', 'tsx', join(ROOT, 'bench/balancer-udp/load.ts'), '--port', String(port), '--flows', String(FLOWS), '--size', String(SIZE), '--duration-s', String(s.durationS), '--warmup-s', String(s.warmupS)];
  return runJson<LoadResult>(cmd!, args, (s.warmupS + s.durationS + 30) * 1000);
}

interface Target {
  system: string;
  port: number;
  /** The process group charged for the system's CPU (direct: the backend). */
  child: Child;
}

async function run(ctx: BenchContext): Promise<void> {
  const s = ctx.quick ? QUICK : FULL;
  const taskset = findBinary('taskset');
  const n = cpus().length;
  const serverPin = taskset && n >= 2 ? [taskset, '-c', String(n - 1)] : [];
  const loadPin = taskset && n >= 2 ? [taskset, '-c', n === 2 ? '0' : `0-${n - 2}`] : [];
  ctx.note(serverPin.length ? `each proxy pinned to core ${n - 1}; the backend and the generator to the other core(s)` : 'nothing pinned (one core, or no taskset)');
  const children: Child[] = [];
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'archlab-bench-udp-'));
  const spawn = (name: string, pin: string[], command: string, args: string[]): Child => {
    const [cmd, ...rest] = [...pin, command, ...args];
    const c = new Child(cmd!, rest, { name, cwd: ROOT });
    children.push(c);
    return c;
  };
  try {
    const echo = spawn('echo backend', loadPin, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/balancer-udp/echo.ts')]);
    const echoLine = await echo.readyLine(30_000);
    if (!('port' in echoLine)) throw new BenchProcessError(`echo backend did not start: ${JSON.stringify(echoLine)}`);
    const targets: Target[] = [{ system: SYSTEMS.direct, port: echoLine.port, child: echo }];

    const archlab = spawn(SYSTEMS.archlab, serverPin, process.execPath, ['--import', 'tsx', join(ROOT, 'bench/balancer-l4/archlab.ts'), '--mode', 'udp', '--backend', `127.0.0.1:${echoLine.port}`]);
    const line = await archlab.readyLine(30_000).catch((e: Error) => ({ failed: e.message }));
    if ('port' in line) targets.push({ system: SYSTEMS.archlab, port: line.port, child: archlab });
    else ctx.note(`archlab skipped: ${JSON.stringify(line)}`);

    const nginx = findBinary('nginx');
    if (!nginx) ctx.note('nginx not installed, skipped: apt-get install -y nginx libnginx-mod-stream');
    else if (!existsSync(NGINX_STREAM_MODULE)) ctx.note(`nginx's stream module is not installed (${NGINX_STREAM_MODULE}), nginx skipped: apt-get install -y libnginx-mod-stream`);
    else {
      const port = await freePort();
      const file = join(dir, 'nginx.conf');
      writeFileSync(file, nginxUdpConfig(dir, port, echoLine.port));
      targets.push({ system: SYSTEMS.nginx, port, child: spawn(SYSTEMS.nginx, serverPin, nginx, ['-c', file, '-p', dir]) });
    }

    const ready: Target[] = [];
    for (const t of targets) {
      if (await echoes(t.port, 15_000)) ready.push(t);
      else ctx.note(`${t.system} skipped: no datagram came back through it within 15 s${t.child.hasExited ? ` (${t.child.describeExit()})` : ''}`);
    }
    for (let k = 1; k <= s.rounds; k++) {
      ctx.log(`\n${SCENARIO}, round ${k} of ${s.rounds}`);
      for (const t of ready) {
        const cpu0 = t.child.cpuMs();
        const r = await runLoad(t.port, s, loadPin);
        const cpuMs = t.child.cpuMs() - cpu0;
        const scenario = roundScenario(SCENARIO, k);
        const row = (metric: string, value: number, unit: string): void => {
          const entry: Row = { system: t.system, scenario, metric, value, unit };
          rows.push(entry);
          ctx.row(entry);
        };
        row('datagrams/s', r.rate, 'datagrams/s');
        row('p50', r.p50Ms, 'ms');
        row('p99', r.p99Ms, 'ms');
        // The CPU is the whole run's, warm-up included: per datagram answered in the whole run.
        if (r.total > 0) {
          row('CPU per 1k', (cpuMs / r.total) * 1000, 'ms');
          // Its CPU per datagram at the measured rate: the share of its core it used while loaded.
          row('core busy', ((cpuMs / r.total) * r.rate) / 1000, 'share of a core');
        }
        if (r.lost + r.wrong > 0) row('lost', r.lost + r.wrong, 'datagrams');
      }
    }
    for (const row of medianRows(rows, SCENARIO, ['lost'])) ctx.row(row);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function report(results: Results): string {
  const rows = results.rows;
  const v = (system: string, metric: string): number | undefined => find(results, { system, scenario: SCENARIO, metric })?.value;
  const systems = Object.values(SYSTEMS).filter((sys) => v(sys, 'datagrams/s') !== undefined);
  const ratio = (a: string, b: string): string => {
    const sp = roundRatios(rows, SCENARIO, 'datagrams/s', a, b);
    return sp && a !== b ? `${sp.median.toFixed(2)}x` : '-';
  };
  const ms = (x: number | undefined): string => (x === undefined ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1));
  const s = results.quick ? QUICK : FULL;
  const n = Math.max(1, roundsOf(rows, SCENARIO).length);
  const perRound = systems
    .filter((sys) => sys !== SYSTEMS.direct)
    .flatMap((sys) => {
      const sp = spreadOver(rows, sys, SCENARIO, 'datagrams/s');
      return sp ? [`${sys} ${sp.values.map((x) => format(x)).join(', ')}`] : [];
    });
  return [
    `Measured by \`npm run bench -- balancer-udp${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}, loopback. ` +
      `One UDP echo backend; ${FLOWS} client sockets (flows), each with one ${SIZE}-byte datagram in flight, ${s.warmupS} s warm-up then ${s.durationS} s measured per system per round, ${n} round${n === 1 ? '' : 's'}; medians over the rounds, ratios within a round. ` +
      'The backend and the generator share one core: a proxy whose own core is not full ("its core busy", its CPU per datagram at the measured rate) runs at what the load side allows, and then CPU per datagram, not datagrams/s, is what tells the proxies apart.',
    '',
    table(
      ['system', 'datagrams/s', 'vs direct', 'vs nginx', 'p50 ms', 'p99 ms', 'CPU ms per 1k datagrams', 'its core busy', 'lost'],
      systems.map((sys) => [
        sys,
        Math.round(v(sys, 'datagrams/s') ?? 0),
        sys === SYSTEMS.direct ? '-' : ratio(sys, SYSTEMS.direct),
        sys === SYSTEMS.nginx || sys === SYSTEMS.direct ? '-' : ratio(sys, SYSTEMS.nginx),
        ms(v(sys, 'p50')),
        ms(v(sys, 'p99')),
        v(sys, 'CPU per 1k') === undefined ? '-' : ms(v(sys, 'CPU per 1k')) + (sys === SYSTEMS.direct ? ' (backend)' : ''),
        v(sys, 'core busy') === undefined ? '-' : `${Math.round(v(sys, 'core busy')! * 100)}%`,
        String(v(sys, 'lost') ?? 0),
      ]),
    ),
    '',
    ...(perRound.length ? [`Datagrams/s per round: ${perRound.join('; ')}.`, ''] : []),
    ...(results.notes.length ? ['**Notes**', '', ...results.notes.map((x) => `- ${x}`)] : []),
  ].join('\n');
}

const bench: Bench = {
  name: 'balancer-udp',
  description: `UDP through archlab and nginx stream (one worker) to an echo backend, ${FLOWS} flows, closed loop`,
  run,
  report,
  docsPage: 'docs/balancer.md',
};
export default bench;
