/** The purge fan-out on the wire: what each node is sent, acks, refusals and a node that never answers. */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Pool } from 'undici';
import { SystemClock } from '../../src/core/clock.js';
import { fanOutPurge, purgeIncomplete } from '../../src/cdn/network/purge.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A stand-in node: answers PURGE as `reply` says ('never' keeps the request open), records what it got. */
async function node(t: TestContext, reply: { status: number; body: string } | 'never'): Promise<{ pool: Pool; seen: Seen[] }> {
  const seen: Seen[] = [];
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    if (reply === 'never') {
      open.add(res);
      return;
    }
    res.writeHead(reply.status, { 'content-type': 'application/json' });
    res.end(reply.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  t.after(async () => {
    await pool.destroy();
    for (const res of open) res.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { pool, seen };
}

const clock = new SystemClock();
const opts = { siteHost: 'cdn.test', token: 'node-token-123', timeoutMs: 300, clock };

test('fan-out: every node gets PURGE with the token, mode and selector headers; acks are summed', async (t) => {
  const a = await node(t, { status: 200, body: '{"purged":2}' });
  const b = await node(t, { status: 200, body: '{"purged":1}' });
  const targets = [
    { name: 'eu-1', region: 'eu', tier: 'edge' as const, dispatcher: a.pool },
    { name: 'shield', region: 'shield', tier: 'shield' as const, dispatcher: b.pool },
  ];
  const byPrefix = await fanOutPurge(targets, { prefix: '/img/', mode: 'soft' }, opts);
  assert.equal(byPrefix.complete, true);
  assert.equal(byPrefix.purged, 3);
  assert.deepEqual(byPrefix.nodes.map((n) => [n.name, n.acked, n.purged]), [
    ['eu-1', true, 2],
    ['shield', true, 1],
  ]);
  for (const s of [a.seen[0]!, b.seen[0]!]) {
    assert.equal(s.method, 'PURGE');
    assert.equal(s.url, '/img/');
    assert.equal(s.headers.host, 'cdn.test');
    assert.equal(s.headers.authorization, 'Bearer node-token-123');
    assert.equal(s.headers['x-purge-mode'], 'soft');
    assert.equal(s.headers['x-purge-prefix'], '1');
    assert.equal(s.headers['x-purge-tag'], undefined);
  }
  await fanOutPurge(targets, { tag: 'assets' }, opts);
  assert.equal(a.seen[1]!.headers['x-purge-tag'], 'assets');
  assert.equal(a.seen[1]!.headers['x-purge-mode'], 'hard');
  assert.equal(a.seen[1]!.headers['x-purge-prefix'], undefined);
  await fanOutPurge(targets, { url: 'http://Other.Test/a?b=1' }, opts);
  assert.equal(a.seen[2]!.url, '/a?b=1');
  assert.equal(a.seen[2]!.headers.host, 'other.test');
});

test('fan-out: a node that refuses, one that answers garbage and one that never answers are reported, the rest still ack', async (t) => {
  const ok = await node(t, { status: 200, body: '{"purged":5}' });
  const refuses = await node(t, { status: 401, body: '{}' });
  const garbage = await node(t, { status: 200, body: 'purged!' });
  const silent = await node(t, 'never');
  const report = await fanOutPurge(
    [
      { name: 'ok', region: 'eu', tier: 'edge', dispatcher: ok.pool },
      { name: 'refuses', region: 'eu', tier: 'edge', dispatcher: refuses.pool },
      { name: 'garbage', region: 'us', tier: 'edge', dispatcher: garbage.pool },
      { name: 'silent', region: 'ap', tier: 'shield', dispatcher: silent.pool },
    ],
    { url: '/x' },
    opts,
  );
  assert.equal(report.complete, false);
  assert.equal(report.purged, 5);
  const by = new Map(report.nodes.map((n) => [n.name, n]));
  assert.equal(by.get('ok')!.acked, true);
  assert.equal(by.get('refuses')!.error, 'HTTP 401');
  assert.equal(by.get('garbage')!.error, 'ack is not JSON');
  assert.equal(by.get('silent')!.error, 'timeout');
  assert.ok(by.get('silent')!.ms >= opts.timeoutMs - 2, 'given up at the deadline, not before');
  assert.ok(report.propagationMs >= opts.timeoutMs - 2);
  const err = purgeIncomplete(report);
  assert.equal(err.code, 'ARCHLAB_CDN_PURGE_INCOMPLETE');
  assert.deepEqual(err.details?.missing, ['refuses', 'garbage', 'silent']);
  assert.match(err.message, /3 of 4 nodes: refuses \(HTTP 401\), garbage \(ack is not JSON\), silent \(timeout\)/);
});

test('fan-out: the shield is purged before any edge is asked, so an edge cannot refill from a shield still holding the object', async (t) => {
  const order: string[] = [];
  const stand = async (name: string): Promise<Pool> => {
    const server = http.createServer((req, res) => {
      order.push(`${name} got`);
      // The shield answers late: an edge asked at the same time would have answered first.
      setTimeout(
        () => {
          order.push(`${name} acked`);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"purged":1}');
        },
        name === 'shield' ? 50 : 0,
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    t.after(async () => {
      await pool.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return pool;
  };
  const targets = [
    { name: 'eu-1', region: 'eu', tier: 'edge' as const, dispatcher: await stand('eu-1') },
    { name: 'us-1', region: 'us', tier: 'edge' as const, dispatcher: await stand('us-1') },
    { name: 'shield', region: 'shield', tier: 'shield' as const, dispatcher: await stand('shield') },
  ];
  const report = await fanOutPurge(targets, { url: '/a' }, opts);
  assert.equal(report.complete, true);
  assert.deepEqual(order.slice(0, 2), ['shield got', 'shield acked'], `order: ${order.join(', ')}`);
  assert.equal(order.length, 6);
  assert.deepEqual(report.nodes.map((n) => n.name), ['eu-1', 'us-1', 'shield'], 'reported in the targets order');
});
