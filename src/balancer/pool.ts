import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { Backend } from './backend.js';
import type { PoolConfig } from './config.js';
import { BalancerError } from './errors.js';
import { createPicker } from './pick/index.js';
import type { AlgorithmName, BackendView, PickContext, Picker } from './pick/types.js';

interface Waiter {
  ctx: PickContext;
  exclude: ReadonlySet<Backend> | undefined;
  resolve: (b: Backend) => void;
  reject: (err: BalancerError) => void;
  cancel: () => void;
}

/** An excluded backend seen through a view that says it is not available (retries go elsewhere). */
class Excluded implements BackendView {
  constructor(private readonly b: Backend) {}
  get id(): string {
    return this.b.id;
  }
  get weight(): number {
    return this.b.weight;
  }
  get active(): number {
    return this.b.active;
  }
  get available(): boolean {
    return false;
  }
}

/**
 * A named set of backends behind one algorithm, with a bounded FIFO of requests waiting for a
 * backend under its connection limit. `acquire` counts the request as active on the backend it
 * returns; the caller must `release` it exactly once.
 */
export class Pool {
  readonly name: string;
  backends: Backend[];
  picker: Picker;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly config: PoolConfig,
    private readonly deps: { clock: Clock; random: Random },
    reuse?: ReadonlyMap<string, Backend>,
  ) {
    this.name = config.name;
    this.backends = config.backends.map((bc) => {
      const fresh = new Backend(bc, deps.clock);
      const old = reuse?.get(fresh.id);
      const b = old && old.host === fresh.host && old.port === fresh.port && old.tls === fresh.tls ? old : fresh;
      b.configuredWeight = bc.weight;
      b.maxConnections = bc.maxConnections;
      b.slowStartMs = config.health.slowStartMs;
      b.draining = false;
      return b;
    });
    this.picker = this.makePicker(config.algorithm);
  }

  makePicker(algorithm: AlgorithmName): Picker {
    return createPicker(algorithm, { random: this.deps.random, clock: this.deps.clock, boundedLoad: this.config.boundedLoad });
  }

  /** Switches the algorithm (admin API); in-flight requests are unaffected. */
  setAlgorithm(algorithm: AlgorithmName): void {
    this.picker = this.makePicker(algorithm);
  }

  get waiting(): number {
    return this.waiters.length;
  }

  find(id: string): Backend | undefined {
    return this.backends.find((b) => b.id === id);
  }

  /**
   * A backend for one request: `preferred` (a sticky choice) when it is available, else the
   * algorithm's pick among available backends not in `exclude`. Waits in the queue when every
   * usable backend is at its connection limit; fails at once when no backend is usable.
   */
  acquire(ctx: PickContext, exclude?: ReadonlySet<Backend>, preferred?: Backend): Promise<Backend> | Backend {
    if (preferred && preferred.available && !exclude?.has(preferred)) {
      preferred.active++;
      return preferred;
    }
    const b = this.tryPick(ctx, exclude);
    if (b) return b;
    if (!this.backends.some((x) => x.usable && !exclude?.has(x))) {
      throw new BalancerError('ARCHLAB_NO_BACKEND', `pool "${this.name}": no backend is up`, { retryable: true });
    }
    const { maxWaiting, timeoutMs } = this.config.queue;
    if (this.waiters.length >= maxWaiting) {
      throw new BalancerError('ARCHLAB_QUEUE_FULL', `pool "${this.name}": every backend is at its connection limit and ${maxWaiting} requests are waiting`, { retryable: true });
    }
    return new Promise<Backend>((resolve, reject) => {
      const timer = this.deps.clock.setTimer(timeoutMs, () => {
        this.remove(waiter);
        reject(new BalancerError('ARCHLAB_QUEUE_TIMEOUT', `pool "${this.name}": no backend freed up within ${timeoutMs} ms`, { retryable: true }));
      });
      const waiter: Waiter = { ctx, exclude, resolve, reject, cancel: () => timer.cancel() };
      this.waiters.push(waiter);
    });
  }

  /** The request on `b` is over: free its slot and hand it to the first waiter that can use it. */
  release(b: Backend): void {
    b.active = Math.max(0, b.active - 1);
    this.wake();
  }

  /** Re-tries waiters (a backend came back, was enabled, or freed a slot). */
  wake(): void {
    while (this.waiters.length > 0) {
      const w = this.waiters[0]!;
      const b = this.tryPick(w.ctx, w.exclude);
      if (!b) {
        if (!this.backends.some((x) => x.usable && !w.exclude?.has(x))) {
          this.waiters.shift();
          w.cancel();
          w.reject(new BalancerError('ARCHLAB_NO_BACKEND', `pool "${this.name}": no backend is up`, { retryable: true }));
          continue;
        }
        return;
      }
      this.waiters.shift();
      w.cancel();
      w.resolve(b);
    }
  }

  /** Fails every waiter (shutdown). */
  rejectWaiters(reason: string): void {
    for (const w of this.waiters.splice(0)) {
      w.cancel();
      w.reject(new BalancerError('ARCHLAB_NO_BACKEND', `pool "${this.name}": ${reason}`, { retryable: true }));
    }
  }

  private tryPick(ctx: PickContext, exclude?: ReadonlySet<Backend>): Backend | undefined {
    const views: readonly BackendView[] = exclude && exclude.size > 0 ? this.backends.map((b) => (exclude.has(b) ? new Excluded(b) : b)) : this.backends;
    const i = this.picker.pick(views, ctx);
    if (i < 0) return undefined;
    const b = this.backends[i]!;
    if (!b.available || exclude?.has(b)) return undefined; // a picker bug must not overload or repeat
    b.active++;
    return b;
  }

  private remove(w: Waiter): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }
}
