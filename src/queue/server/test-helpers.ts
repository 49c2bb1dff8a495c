/**
 * Helpers for tests of the queue server and client (test/queue/server-*.test.ts, client-*.test.ts):
 * a server on a free loopback port over a temp data dir that is removed after the test, and a raw
 * protocol connection for sending frames a well-behaved client never would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connectQueue, type ConnectQueueOptions, type QueueClient } from '../client/client.js';
import type { QueueServerConfigInput } from '../config.js';
import { FrameDecoder, type Frame } from '../protocol/frame.js';
import { decodeError, encodeHello } from '../protocol/messages.js';
import { startQueueServer, type QueueServerHandle, type QueueServerOptions } from './server.js';

export interface TestServer {
  server: QueueServerHandle;
  dataDir: string;
  port: number;
  /** A client of this server, closed after the test. */
  connect(options?: Partial<ConnectQueueOptions>): Promise<QueueClient>;
}

/** A temp dir removed after the test (even when it fails); hooks run in the order added, so add this one first. */
export function tempDir(t: TestContext, prefix = 'archlab-queue-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The config every test server starts from: loopback, port 0, quiet, memory-friendly fsync. */
export function testConfig(dataDir: string, overrides: Partial<QueueServerConfigInput> = {}): QueueServerConfigInput {
  return {
    listeners: [{ port: 0 }],
    dataDir,
    log: { level: 'silent' },
    metrics: { defaultMetrics: false },
    ...overrides,
    broker: { fsync: 'never', ...overrides.broker },
  };
}

export async function startTestServer(t: TestContext, overrides: Partial<QueueServerConfigInput> = {}, options: QueueServerOptions = {}): Promise<TestServer> {
  const own = overrides.dataDir === undefined;
  const dataDir = own ? mkdtempSync(join(tmpdir(), 'archlab-queue-test-')) : (overrides.dataDir as string);
  let server: QueueServerHandle;
  try {
    server = await startQueueServer(testConfig(dataDir, overrides), options);
  } catch (err) {
    if (own) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const clients: QueueClient[] = [];
  // One hook, in order: clients, server, data dir (node:test runs hooks in the order they were added).
  t.after(async () => {
    await Promise.allSettled(clients.map((c) => c.close(100)));
    await server.close();
    if (own) rmSync(dataDir, { recursive: true, force: true });
  });
  const port = server.address.port;
  return {
    server,
    dataDir,
    port,
    connect: async (options = {}) => {
      const c = await connectQueue({ host: '127.0.0.1', port, requestTimeoutMs: 10_000, ...options });
      clients.push(c);
      return c;
    },
  };
}

/** A raw protocol connection: write any bytes, read frames one by one. */
export class RawConnection {
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this.frames.push({ ...f, payload: Buffer.from(f.payload) });
      this.waiter?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static open(t: TestContext, port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawConnection(s)));
      s.once('error', reject);
      t.after(() => s.destroy());
    });
  }

  /** Opens and says HELLO (with `token`), checking the answer is HELLO_OK. */
  static async hello(t: TestContext, port: number, token = ''): Promise<RawConnection> {
    const c = await RawConnection.open(t, port);
    c.send(encodeHello(1, { version: 1, token, clientId: 'raw' }));
    const f = await c.next();
    if (f === 'closed' || f.type !== 0x81) throw new TypeError(`expected HELLO_OK, got ${f === 'closed' ? 'close' : `0x${f.type.toString(16)}`}`);
    return c;
  }

  send(...bufs: Buffer[]): void {
    for (const b of bufs) this.socket.write(b);
  }

  /** The next frame, or 'closed' once the server closed and no frame is left; rejects after timeoutMs. */
  async next(timeoutMs = 5000): Promise<Frame | 'closed'> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f !== undefined) return f;
      if (this.closed) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) throw new TypeError(`no frame within ${timeoutMs}ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  /** Reads until the connection closes; returns the error frames seen, decoded. */
  async errorsUntilClosed(timeoutMs = 5000): Promise<{ requestId: number; code: string }[]> {
    const out: { requestId: number; code: string }[] = [];
    for (;;) {
      const f = await this.next(timeoutMs);
      if (f === 'closed') return out;
      if (f.type === 0x7f) out.push({ requestId: f.requestId, code: decodeError(f.payload).code });
    }
  }
}
