/**
 * A loopback TCP relay in front of a real server (Redis 6379, PostgreSQL 5432, ...) that a test can
 * cut, blackhole and restore, so faults are injected without ever stopping the machine's server.
 * Also `closedPort()`, a port nothing listens on (a server that is not there).
 */
import * as net from 'node:net';

export class FaultProxy {
  /** 'pass' forwards, 'refuse' resets new connections, 'blackhole' keeps them open and drops all traffic. */
  mode: 'pass' | 'refuse' | 'blackhole' = 'pass';
  /** The port the proxy listens on (127.0.0.1), known once start() resolves. */
  port = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  /** `target`: where traffic goes, e.g. `{ port: 6379 }`; host defaults to 127.0.0.1. */
  constructor(target: { port: number; host?: string }) {
    const upstreamAt = { port: target.port, host: target.host ?? '127.0.0.1' };
    this.server = net.createServer((client) => {
      if (this.mode === 'refuse') {
        client.destroy();
        return;
      }
      const upstream = net.connect(upstreamAt);
      this.sockets.add(client).add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('data', (d) => this.mode === 'pass' && upstream.write(d));
      upstream.on('data', (d) => this.mode === 'pass' && client.write(d));
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  /** Every connection reset, new ones refused: the server went away. */
  cut(): void {
    this.mode = 'refuse';
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /** Connections stay open but nothing comes back: a half-open link or a frozen server. */
  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** The server is back: new connections are forwarded (and, after a blackhole, open ones again). */
  restore(): void {
    this.mode = 'pass';
  }

  /** Resets every connection and stops listening. */
  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/** A loopback port that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
