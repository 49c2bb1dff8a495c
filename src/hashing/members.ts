import type { NodeInfo } from './types.js';
import { checkNode, checkWeight, duplicate, unknown } from './validate.js';

/**
 * The membership every hasher keeps: names in add order, weights, validation, and a `dirty` flag so
 * the placement structure is rebuilt once, on the next lookup, however many changes came first.
 */
export abstract class Membership {
  protected readonly weights = new Map<string, number>();
  protected order: string[] = [];
  protected dirty = false;

  constructor(private readonly integerWeights: boolean) {}

  get size(): number {
    return this.order.length;
  }

  add(node: string, weight = 1): void {
    checkNode(node);
    checkWeight(node, weight, this.integerWeights);
    if (this.weights.has(node)) throw duplicate(node);
    this.admit(node, weight);
    this.weights.set(node, weight);
    this.order.push(node);
    this.dirty = true;
  }

  remove(node: string): void {
    if (!this.weights.delete(node)) throw unknown(node);
    this.order = this.order.filter((n) => n !== node);
    this.dirty = true;
  }

  has(node: string): boolean {
    return this.weights.has(node);
  }

  nodes(): NodeInfo[] {
    return this.order.map((node) => ({ node, weight: this.weights.get(node)! }));
  }

  /** Refuses a valid node that would pass an algorithm's limit; called before anything changes. */
  protected admit(_node: string, _weight: number): void {}
}
