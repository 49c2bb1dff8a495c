/** Shared by the CLI tests: run the program in process with a context that captures its output. */
import assert from 'node:assert/strict';
import type { CliContext } from './context.js';
import { run } from './program.js';

/** Runs `archlab <argv>` in this process; `noLog` says why a logger call would be a test failure. */
export async function runCli(argv: string[], noLog: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const ctx = (): CliContext => ({
    out: (t) => (out += t),
    err: (t) => (err += t),
    logger: () => assert.fail(noLog),
    interactive: false,
  });
  const code = await run(argv, ctx);
  return { code, out, err };
}
