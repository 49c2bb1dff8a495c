import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as dgram from 'node:dgram';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ROOT } from '../harness.js';

/** A UDP echo in this process that answers only the datagrams `answer` accepts. */
async function echo(t: TestContext, answer: (n: number) => boolean): Promise<number> {
  const sock = dgram.createSocket('udp4');
  let n = 0;
  sock.on('message', (msg, rinfo) => {
    if (answer(n++)) sock.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => sock.close(() => r())));
  return sock.address().port;
}

function load(port: number): Promise<{ datagrams: number; rate: number; p50Ms: number; p99Ms: number; lost: number; wrong: number; total: number }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/balancer-udp/load.ts'), '--port', String(port), '--flows', '4', '--duration-s', '1', '--warmup-s', '0'], { cwd: ROOT, timeout: 30_000 }, (err, out) =>
      err ? reject(err) : resolve(JSON.parse(out) as never),
    );
  });
}

test('the UDP load generator counts answered datagrams and their round trips, and nothing lost from a faithful echo', async (t) => {
  const r = await load(await echo(t, () => true));
  assert.ok(r.datagrams > 100, `answered ${r.datagrams}`);
  assert.equal(r.lost, 0);
  assert.equal(r.wrong, 0);
  assert.ok(r.p50Ms > 0 && r.p50Ms <= r.p99Ms);
  assert.ok(r.total >= r.datagrams);
});

test('the UDP load generator counts a datagram never answered as lost, and its flow goes on', async (t) => {
  // Every 10th datagram is dropped: each stalls its flow for the 200 ms loss timeout.
  const r = await load(await echo(t, (n) => n % 10 !== 9));
  assert.ok(r.lost > 0, `lost ${r.lost}`);
  assert.ok(r.datagrams > r.lost, 'flows went on after a loss');
});
