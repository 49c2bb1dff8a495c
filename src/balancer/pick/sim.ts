import type { Random } from '../../core/random.js';
import type { BackendView, PickContext, Picker } from './types.js';

/** A backend whose state the simulation (or a test) changes: a plain BackendView. */
export interface SimBackend {
  id: string;
  weight: number;
  active: number;
  available: boolean;
}

export interface SimulateLoadOptions {
  /** Requests to place. */
  requests: number;
  /** Draws service times. Pickers have their own Random; use another seed. */
  random: Random;
  /** Requests arriving per simulated ms. Default 1. */
  perMs?: number;
  /** Service time in ms of a request sent to `backend`, rounded up to a whole ms >= 1. Default uniform in 1..19 (mean 10). */
  latencyMs?: (backend: SimBackend, random: Random) => number;
  /** The context of request i. Default: a distinct client address per request. */
  context?: (i: number) => PickContext;
  /** Moves the picker's clock (a ManualClock's advance), called once per simulated ms. */
  advance?: (ms: number) => void;
  /** Called before request i is placed, e.g. to change availability or membership of `backends`. */
  beforePick?: (i: number, backends: SimBackend[]) => void;
}

export interface SimulateLoadResult {
  /** Requests each backend took, by id. */
  picks: Map<string, number>;
  /** Requests placed nowhere (the picker returned -1). */
  unplaced: number;
  /** Picks of an index out of range or of an unavailable backend: always 0 for a correct picker. */
  invalid: number;
}

/**
 * Drives a picker with a stream of requests on simulated time: request i arrives at ms
 * floor(i / perMs), the chosen backend's `active` counts it until its service time has passed, and
 * the picker observes its latency when it completes (ok). Pure: a seeded Random replays exactly.
 */
export function simulateLoad(picker: Picker, backends: SimBackend[], options: SimulateLoadOptions): SimulateLoadResult {
  const perMs = options.perMs ?? 1;
  const latencyOf = options.latencyMs ?? ((_b: SimBackend, r: Random) => 1 + r.int(19));
  const contextOf = options.context ?? ((i: number) => ({ clientIp: `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}` }));
  const pending = new Map<number, { backend: SimBackend; latencyMs: number }[]>();
  const picks = new Map<string, number>();
  let unplaced = 0;
  let invalid = 0;
  let nowMs = 0;
  for (let i = 0; i < options.requests; i++) {
    const arrival = Math.floor(i / perMs);
    while (nowMs < arrival) {
      nowMs++;
      options.advance?.(1);
      const done = pending.get(nowMs);
      if (done === undefined) continue;
      pending.delete(nowMs);
      for (const { backend, latencyMs } of done) {
        backend.active--;
        picker.observe?.(backend, latencyMs, true);
      }
    }
    options.beforePick?.(i, backends);
    const index = picker.pick(backends as readonly BackendView[], contextOf(i));
    if (index === -1) {
      unplaced++;
      continue;
    }
    const backend = backends[index];
    if (backend === undefined || !backend.available) {
      invalid++;
      continue;
    }
    picks.set(backend.id, (picks.get(backend.id) ?? 0) + 1);
    backend.active++;
    const latencyMs = Math.max(1, Math.ceil(latencyOf(backend, options.random)));
    const end = nowMs + latencyMs;
    const list = pending.get(end);
    if (list === undefined) pending.set(end, [{ backend, latencyMs }]);
    else list.push({ backend, latencyMs });
  }
  return { picks, unplaced, invalid };
}
