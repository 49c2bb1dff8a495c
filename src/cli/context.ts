import type { Logger } from '../core/log.js';
import { createLogger } from '../core/log.js';

/** What every command gets: where to write and a logger at the global --log-level. */
export interface CliContext {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Logs go to stderr so stdout carries only a command's data. */
  logger: () => Logger;
  /** Whether stderr is a terminal (progress bars draw only there). */
  interactive: boolean;
}

export function defaultContext(logLevel: () => string): CliContext {
  let logger: Logger | undefined;
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    logger: () => (logger ??= createLogger({ level: logLevel(), name: 'archlab', destination: process.stderr, pretty: process.stderr.isTTY === true })),
    interactive: process.stderr.isTTY === true,
  };
}
