import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RendezvousHasher } from '../../hashing/index.js';
import { IpHashPicker } from './ip-hash.js';
import type { SimBackend } from './sim.js';

const IPS = Array.from({ length: 4000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 7) & 255}`);

function pool(n: number, weights: number[] = []): SimBackend[] {
  return Array.from({ length: n }, (_, i) => ({ id: `10.1.0.${i + 1}:8080`, weight: weights[i] ?? 1, active: 0, available: true }));
}

/** The backend id each IP gets. */
function place(picker: IpHashPicker, backends: SimBackend[]): string[] {
  return IPS.map((clientIp) => backends[picker.pick(backends, { clientIp })]!.id);
}

test('places every IP as RendezvousHasher over the available backends does', () => {
  const backends = pool(7, [1, 2, 1, 0.5, 3, 1, 1]);
  backends[2]!.available = false;
  const h = new RendezvousHasher();
  for (const b of backends) if (b.available) h.add(b.id, b.weight);
  assert.deepEqual(place(new IpHashPicker(), backends), IPS.map((ip) => h.get(ip)));
});

test('one IP keeps one backend while the set is unchanged, whatever the loads', () => {
  const picker = new IpHashPicker();
  const backends = pool(6);
  const first = place(picker, backends);
  backends.forEach((b, i) => (b.active = 10 * i));
  assert.deepEqual(place(picker, backends), first);
  assert.equal(new Set(first).size, 6, 'every backend has clients');
});

test('a backend going down moves only its own clients, spread over the others; back up, all return', () => {
  const picker = new IpHashPicker();
  const backends = pool(6);
  const before = place(picker, backends);
  const down = backends[2]!;
  down.available = false;
  const during = place(picker, backends);
  const movedTo = new Map<string, number>();
  IPS.forEach((_, i) => {
    if (before[i] === down.id) movedTo.set(during[i]!, (movedTo.get(during[i]!) ?? 0) + 1);
    else assert.equal(during[i], before[i], `${IPS[i]} moved though its backend stayed up`);
  });
  assert.equal(movedTo.size, 5, 'its clients spread over all five others');
  down.available = true;
  assert.deepEqual(place(picker, backends), before);
});

test('a reload that removes one backend and inserts others keeps every other client in place', () => {
  const picker = new IpHashPicker();
  const backends = pool(6);
  const before = place(picker, backends);
  const gone = backends[1]!.id;
  // Indices shift: a new, unavailable backend at the front and backend 1 removed.
  const reloaded = [{ id: 'new:80', weight: 1, active: 0, available: false }, ...backends.filter((b) => b.id !== gone)];
  const after = place(picker, reloaded);
  IPS.forEach((_, i) => {
    if (before[i] !== gone) assert.equal(after[i], before[i], IPS[i]);
    else assert.notEqual(after[i], gone);
  });
});

test('hashes the client IP only: the hash key does not change the backend', () => {
  const picker = new IpHashPicker();
  const backends = pool(5);
  for (const clientIp of IPS.slice(0, 200)) {
    const plain = picker.pick(backends, { clientIp });
    assert.equal(picker.pick(backends, { clientIp, hashKey: `cookie-${clientIp}` }), plain);
  }
});

test('rebuilds only when the available ids or their weights change', () => {
  const picker = new IpHashPicker();
  const backends = pool(4, [2, 2, 2, 2]);
  const ctx = { clientIp: '192.0.2.7' };
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 1);
  for (let i = 0; i < 100; i++) {
    backends[i % 4]!.active = i;
    picker.pick(backends, ctx);
  }
  assert.equal(picker.rebuilds, 1, 'load changes do not rebuild');
  backends[0]!.weight = 2.01; // a slow-start step within weight rounding
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 1);
  backends[0]!.weight = 1;
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 2, 'a weight change rebuilds');
  backends[3]!.available = false;
  picker.pick(backends, ctx);
  assert.equal(picker.rebuilds, 3, 'a backend going down rebuilds');
  picker.pick([{ id: 'x', weight: 1, active: 0, available: false }, ...backends], ctx);
  assert.equal(picker.rebuilds, 3, 'a shift of indices re-points without rebuilding');
});
