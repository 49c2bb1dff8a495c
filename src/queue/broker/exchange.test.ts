import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BindingArgs, ExchangeType } from '../types.js';
import { bindingKey, canonicalArgs, Exchange, type Binding } from './exchange.js';

function binding(queue: string, exchange: string, routingKey: string, args?: BindingArgs): Binding<string> {
  const c = canonicalArgs(args);
  return { queue, exchange, routingKey, args: c.args, key: bindingKey(exchange, routingKey, c.json) };
}

function exchange(type: ExchangeType): Exchange<string> {
  return new Exchange<string>('x', { type, durable: true });
}

test('direct: exact routing key; one copy per queue even when bound twice', () => {
  const ex = exchange('direct');
  const a = binding('qa', 'x', 'red');
  ex.add(a);
  ex.add(binding('qb', 'x', 'red'));
  ex.add(binding('qb', 'x', 'blue'));
  const again = binding('qa', 'x', 'red', { note: 'other args' });
  ex.add(again);
  assert.deepEqual([...ex.route('red', undefined)].sort(), ['qa', 'qb']);
  assert.deepEqual(ex.route('blue', undefined), ['qb']);
  assert.deepEqual(ex.route('green', undefined), []);
  ex.remove(a);
  assert.deepEqual([...ex.route('red', undefined)].sort(), ['qa', 'qb'], 'qa is still bound with red through the other binding');
  ex.remove(again);
  assert.deepEqual(ex.route('red', undefined), ['qb']);
});

test('fanout: every bound queue, whatever the key', () => {
  const ex = exchange('fanout');
  const a1 = binding('qa', 'x', '');
  const a2 = binding('qa', 'x', 'k');
  ex.add(a1);
  ex.add(a2);
  ex.add(binding('qb', 'x', ''));
  assert.deepEqual([...ex.route('anything', undefined)].sort(), ['qa', 'qb']);
  ex.remove(a1);
  assert.deepEqual([...ex.route('', undefined)].sort(), ['qa', 'qb']);
  ex.remove(a2);
  assert.deepEqual(ex.route('', undefined), ['qb']);
});

test('topic: patterns through the trie', () => {
  const ex = exchange('topic');
  ex.add(binding('all', 'x', '#'));
  ex.add(binding('eu', 'x', 'order.eu.*'));
  ex.add(binding('created', 'x', '*.*.created'));
  assert.deepEqual([...ex.route('order.eu.created', undefined)].sort(), ['all', 'created', 'eu']);
  assert.deepEqual([...ex.route('order.us.created', undefined)].sort(), ['all', 'created']);
  assert.deepEqual(ex.route('order', undefined), ['all']);
});

test('headers: x-match all (default) and any; x- keys ignored on both sides', () => {
  const ex = exchange('headers');
  ex.add(binding('pdf-a4', 'x', '', { format: 'pdf', type: 'report' }));
  ex.add(binding('pdf-or-zip', 'x', '', { 'x-match': 'any', format: 'pdf', type: 'zip' }));
  ex.add(binding('everything', 'x', '', { 'x-match': 'all' }));
  ex.add(binding('nothing', 'x', '', { 'x-match': 'any' }));
  ex.add(binding('x-only', 'x', '', { 'x-custom': 'v' }));
  const route = (h: Record<string, string>): string[] => [...ex.route('ignored', h)].sort();
  assert.deepEqual(route({ format: 'pdf', type: 'report' }), ['everything', 'pdf-a4', 'pdf-or-zip', 'x-only']);
  assert.deepEqual(route({ format: 'pdf' }), ['everything', 'pdf-or-zip', 'x-only']);
  assert.deepEqual(route({ type: 'zip', 'x-custom': 'nope' }), ['everything', 'pdf-or-zip', 'x-only']);
  assert.deepEqual(route({ 'x-match': 'any', format: 'doc' }), ['everything', 'x-only']);
  assert.deepEqual(route({ format: 'PDF' }), ['everything', 'x-only'], 'values compare exactly');
});

test('canonical args: sorted, undefined dropped, so equal bindings have one key', () => {
  const a = canonicalArgs({ b: '2', a: '1', c: undefined });
  const b = canonicalArgs({ a: '1', b: '2' });
  assert.equal(a.json, b.json);
  assert.deepEqual(a.args, { a: '1', b: '2' });
});
