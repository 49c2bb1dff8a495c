/**
 * wrk over a set of paths: Debian's wrk 4.1 takes one URL, so a Lua script rotates the requests
 * through every path (each request formatted once, in `init`, so the script costs wrk almost
 * nothing per request). The report is parsed by bench/balancer-l7/wrk.ts's parseWrk.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchProcessError } from '../balancer-l7/procs.js';
import { parseWrk, type WrkResult } from '../balancer-l7/wrk.js';

/** The Lua script: each wrk thread walks the list of paths in order, round and round. */
export function rotateScript(paths: readonly string[]): string {
  for (const p of paths) if (!/^\/[\w./-]*$/.test(p)) throw new BenchProcessError(`wrk script: path ${JSON.stringify(p)} needs quoting`);
  return `-- Written by bench/cdn.ts for one run; deleted afterwards.
local paths = { ${paths.map((p) => `"${p}"`).join(', ')} }
local reqs = {}
local n = #paths
local i = 0
function init(args)
  for k = 1, n do reqs[k] = wrk.format("GET", paths[k]) end
end
function request()
  i = i % n + 1
  return reqs[i]
end
`;
}

export interface WrkPathsOptions {
  wrk: string;
  /** taskset binary and CPU list to pin wrk to; unset: not pinned. */
  pin?: { taskset: string; cpus: string };
  /** Base URL, e.g. http://127.0.0.1:8080 (no path). */
  base: string;
  /** Lua script file (from rotateScript) to rotate the paths. */
  scriptFile: string;
  connections: number;
  threads: number;
  durationS: number;
}

/** Writes the rotation script for `paths` into `dir`; returns its file. */
export function writeRotateScript(dir: string, name: string, paths: readonly string[]): string {
  const file = join(dir, `${name}.lua`);
  writeFileSync(file, rotateScript(paths));
  return file;
}

/** One wrk run; rejects when wrk fails or runs past its duration by more than 10 s. */
export function runWrkPaths(o: WrkPathsOptions): Promise<WrkResult> {
  const wrkArgs = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', '2s', '--latency', '-s', o.scriptFile, o.base];
  const [cmd, args] = o.pin ? [o.pin.taskset, ['-c', o.pin.cpus, o.wrk, ...wrkArgs]] : [o.wrk, wrkArgs];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
        reject(new BenchProcessError(`wrk ${wrkArgs.join(' ')} ${signal ? `killed by ${signal}` : `exited with code ${code}`}: ${(err || out).trim().slice(0, 400)}`));
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
