import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError } from '../../src/core/errors.js';
import { parseDd } from './disk.js';
import { Payloads, seqOf, Tracker } from './payload.js';
import { consume, latency, produce, type Session } from './runner.js';

/**
 * An in-memory queue as a Session, with knobs to make it wrong: `duplicateEvery` delivers every
 * n-th message twice, `loseEvery` never delivers every n-th, `corrupt` flips a filler byte.
 */
function fakeSession(o: { duplicateEvery?: number; loseEvery?: number; corruptSeq?: number; ackDelayMs?: number } = {}): Session & { maxInflight: number } {
  const stored: Buffer[] = [];
  let listener: ((b: Buffer) => void) | undefined;
  let inflight = 0;
  const s = {
    maxInflight: 0,
    send(body: Buffer): Promise<void> {
      inflight++;
      s.maxInflight = Math.max(s.maxInflight, inflight);
      return new Promise<void>((resolve) => {
        setTimeout(() => {
          inflight--;
          const seq = seqOf(body);
          if (!(o.loseEvery && seq % o.loseEvery === o.loseEvery - 1)) {
            const copy = Buffer.from(body);
            if (o.corruptSeq === seq) copy[copy.length - 1]! ^= 0xff;
            stored.push(copy);
            if (o.duplicateEvery && seq % o.duplicateEvery === 0) stored.push(copy);
            listener?.(copy);
          }
          resolve();
        }, o.ackDelayMs ?? 0);
      });
    },
    async consume(onMessage: (b: Buffer) => void) {
      for (const b of stored.splice(0)) onMessage(b);
      listener = onMessage;
      return {
        async stop() {
          listener = undefined;
        },
      };
    },
    async drop() {
      stored.length = 0;
    },
  };
  return s;
}

test('Payloads makes messages the Tracker accepts once, and rejects altered or foreign ones', () => {
  const p = new Payloads(100, 7);
  const t = new Tracker(p, 3);
  const m0 = p.make(0, 1);
  assert.equal(m0.length, 100);
  assert.equal(t.see(m0), 0);
  assert.equal(t.see(m0), 0);
  assert.equal(t.duplicates, 1);
  const altered = p.make(1, 1);
  altered[50]! ^= 1;
  assert.equal(t.see(altered), -1);
  assert.equal(t.see(new Payloads(100, 8).make(1, 1)), -1, 'another run');
  assert.equal(t.see(p.make(3, 1)), -1, 'out of range');
  assert.equal(t.see(p.make(1, 1).subarray(0, 99)), -1, 'truncated');
  assert.equal(t.invalid, 4);
  assert.match(t.problem()!, /2 of 3 missing, 1 duplicates, 4 invalid/);
  assert.throws(() => t.check('x'), (e) => isArchlabError(e, 'ARCHLAB_BENCH_WRONG_ANSWER'));
  t.see(p.make(1, 1));
  t.see(p.make(2, 1));
  assert.ok(t.complete);
});

test('produce keeps at most `window` publishes unacknowledged, and consume checks every message', async () => {
  const p = new Payloads(64, 1);
  const s = fakeSession({ ackDelayMs: 1 });
  await produce(s, p, 500, 20);
  assert.ok(s.maxInflight <= 20 && s.maxInflight > 1, `max in flight ${s.maxInflight}`);
  const r = await consume(s, p, 500, 2000, 'fake');
  assert.equal(r.tracker.unique, 500);
});

test('consume voids a run with duplicates, losses or altered messages', async () => {
  const p = new Payloads(64, 1);
  for (const knobs of [{ duplicateEvery: 50 }, { loseEvery: 100 }, { corruptSeq: 7 }]) {
    const s = fakeSession(knobs);
    await produce(s, p, 200, 50);
    await assert.rejects(consume(s, p, 200, 300, 'fake'), (e) => isArchlabError(e, 'ARCHLAB_BENCH_WRONG_ANSWER'), JSON.stringify(knobs));
  }
});

test('latency sends at the asked rate and measures publish to delivery', async () => {
  const p = new Payloads(64, 1);
  const s = fakeSession({ ackDelayMs: 2 });
  const r = await latency(s, p, { rate: 500, durationMs: 200, window: 100, drainTimeoutMs: 2000 }, 'fake');
  assert.equal(r.count, 100);
  // Delivery happens after a 2 ms timer: latency is at least that, and well under the run's length.
  assert.ok(r.p50Ms >= 1.5 && r.p99Ms < 200, JSON.stringify(r));
  assert.ok(r.sentPerS > 250 && r.sentPerS < 1000, `sent ${r.sentPerS}/s`);
  await assert.rejects(latency(fakeSession({ loseEvery: 10 }), p, { rate: 500, durationMs: 100, window: 100, drainTimeoutMs: 200 }, 'fake'), (e) => isArchlabError(e, 'ARCHLAB_BENCH_WRONG_ANSWER'));
});

test('parseDd reads bytes and seconds from dd, in either decimal mark', () => {
  assert.equal(parseDd('128+0 records in\n128+0 records out\n134217728 bytes (134 MB, 128 MiB) copied, 0.5 s, 268 MB/s\n'), 134217728 / 0.5 / 1e6);
  assert.equal(parseDd('134217728 bytes (134 MB, 128 MiB) copied, 0,5 s, 268 MB/s'), 134217728 / 0.5 / 1e6);
  assert.equal(parseDd('dd: failed to open'), undefined);
});
