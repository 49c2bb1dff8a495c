/**
 * Runs wrk (Debian's 4.1, closed loop: each connection sends its next request when the previous
 * answer arrives) and parses its `--latency` report.
 */
import { spawn } from 'node:child_process';
import { BenchProcessError } from './procs.js';

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p75Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Responses with a status outside 2xx and 3xx. */
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const COUNT_UNITS: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9 };

/** A wrk duration ("812.00us", "1.23ms", "2.01s") in ms. */
export function parseWrkTime(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new BenchProcessError(`wrk: cannot read the time "${text}"`);
  return Number(m[1]) * TIME_UNITS[m[2]!]!;
}

/** wrk's text report -> numbers. Throws when a number the bench needs is missing. */
export function parseWrk(text: string): WrkResult {
  const num = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(text);
    if (!m) throw new BenchProcessError(`wrk output has no ${what}: ${text.slice(0, 400)}`);
    return m;
  };
  const pct = (p: string): number => parseWrkTime(num(new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, 'm'), `${p}% latency line (run with --latency)`)[1]!);
  const done = num(/^\s*(\d+) requests in ([\d.]+\w+),/m, 'request count');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const rpsM = num(/^Requests\/sec:\s+([\d.]+)([kKMG]?)\s*$/m, 'Requests/sec');
  return {
    requests: Number(done[1]),
    seconds: parseWrkTime(done[2]!) / 1000,
    rps: Number(rpsM[1]) * COUNT_UNITS[rpsM[2] ?? '']!,
    p50Ms: pct('50'),
    p75Ms: pct('75'),
    p90Ms: pct('90'),
    p99Ms: pct('99'),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: {
      connect: Number(sock?.[1] ?? 0),
      read: Number(sock?.[2] ?? 0),
      write: Number(sock?.[3] ?? 0),
      timeout: Number(sock?.[4] ?? 0),
    },
  };
}

export function errorCount(r: WrkResult): number {
  const s = r.socketErrors;
  return r.non2xx + s.connect + s.read + s.write + s.timeout;
}

export interface WrkOptions {
  wrk: string;
  url: string;
  connections: number;
  threads: number;
  durationS: number;
  /** Requests slower than this count as timeouts. Default 2 s (wrk's). */
  timeoutS?: number;
  /** A Lua script for wrk's -s (e.g. rotating over URLs). */
  script?: string;
  /** Run wrk under `taskset -c cpus`. */
  pin?: { taskset: string; cpus: string };
}

/** One wrk run; rejects when wrk fails or runs past its duration by more than 10 s. */
export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', `${o.timeoutS ?? 2}s`, '--latency', ...(o.script === undefined ? [] : ['-s', o.script]), o.url];
  const [cmd, cmdArgs] = o.pin ? [o.pin.taskset, ['-c', o.pin.cpus, o.wrk, ...args]] : [o.wrk, args];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    const guard = setTimeout(() => p.kill('SIGKILL'), (o.durationS + 10) * 1000);
    p.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) {
        reject(new BenchProcessError(`wrk ${args.join(' ')} ${signal ? `killed by ${signal}` : `exited with code ${code}`}: ${(err || out).trim().slice(0, 400)}`));
        return;
      }
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}
