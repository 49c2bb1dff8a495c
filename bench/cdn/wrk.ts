/**
 * wrk over a set of paths: Debian's wrk 4.1 takes one URL, so a Lua script rotates the requests
 * through every path (each request formatted once, in `init`, so the script costs wrk almost
 * nothing per request). The report is parsed by bench/balancer-l7/wrk.ts's parseWrk.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BenchProcessError } from '../balancer-l7/procs.js';
import { runWrk, type WrkResult } from '../balancer-l7/wrk.js';

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

/** One wrk run over the rotation script; rejects when wrk fails or runs past its duration by more than 10 s. */
export function runWrkPaths(o: WrkPathsOptions): Promise<WrkResult> {
  return runWrk({ wrk: o.wrk, url: o.base, connections: o.connections, threads: o.threads, durationS: o.durationS, script: o.scriptFile, ...(o.pin ? { pin: o.pin } : {}) });
}
