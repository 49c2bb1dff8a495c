/**
 * Time, injected. Cores never read Date.now() or call setTimeout themselves: they take a Clock, so a
 * test can drive hours of timeouts in microseconds and a failing schedule replays exactly.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch (wall time; ManualClock starts where it is told). */
  now(): number;
  /** Monotonic milliseconds, for measuring intervals. */
  monotonic(): number;
  /**
   * Calls `fn` once after `delayMs`. By default the timer does not keep the process alive; with
   * `keepAlive` it does, for waits a caller is blocked on (a long-poll fetch in an embedded consumer).
   */
  setTimer(delayMs: number, fn: () => void, options?: { keepAlive?: boolean }): TimerHandle;
}

/** The real clock: Date.now, performance.now and Node timers. Timers do not keep the process alive unless asked to. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  monotonic(): number {
    return performance.now();
  }

  setTimer(delayMs: number, fn: () => void, options?: { keepAlive?: boolean }): TimerHandle {
    const t = setTimeout(fn, Math.max(0, delayMs));
    if (options?.keepAlive !== true) t.unref();
    return { cancel: () => clearTimeout(t) };
  }
}

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance(ms)` fires due timers in time order (ties in the
 * order they were set), each seeing `now()` equal to its own deadline.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private readonly startMs: number;
  private seq = 0;
  private timers: PendingTimer[] = [];

  constructor(startMs = 0) {
    this.nowMs = startMs;
    this.startMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  monotonic(): number {
    return this.nowMs - this.startMs;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer: PendingTimer = { at: this.nowMs + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers set and neither fired nor cancelled. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      let next: PendingTimer | undefined;
      for (const t of this.timers) {
        if (t.at <= target && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (next === undefined) break;
      this.nowMs = next.at;
      next.cancelled = true;
      next.fn();
    }
    this.nowMs = target;
  }
}
