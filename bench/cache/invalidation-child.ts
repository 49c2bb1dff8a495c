/**
 * One of the K processes of bench/cache's cross-process invalidation row: a tiered store (memory L1 +
 * Redis L2) on the parent's prefix, driven over the IPC channel.
 *
 *   node --import tsx bench/cache/invalidation-child.ts --redis HOST:PORT --prefix P   (spawned with an IPC channel)
 *
 * Parent -> child: `{ type: 'arm', round, key }`: read `key` (an L2 hit, copied into L1), check L1
 * holds it, answer `{ type: 'armed', round }`. When the invalidation of the armed key arrives over
 * pub/sub and L1 has dropped it (TieredStore.onRemoteInvalidation runs after the drop), answer
 * `{ type: 'dropped', round, atMs }` with atMs = performance.timeOrigin + performance.now(), a time
 * comparable across processes on one machine. `{ type: 'exit' }` closes the store and exits; the
 * process also exits when the IPC channel closes (the parent died).
 */
import { createTieredStore } from '../../src/cache/stores/tiered.js';
import type { Item } from './workload.js';

interface Arm {
  type: 'arm';
  round: number;
  key: string;
}

const args = process.argv.slice(2);
const opt = (name: string): string => {
  const i = args.indexOf(name);
  const v = i >= 0 ? args[i + 1] : undefined;
  if (v === undefined || !process.send) {
    process.stderr.write(`invalidation-child: ${name} is required, and an IPC channel\n`);
    process.exit(2);
  }
  return v;
};
const redis = opt('--redis');
const prefix = opt('--prefix');
const send = (m: object): void => {
  process.send?.(m);
};

const store = createTieredStore<Item>({ l1: { maxEntries: 10_000 }, l2: { url: `redis://${redis}`, prefix } });
let armed: { round: number; key: string } | undefined;

store.onRemoteInvalidation = (msg) => {
  const atMs = performance.timeOrigin + performance.now();
  if (armed === undefined || msg.kind !== 'key' || msg.subject !== armed.key) return;
  const { round, key } = armed;
  armed = undefined;
  send({ type: 'dropped', round, atMs, l1Empty: store.peek(key) === undefined });
};

process.on('message', (m: Arm | { type: 'exit' }) => {
  if (m.type === 'exit') {
    void store.close().finally(() => process.exit(0));
    return;
  }
  void (async () => {
    try {
      const e = await store.get(m.key);
      if (e === undefined || store.peek(m.key) === undefined) {
        send({ type: 'error', message: `round ${m.round}: ${m.key} ${e === undefined ? 'is not in L2' : 'was not copied into L1'}` });
        return;
      }
      armed = { round: m.round, key: m.key };
      send({ type: 'armed', round: m.round });
    } catch (err) {
      send({ type: 'error', message: `round ${m.round}: ${(err as Error).message}` });
    }
  })();
});
process.on('disconnect', () => {
  void store.close().finally(() => process.exit(0));
});

try {
  await store.ready(10_000);
  send({ type: 'ready', pid: process.pid });
} catch (err) {
  send({ type: 'error', message: `not ready: ${(err as Error).message}` });
  await store.close();
  process.exit(1);
}
