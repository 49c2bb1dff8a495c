import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { postgresSource } from './postgres.js';

/** A loopback port with nothing listening: bind one, read it back, close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// Timeouts of a minute and a test timeout of 10 s: the refusal itself must fail the call, not a timer.
test('PostgreSQL down (nothing on the port): every op fails at the refusal with a retryable SOURCE_FAILED naming key and op', { timeout: 10_000 }, async (t) => {
  const port = await closedPort();
  const s = postgresSource<unknown>({ connectionString: `postgres://postgres@127.0.0.1:${port}/test`, table: 'kv', connectionTimeoutMs: 60_000, queryTimeoutMs: 60_000 });
  t.after(() => s.close!());
  await assert.rejects(s.load('k1'), (err: unknown) => {
    assert.ok(isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED'), String(err));
    assert.equal(err.retryable, true);
    assert.deepEqual(err.details, { source: 'postgres:kv', op: 'load', key: 'k1' });
    assert.match(err.message, /ECONNREFUSED|connect/);
    return true;
  });
  await assert.rejects(s.write('k2', 1), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.op === 'write');
  await assert.rejects(s.writeBatch!([{ op: 'put', key: 'a', value: 1 }, { op: 'delete', key: 'b' }]), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.op === 'writeBatch');
});

test('a server that accepts but never answers fails at the connection timeout, not never', async (t) => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((sock) => sockets.add(sock));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  const s = postgresSource<unknown>({ connectionString: `postgres://postgres@127.0.0.1:${port}/test`, table: 'kv', connectionTimeoutMs: 100, queryTimeoutMs: 100 });
  t.after(async () => {
    await s.close!();
    for (const sock of sockets) sock.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  await assert.rejects(s.load('k'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_SOURCE_FAILED') && err.details?.key === 'k');
});

test('names are validated and the pool/connectionString choice is explicit', () => {
  const cs = 'postgres://postgres@127.0.0.1:1/test';
  for (const bad of [{ table: 'kv;--' }, { table: 'kv', keyColumn: 'a b' }, { table: 'kv', valueColumns: ['x', 'y"'] }, { table: 'kv', queryTimeoutMs: 0 }, { table: 'kv', maxConnections: 1.5 }]) {
    assert.throws(() => postgresSource({ connectionString: cs, ...bad }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'), JSON.stringify(bad));
  }
  assert.throws(() => postgresSource({ table: 'kv' }), (err: unknown) => isArchlabError(err, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('after close() calls fail with ARCHLAB_CACHE_CLOSED', async () => {
  const s = postgresSource<unknown>({ connectionString: 'postgres://postgres@127.0.0.1:1/test', table: 'kv' });
  await s.close!();
  await s.close!();
  await assert.rejects(s.load('k'), (err: unknown) => isArchlabError(err, 'ARCHLAB_CACHE_CLOSED'));
});
