/**
 * Messages every system in bench/queue carries, and the check that each one arrived exactly once.
 *
 * A message is `size` bytes: u32 run tag | u32 sequence number | f64 send time (ms since epoch,
 * `epochMs()`) | filler copied from a fixed pseudo-random template (incompressible, so no system
 * gains from compression it might apply). The consumer checks the tag, the sequence number, the
 * length and every filler byte, so a lost, duplicated, truncated or foreign message is counted,
 * and a run with any of them is void.
 */
import { ArchlabError } from '../../src/core/errors.js';

/** Bytes of header before the filler. */
export const HEADER_BYTES = 16;

/** The message sizes the issue asks for. */
export const SIZES = [100, 1024] as const;

export class BenchCheckError extends ArchlabError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ARCHLAB_BENCH_WRONG_ANSWER', message, { details });
  }
}

/** Deterministic filler (xorshift32 from a fixed seed): the same bytes in every run and every system. */
function template(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export class Payloads {
  readonly size: number;
  readonly tag: number;
  private readonly tpl: Buffer;

  /** `tag` tells this run's messages from any left over from another (u32). */
  constructor(size: number, tag: number) {
    if (size < HEADER_BYTES) throw new BenchCheckError(`message size must be at least ${HEADER_BYTES} bytes (got ${size})`);
    this.size = size;
    this.tag = tag >>> 0;
    this.tpl = template(size);
  }

  /** Message number `seq`, stamped with the time now. */
  make(seq: number, sentAtMs: number): Buffer {
    const b = Buffer.allocUnsafe(this.size);
    this.tpl.copy(b, HEADER_BYTES, HEADER_BYTES);
    b.writeUInt32LE(this.tag, 0);
    b.writeUInt32LE(seq, 4);
    b.writeDoubleLE(sentAtMs, 8);
    return b;
  }

  /** True when `b` is a whole, unaltered message of this run. */
  valid(b: Buffer): boolean {
    return b.length === this.size && b.readUInt32LE(0) === this.tag && b.compare(this.tpl, HEADER_BYTES, this.size, HEADER_BYTES, this.size) === 0;
  }
}

export function seqOf(b: Buffer): number {
  return b.readUInt32LE(4);
}

export function sentAtOf(b: Buffer): number {
  return b.readDoubleLE(8);
}

/** Counts what a consumer received against the `expected` messages 0..expected-1 that were sent. */
export class Tracker {
  readonly expected: number;
  private readonly seen: Uint8Array;
  unique = 0;
  duplicates = 0;
  /** Messages that were not of this run, out of range, or altered. */
  invalid = 0;
  private onComplete: (() => void) | undefined;

  constructor(
    private readonly payloads: Payloads,
    expected: number,
  ) {
    this.expected = expected;
    this.seen = new Uint8Array(expected);
  }

  /** Records one received message; returns its sequence number, or -1 when it is invalid. */
  see(b: Buffer): number {
    if (!this.payloads.valid(b)) {
      this.invalid++;
      return -1;
    }
    const seq = seqOf(b);
    if (seq >= this.expected) {
      this.invalid++;
      return -1;
    }
    if (this.seen[seq]) this.duplicates++;
    else {
      this.seen[seq] = 1;
      this.unique++;
      if (this.unique === this.expected) this.onComplete?.();
    }
    return seq;
  }

  get complete(): boolean {
    return this.unique === this.expected;
  }

  /** Resolves once every expected message has been seen. */
  whenComplete(): Promise<void> {
    if (this.complete) return Promise.resolve();
    return new Promise((resolve) => {
      this.onComplete = resolve;
    });
  }

  /** Undefined when every message arrived exactly once and nothing else arrived; else what went wrong. */
  problem(): string | undefined {
    const missing = this.expected - this.unique;
    if (missing === 0 && this.duplicates === 0 && this.invalid === 0) return undefined;
    return `${missing} of ${this.expected} missing, ${this.duplicates} duplicates, ${this.invalid} invalid`;
  }

  /** Throws BenchCheckError unless every message arrived exactly once. */
  check(what: string): void {
    const p = this.problem();
    if (p) throw new BenchCheckError(`${what}: ${p}`, { expected: this.expected, unique: this.unique, duplicates: this.duplicates, invalid: this.invalid });
  }
}
