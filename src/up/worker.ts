/**
 * The worker of `archlab up`: consumes the app's order events from the queue (order placed ->
 * "email and analytics"), spending `workMs` on each so a backlog can build when orders come faster
 * than it works, and counting what it consumed. Stop and start it to watch the backlog build and
 * drain.
 *
 * It subscribes with prefetch 1: one event in hand at a time, acknowledged after its work, so an
 * event is consumed at least once. stop() cancels the subscription with its unacked event requeued
 * and cuts short the work in progress (that event is not counted: it comes back on the next start).
 */
import { InvalidArgumentError, isArchlabError, type Logger } from '../core/index.js';
import type { QueueDriver, ReceivedMessage, Subscription } from '../queue/index.js';
import type { OrderPlacedEvent } from './app/index.js';

export interface OrderWorkerOptions {
  driver: QueueDriver;
  /** The queue of order events. */
  queue: string;
  /** Simulated work per event, in ms; 0 = none. */
  workMs: number;
  logger?: Logger;
}

export interface OrderWorkerStats {
  running: boolean;
  /** Events worked on and acknowledged. */
  consumed: number;
  /** Events that could not be parsed (acknowledged and dropped). */
  malformed: number;
  /** The last event consumed. */
  last: OrderPlacedEvent | undefined;
}

export class OrderWorker {
  private subscription: Subscription | undefined;
  /** Bumped by stop(): a handler from an older generation does not ack (its event was requeued). */
  private generation = 0;
  /** Work in progress: its timer and how to end it early. */
  private readonly working = new Set<{ timer: NodeJS.Timeout; done: () => void }>();
  private consumed = 0;
  private malformed = 0;
  private last: OrderPlacedEvent | undefined;
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly opts: OrderWorkerOptions) {
    if (!Number.isSafeInteger(opts.workMs) || opts.workMs < 0) throw new InvalidArgumentError(`workMs must be an integer >= 0, got ${opts.workMs}`);
  }

  get running(): boolean {
    return this.subscription !== undefined;
  }

  /** Subscribes to the queue; a no-op when already running. */
  start(): Promise<void> {
    return this.serialize(async () => {
      if (this.subscription !== undefined) return;
      const generation = this.generation;
      this.subscription = await this.opts.driver.subscribe(this.opts.queue, { prefetch: 1 }, (m) => this.handle(m, generation));
    });
  }

  /** Cancels the subscription (its unacked event goes back to the queue) and ends the work in progress. */
  stop(): Promise<void> {
    return this.serialize(async () => {
      const sub = this.subscription;
      if (sub === undefined) return;
      this.subscription = undefined;
      this.generation++;
      for (const w of this.working) {
        clearTimeout(w.timer);
        w.done();
      }
      this.working.clear();
      await sub.cancel({ requeueUnacked: true });
    });
  }

  stats(): OrderWorkerStats {
    return { running: this.running, consumed: this.consumed, malformed: this.malformed, last: this.last };
  }

  /** start() and stop() run one at a time, in call order. */
  private serialize(fn: () => Promise<void>): Promise<void> {
    const next = this.transition.then(fn, fn);
    this.transition = next.catch(() => undefined);
    return next;
  }

  private work(): Promise<void> {
    if (this.opts.workMs === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const w = {
        timer: setTimeout(() => {
          this.working.delete(w);
          resolve();
        }, this.opts.workMs),
        done: resolve,
      };
      this.working.add(w);
    });
  }

  private async handle(m: ReceivedMessage, generation: number): Promise<void> {
    let event: OrderPlacedEvent | undefined;
    try {
      const parsed = JSON.parse(m.body.toString('utf8')) as Partial<OrderPlacedEvent>;
      if (parsed?.type === 'order.placed' && typeof parsed.orderId === 'number') event = parsed as OrderPlacedEvent;
    } catch {
      event = undefined;
    }
    if (event !== undefined) await this.work();
    if (generation !== this.generation) return; // stopped meanwhile: the event was requeued
    try {
      await m.ack();
    } catch (err) {
      // A subscription cancelled between the check above and the ack: the event was requeued.
      if (isArchlabError(err, 'ARCHLAB_QUEUE_UNKNOWN_DELIVERY') || generation !== this.generation) return;
      throw err;
    }
    if (event === undefined) {
      this.malformed++;
      this.opts.logger?.warn({ queue: this.opts.queue }, 'worker: dropped a message that is not an order event');
      return;
    }
    this.consumed++;
    this.last = event;
  }
}
