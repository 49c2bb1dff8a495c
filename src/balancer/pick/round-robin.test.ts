import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoundRobinPicker } from './round-robin.js';
import type { SimBackend } from './sim.js';

const ctx = { clientIp: '192.0.2.1' };

function pool(ids: string, weights: number[] = []): SimBackend[] {
  return [...ids].map((id, i) => ({ id, weight: weights[i] ?? 1, active: 0, available: true }));
}

function run(picker: RoundRobinPicker, backends: SimBackend[], n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += backends[picker.pick(backends, ctx)]!.id;
  return out;
}

test('cycles over the backends in array order', () => {
  assert.equal(run(new RoundRobinPicker(), pool('abcd'), 10), 'abcdabcdab');
});

test('skips unavailable backends and ignores weights and load', () => {
  const backends = pool('abcd', [5, 1, 1, 1]);
  backends[1]!.available = false;
  backends[3]!.active = 50;
  assert.equal(run(new RoundRobinPicker(), backends, 9), 'acdacdacd');
});

test('a backend coming back takes its turn in place', () => {
  const picker = new RoundRobinPicker();
  const backends = pool('abc');
  backends[1]!.available = false;
  assert.equal(run(picker, backends, 3), 'aca');
  backends[1]!.available = true;
  assert.equal(run(picker, backends, 4), 'bcab');
});

test('after a reload the rotation continues after the backend picked last, wherever it now is', () => {
  const picker = new RoundRobinPicker();
  const [a, b, c, d] = pool('abcd');
  assert.equal(run(picker, [a!, b!, c!, d!], 2), 'ab');
  // b moved to the end; x and y were added.
  const x: SimBackend = { id: 'x', weight: 1, active: 0, available: true };
  const y: SimBackend = { id: 'y', weight: 1, active: 0, available: true };
  assert.equal(run(picker, [x, a!, c!, y, b!, d!], 3), 'dxa');
});

test('when the backend picked last leaves, the one that slid into its place is next', () => {
  const picker = new RoundRobinPicker();
  const [a, b, c, d] = pool('abcd');
  assert.equal(run(picker, [a!, b!, c!, d!], 2), 'ab');
  assert.equal(run(picker, [a!, c!, d!], 4), 'cdac');
  // Shrinking below the remembered position wraps instead of reading past the end.
  assert.equal(run(picker, [d!], 2), 'dd');
});
