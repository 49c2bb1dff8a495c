import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

/**
 * Randomness, injected. Cores take a Random so a seeded run (a simulation, a picker test) replays
 * exactly; print the seed on every failure.
 */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n), n a positive safe integer. */
  int(n: number): number;
  /** An unsigned 32-bit integer. */
  uint32(): number;
}

function checkBound(n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`int(n) needs a positive integer n, got ${n}`);
}

/** next() and int() from a source of uint32 draws, shared by every generator. */
abstract class Uint32Source implements Random {
  abstract uint32(): number;

  next(): number {
    // 53 random bits, so every double in [0, 1) on the 2^-53 grid is reachable.
    const hi = this.uint32() >>> 5;
    const lo = this.uint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  int(n: number): number {
    checkBound(n);
    return Math.floor(this.next() * n);
  }
}

/**
 * sfc32 (Chris Doty-Humphrey's small fast chaotic generator): 128 bits of state, passes PractRand
 * to many terabytes, four 32-bit adds and shifts per draw. Seeded through splitmix32 so nearby
 * seeds give unrelated streams.
 */
export class SeededRandom extends Uint32Source {
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    super();
    if (!Number.isInteger(seed)) throw new InvalidArgumentError(`seed must be an integer, got ${seed}`);
    this.seed = seed;
    let s = seed >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

}

/** Non-deterministic randomness from the OS CSPRNG, buffered so a draw is cheap. */
export class SystemRandom extends Uint32Source {
  private readonly buf = new Uint32Array(256);
  private pos = 256;

  uint32(): number {
    if (this.pos === this.buf.length) {
      randomFillSync(this.buf);
      this.pos = 0;
    }
    return this.buf[this.pos++]!;
  }

}

/** A seed for a run that did not name one: random, and meant to be printed so it can be replayed. */
export function freshSeed(): number {
  return new SystemRandom().uint32();
}
