/**
 * Every error archlab throws on purpose is an ArchlabError: a stable `code` callers can switch on
 * (never parse the message), and `retryable`, whether trying the same thing again can help
 * (a timed-out connect can; a bad config cannot).
 */
export interface ArchlabErrorOptions {
  retryable?: boolean;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class ArchlabError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: ArchlabErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, retryable: this.retryable, details: this.details };
  }
}

/** True when `err` is an ArchlabError, optionally with the given code. */
export function isArchlabError(err: unknown, code?: string): err is ArchlabError {
  return err instanceof ArchlabError && (code === undefined || err.code === code);
}

/** A caller passed a value that can never work (wrong type, out of range). Not retryable. */
export class InvalidArgumentError extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_INVALID_ARGUMENT', message, { details });
  }
}
