import { Command, InvalidArgumentError as CommanderInvalidArgument } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { DEFAULT_SCRYPT, userLine } from '../proxy/auth.js';
import { loadProxyConfig } from '../proxy/config.js';
import { startProxy } from '../proxy/server.js';
import type { CliContext } from './context.js';

/** Longest password read from stdin. */
const MAX_PASSWORD_BYTES = 4096;

/**
 * The password for hash-password: the first line of stdin. On a terminal it is prompted for with
 * echo off; never an argument, since arguments show in `ps` and shell history.
 */
async function readPassword(ctx: CliContext, stdin: NodeJS.ReadStream = process.stdin): Promise<string> {
  const tty = stdin.isTTY === true;
  if (tty) {
    ctx.err('password: ');
    stdin.setRawMode(true);
  }
  return new Promise<string>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (err?: InvalidArgumentError): void => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      if (tty) {
        stdin.setRawMode(false);
        ctx.err('\n');
      }
      stdin.pause();
      if (err) return reject(err);
      resolve(buf.toString('utf8').replace(/\r?\n[\s\S]*$/, '').replace(/\r$/, ''));
    };
    const onData = (chunk: Buffer): void => {
      if (tty && chunk.includes(3)) return done(new InvalidArgumentError('cancelled'));
      if (tty) {
        // Raw mode: the terminal no longer edits the line, so backspace is ours to apply.
        for (const byte of chunk) {
          if (byte === 0x7f || byte === 0x08) buf = buf.subarray(0, Math.max(0, buf.length - 1));
          else buf = Buffer.concat([buf, Buffer.of(byte)]);
        }
      } else buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_PASSWORD_BYTES) return done(new InvalidArgumentError(`password over ${MAX_PASSWORD_BYTES} bytes`));
      if (buf.includes(0x0a) || (tty && buf.includes(0x0d))) done();
    };
    const onEnd = (): void => done();
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.resume();
  });
}

function powerOfTwo(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1024 || n > 1_048_576 || (n & (n - 1)) !== 0) throw new CommanderInvalidArgument('expected a power of two from 1024 to 1048576');
  return n;
}

/** `archlab proxy --config proxy.yaml` and `archlab proxy hash-password <user>`. */
export function proxyCommand(ctx: CliContext, logLevel: () => string): Command {
  const cmd = new Command('proxy')
    .description('forward proxy: absolute-form HTTP and CONNECT tunnels, ACLs with an SSRF guard, Basic auth against scrypt hashes, rate limits')
    .option('-c, --config <file>', 'YAML or JSON config (see examples/proxy/)')
    .action(async (o: { config?: string }) => {
      if (o.config === undefined) throw new InvalidArgumentError('archlab proxy needs --config <file> (see examples/proxy/), or a subcommand: hash-password');
      const config = loadProxyConfig(o.config);
      const level = logLevel() !== 'info' ? logLevel() : config.log.level;
      const logger = createLogger({ level, name: 'archlab-proxy', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
      const proxy = await startProxy(config, { logger });
      for (const a of proxy.listeners) ctx.err(`archlab proxy: listening on ${a.url ?? `${a.host}:${a.port}`}\n`);
      if (proxy.admin) ctx.err(`archlab proxy: admin on ${proxy.admin.url ?? `${proxy.admin.host}:${proxy.admin.port}`}\n`);
      runUntilSignal([proxy], { logger, drainTimeoutMs: config.timeouts.drainMs + 5000 });
      // Keep the action pending until the process exits (runUntilSignal exits it).
      await new Promise<never>(() => undefined);
    });
  cmd
    .command('hash-password')
    .description('print a users-file line "user:scrypt$N$r$p$salt$hash" for auth.usersFile; the password is read from stdin (prompted for, without echo, on a terminal)')
    .argument('<user>', 'user name (no ":" or whitespace)')
    .option('--cost <N>', `scrypt N, a power of two (default ${DEFAULT_SCRYPT.N})`, powerOfTwo)
    .action(async (user: string, o: { cost?: number }) => {
      const password = await readPassword(ctx);
      if (password === '') throw new InvalidArgumentError('empty password');
      ctx.out(`${await userLine(user, password, { ...DEFAULT_SCRYPT, N: o.cost ?? DEFAULT_SCRYPT.N })}\n`);
    });
  return cmd;
}
