/**
 * Exchanges route a published message to queues through bindings. Pure: no I/O, no clock.
 *
 * - direct:  a binding's routing key equals the message's.
 * - fanout:  every bound queue; routing keys are ignored.
 * - topic:   the binding key is a pattern (`*` one word, `#` zero or more; see topic-trie.ts).
 * - headers: binding arguments against message headers; `x-match` 'all' (default) or 'any'; keys
 *            starting with 'x-' are ignored on both sides. 'all' with no arguments matches every
 *            message; 'any' with none matches nothing (RabbitMQ's rules).
 *
 * A queue reached by several bindings of one exchange gets the message once.
 */
import type { BindingArgs, ExchangeConfig, ExchangeType } from '../types.js';
import { TopicTrie } from './topic-trie.js';

/** A binding of queue `Q` to an exchange, as kept by both (the queue lists its bindings to unbind them at delete). */
export interface Binding<Q> {
  readonly queue: Q;
  readonly exchange: string;
  readonly routingKey: string;
  /** Canonical arguments: sorted, no undefined values. */
  readonly args: Readonly<Record<string, string>>;
  /** Identity of the binding: exchange, routing key and canonical args. */
  readonly key: string;
}

/** Sorted, undefined-free copy of binding arguments, and their canonical JSON. */
export function canonicalArgs(args: BindingArgs | undefined): { args: Record<string, string>; json: string } {
  const out: Record<string, string> = {};
  if (args !== undefined) {
    for (const k of Object.keys(args).sort()) {
      const v = args[k];
      if (v !== undefined) out[k] = v;
    }
  }
  return { args: out, json: JSON.stringify(out) };
}

export function bindingKey(exchange: string, routingKey: string, argsJson: string): string {
  return `${exchange}\u0000${routingKey}\u0000${argsJson}`;
}

interface HeadersBinding<Q> {
  queue: Q;
  any: boolean;
  /** Non-'x-' arguments as [key, value] pairs. */
  match: [string, string][];
}

const EMPTY: readonly never[] = Object.freeze([]);

export class Exchange<Q> {
  readonly name: string;
  readonly type: ExchangeType;
  readonly durable: boolean;
  /** Every binding, by Binding.key + queue identity (the broker keeps the queue side). */
  readonly bindings = new Set<Binding<Q>>();

  private readonly direct = new Map<string, Q[]>();
  private fanout: Q[] = [];
  /** Bindings per queue in a fanout exchange (a queue bound twice is routed once). */
  private readonly fanoutCounts = new Map<Q, number>();
  private readonly topic: TopicTrie<Q> | undefined;
  private headers: HeadersBinding<Q>[] = [];

  constructor(name: string, config: ExchangeConfig) {
    this.name = name;
    this.type = config.type;
    this.durable = config.durable;
    if (config.type === 'topic') this.topic = new TopicTrie<Q>();
  }

  get config(): ExchangeConfig {
    return { type: this.type, durable: this.durable };
  }

  /** Adds a binding (the caller has checked it is not already there). */
  add(b: Binding<Q>): void {
    this.bindings.add(b);
    switch (this.type) {
      case 'direct': {
        const list = this.direct.get(b.routingKey);
        if (list === undefined) this.direct.set(b.routingKey, [b.queue]);
        // A queue bound twice with one key (different args) still gets one copy.
        else if (!list.includes(b.queue)) list.push(b.queue);
        break;
      }
      case 'fanout': {
        const n = this.fanoutCounts.get(b.queue) ?? 0;
        this.fanoutCounts.set(b.queue, n + 1);
        if (n === 0) this.fanout = [...this.fanout, b.queue];
        break;
      }
      case 'topic':
        this.topic!.add(b.routingKey, b.queue);
        break;
      case 'headers': {
        const any = b.args['x-match'] === 'any';
        const match = Object.entries(b.args).filter(([k]) => !k.startsWith('x-'));
        this.headers = [...this.headers, { queue: b.queue, any, match }];
        break;
      }
    }
  }

  remove(b: Binding<Q>): void {
    if (!this.bindings.delete(b)) return;
    switch (this.type) {
      case 'direct': {
        const list = this.direct.get(b.routingKey);
        if (list === undefined) break;
        // Keep the queue listed while another binding with this routing key still points at it.
        for (const other of this.bindings) if (other.queue === b.queue && other.routingKey === b.routingKey) return;
        const next = list.filter((q) => q !== b.queue);
        if (next.length === 0) this.direct.delete(b.routingKey);
        else this.direct.set(b.routingKey, next);
        break;
      }
      case 'fanout': {
        const n = (this.fanoutCounts.get(b.queue) ?? 1) - 1;
        if (n > 0) this.fanoutCounts.set(b.queue, n);
        else {
          this.fanoutCounts.delete(b.queue);
          this.fanout = this.fanout.filter((q) => q !== b.queue);
        }
        break;
      }
      case 'topic':
        this.topic!.remove(b.routingKey, b.queue);
        break;
      case 'headers': {
        const any = b.args['x-match'] === 'any';
        const json = JSON.stringify(Object.entries(b.args).filter(([k]) => !k.startsWith('x-')));
        const i = this.headers.findIndex((h) => h.queue === b.queue && h.any === any && JSON.stringify(h.match) === json);
        if (i >= 0) this.headers = this.headers.filter((_, j) => j !== i);
        break;
      }
    }
  }

  /** Queues the message goes to, each once. The array may be shared: do not mutate it. */
  route(routingKey: string, headers: Readonly<Record<string, string>> | undefined): readonly Q[] {
    switch (this.type) {
      case 'direct':
        return this.direct.get(routingKey) ?? EMPTY;
      case 'fanout':
        return this.fanout;
      case 'topic':
        return this.topic!.match(routingKey);
      case 'headers':
        return this.routeHeaders(headers);
    }
  }

  private routeHeaders(headers: Readonly<Record<string, string>> | undefined): readonly Q[] {
    if (this.headers.length === 0) return EMPTY;
    const h = headers ?? {};
    let out: Q[] | undefined;
    for (const b of this.headers) {
      if (!headersMatch(b, h)) continue;
      out ??= [];
      if (!out.includes(b.queue)) out.push(b.queue);
    }
    return out ?? EMPTY;
  }
}

function headersMatch<Q>(b: HeadersBinding<Q>, h: Readonly<Record<string, string>>): boolean {
  if (b.any) {
    for (const [k, v] of b.match) if (Object.hasOwn(h, k) && h[k] === v) return true;
    return false;
  }
  for (const [k, v] of b.match) if (!Object.hasOwn(h, k) || h[k] !== v) return false;
  return true;
}
