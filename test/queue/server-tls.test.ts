/** TLS on the TCP listener: a round trip with a self-signed certificate made by the openssl CLI. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { connectQueue } from '../../src/queue/client/index.js';
import { isQueueError } from '../../src/queue/errors.js';
import { startTestServer, tempDir } from '../../src/queue/server/test-helpers.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('TLS: produce, fetch and publish over TLS 1.2+; a plain TCP client cannot talk to it', { skip: hasOpenssl() ? false : 'openssl CLI not installed' }, async (t) => {
  const dir = tempDir(t, 'archlab-queue-tls-');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    { stdio: 'ignore', timeout: 20_000 },
  );
  const s = await startTestServer(t, { tls: { cert, key }, topics: { declare: [{ name: 't' }] } });
  const c = await s.connect({ tls: { ca: readFileSync(cert) } });
  const socket = (c as unknown as { wire: { socket: { getProtocol(): string } } }).wire.socket;
  assert.match(socket.getProtocol(), /^TLSv1\.[23]$/);
  await c.append({ topic: 't', partition: 0, acks: 'leader', records: [{ key: null, value: Buffer.from('secret') }] });
  assert.equal((await c.fetch({ topic: 't', partition: 0, offset: 0 })).records[0]!.value!.toString(), 'secret');
  await c.declareQueue('q', { durable: false });
  assert.deepEqual(await c.publish('', 'q', { body: Buffer.from('x') }), { routed: 1 });

  // Without the CA the certificate is not trusted.
  await assert.rejects(connectQueue({ host: '127.0.0.1', port: s.port, tls: true, connectTimeoutMs: 3000 }), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_DISCONNECTED'));
  // Plain TCP: the server waits for a TLS ClientHello, the client for HELLO_OK; neither comes.
  await assert.rejects(connectQueue({ host: '127.0.0.1', port: s.port, connectTimeoutMs: 500 }), (e: unknown) => isQueueError(e, 'ARCHLAB_QUEUE_DISCONNECTED') || isQueueError(e, 'ARCHLAB_QUEUE_TIMEOUT'));
});
