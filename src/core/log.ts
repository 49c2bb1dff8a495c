import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import pretty from 'pino-pretty';
import { InvalidArgumentError } from './errors.js';

export type { Logger } from 'pino';

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export interface LoggerOptions {
  /** fatal | error | warn | info | debug | trace | silent. Default "info". */
  level?: string;
  /** Written as `name` on every line, e.g. the block or server name. */
  name?: string;
  /**
   * Human-readable lines (pino-pretty, in-process and synchronous, not a worker transport) instead of
   * JSON lines. Default: true only when writing to stdout and stdout is a terminal.
   */
  pretty?: boolean;
  /** Where lines go. Default stdout (synchronous writes, so nothing is lost on exit). */
  destination?: NodeJS.WritableStream;
}

/**
 * A pino logger writing one JSON object per line (`level`, `time`, `msg`, `name`, ...), the format
 * every archlab server logs in.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  if (!LEVELS.has(level)) {
    throw new InvalidArgumentError(
      `unknown log level "${level}": expected one of ${[...LEVELS].join(', ')}`,
      { level },
    );
  }
  const toStdout = opts.destination === undefined || opts.destination === process.stdout;
  const usePretty = opts.pretty ?? (toStdout && process.stdout.isTTY === true);
  const options = { level, ...(opts.name === undefined ? {} : { name: opts.name }) };

  let stream: DestinationStream | NodeJS.WritableStream;
  if (usePretty) {
    const isTty = toStdout ? process.stdout.isTTY === true : (opts.destination as { isTTY?: boolean }).isTTY === true;
    stream = pretty({
      destination: opts.destination ?? 1,
      sync: true,
      colorize: isTty,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
    });
  } else {
    stream = opts.destination ?? pino.destination({ dest: 1, sync: true });
  }
  return pino(options, stream as DestinationStream);
}
