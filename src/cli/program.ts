import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isArchlabError } from '../core/errors.js';
import { defaultContext, type CliContext } from './context.js';
import { demoCommand } from './demo.js';
import { balanceCommand } from './balance.js';
import { cacheCommand } from './cache.js';
import { cdnCommand } from './cdn.js';
import { queueCommand } from './queue.js';
import { proxyCommand } from './proxy.js';
import { ringCommand } from './ring.js';
import { upCommand } from './up.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function createProgram(ctxFor: (logLevel: () => string) => CliContext = defaultContext): { program: Command; ctx: CliContext } {
  const program = new Command('archlab');
  const ctx = ctxFor(() => (program.opts().logLevel as string | undefined) ?? 'info');
  program
    .description('the building blocks of distributed systems, made real, runnable and measurable')
    .version(pkg.version, '-V, --version')
    .addOption(
      new Option('--log-level <level>', 'log level for servers and commands').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    )
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ writeOut: ctx.out, writeErr: ctx.err })
    .exitOverride();
  program.addCommand(ringCommand(ctx));
  program.addCommand(balanceCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(proxyCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(cacheCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(queueCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(cdnCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(upCommand(ctx, () => (program.opts().logLevel as string | undefined) ?? 'info'));
  program.addCommand(demoCommand(ctx, () => program.helpInformation()));
  // Every subcommand reports errors through the same path and never calls process.exit itself.
  for (const cmd of program.commands) {
    cmd.exitOverride().configureOutput({ writeOut: ctx.out, writeErr: ctx.err });
    for (const sub of cmd.commands) sub.exitOverride().configureOutput({ writeOut: ctx.out, writeErr: ctx.err });
  }
  return { program, ctx };
}

/** Runs the CLI; returns the exit code: 0 ok, 1 a typed error, 2 a usage error. */
export async function run(argv: string[], ctxFor?: (logLevel: () => string) => CliContext): Promise<number> {
  const { program, ctx } = createProgram(ctxFor);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit with code 0 through the same path; usage errors were already printed.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isArchlabError(err)) {
      ctx.err(`archlab: ${err.code}: ${err.message}\n`);
      return err.code === 'ARCHLAB_INVALID_ARGUMENT' ? 2 : 1;
    }
    throw err;
  }
}
