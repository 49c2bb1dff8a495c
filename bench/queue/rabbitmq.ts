/**
 * RabbitMQ through amqplib (AMQP 0-9-1), three queue types:
 *
 * - classic: durable queue, persistent messages (delivery mode 2). A publisher confirm for a
 *   persistent message routed to a durable classic queue comes once the message is on disk;
 * - quorum: Raft-replicated log (one node here); confirmed after the Raft log entry is fsynced;
 * - stream: append-only log consumed from offset 'first'; confirmed once written (and fsynced).
 *
 * The producer uses a confirm channel on one connection; the consumer a channel on a second
 * connection, prefetch = the consumer window, manual ack of every message (streams need acks too,
 * as credit). RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672) says where.
 */
import { readdirSync, readFileSync } from 'node:fs';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { rssOf, type LevelTarget } from './levelling.js';
import type { RunMode, Session, Target } from './runner.js';

export type RabbitQueueType = 'classic' | 'quorum' | 'stream';

export function rabbitUrl(): string {
  return process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
}

/** Undefined when RabbitMQ accepts a connection within `timeoutMs`, else why not. */
export async function rabbitDown(url = rabbitUrl(), timeoutMs = 2000): Promise<string | undefined> {
  try {
    const c = await amqp.connect(url, { timeout: timeoutMs });
    c.on('error', () => undefined);
    await c.close();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const DESCRIPTIONS: Record<RabbitQueueType, { system: string; durability: string }> = {
  classic: { system: 'RabbitMQ classic queue', durability: 'durable queue, persistent messages, confirm after write to disk' },
  quorum: { system: 'RabbitMQ quorum queue', durability: 'Raft log (1 node), confirm after fsync' },
  stream: { system: 'RabbitMQ stream', durability: 'append-only stream, confirm after write (and fsync)' },
};

export interface RabbitOptions {
  url?: string;
  /** Unacked deliveries the consumer may hold (basic.qos prefetch). */
  prefetch: number;
}

class RabbitTarget implements Target {
  readonly system: string;
  readonly durability: string;
  readonly method: string;
  private producerConn: ChannelModel | undefined;
  private consumerConn: ChannelModel | undefined;

  constructor(
    private readonly type: RabbitQueueType,
    private readonly o: RabbitOptions,
  ) {
    this.system = DESCRIPTIONS[type].system;
    this.durability = DESCRIPTIONS[type].durability;
    this.method = `${this.system}: amqplib, confirm channel on one connection (persistent messages), consumer on a second connection with prefetch ${o.prefetch} and a basic.ack per message`;
  }

  private async conns(): Promise<{ p: ChannelModel; c: ChannelModel }> {
    const url = this.o.url ?? rabbitUrl();
    if (!this.producerConn) {
      this.producerConn = await amqp.connect(url);
      this.producerConn.on('error', () => undefined);
    }
    if (!this.consumerConn) {
      this.consumerConn = await amqp.connect(url);
      this.consumerConn.on('error', () => undefined);
    }
    return { p: this.producerConn, c: this.consumerConn };
  }

  async open(name: string, _mode: RunMode): Promise<Session> {
    const { p, c } = await this.conns();
    const pub: ConfirmChannel = await p.createConfirmChannel();
    let channelError: Error | undefined;
    pub.on('error', (err: Error) => {
      channelError = err;
    });
    await pub.assertQueue(name, { durable: true, arguments: { 'x-queue-type': this.type } });
    const type = this.type;
    const prefetch = this.o.prefetch;
    const options = { persistent: true };
    return {
      send(body: Buffer): Promise<void> {
        return new Promise((resolve, reject) => {
          if (channelError) return reject(channelError);
          pub.sendToQueue(name, body, options, (err: unknown) => (err ? reject(err as Error) : resolve()));
        });
      },
      async consume(onMessage) {
        const ch: Channel = await c.createChannel();
        ch.on('error', () => undefined);
        await ch.prefetch(prefetch);
        const onDelivery = (m: ConsumeMessage | null): void => {
          if (!m) return;
          onMessage(m.content);
          ch.ack(m);
        };
        const { consumerTag } = await ch.consume(name, onDelivery, { noAck: false, ...(type === 'stream' ? { arguments: { 'x-stream-offset': 'first' } } : {}) });
        return {
          async stop() {
            await ch.cancel(consumerTag).catch(() => undefined);
            await ch.close().catch(() => undefined);
          },
        };
      },
      async drop() {
        try {
          if (!channelError) await pub.deleteQueue(name);
          else {
            const ch = await p.createChannel();
            ch.on('error', () => undefined);
            await ch.deleteQueue(name);
            await ch.close();
          }
        } finally {
          await pub.close().catch(() => undefined);
        }
      },
    };
  }

  async close(): Promise<void> {
    await this.producerConn?.close().catch(() => undefined);
    await this.consumerConn?.close().catch(() => undefined);
    this.producerConn = this.consumerConn = undefined;
  }
}

export function rabbitTarget(type: RabbitQueueType, o: RabbitOptions): Target {
  return new RabbitTarget(type, o);
}

/** Pid of the local RabbitMQ node (the Erlang VM, beam.smp), from /proc; undefined when not found. */
export function beamPid(): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() === 'beam.smp') return Number(e);
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}

/**
 * RabbitMQ classic durable queue for load levelling: x-max-length with x-overflow reject-publish
 * (a refused publish comes back as a nack on the confirm channel). RabbitMQ counts only ready
 * messages against x-max-length, so depth here is ready (passive declare) + what the consumer
 * holds unacked.
 */
export function rabbitLevelTarget(url = rabbitUrl()): LevelTarget & { close(): Promise<void> } {
  let conns: { p: ChannelModel; c: ChannelModel } | undefined;
  const pid = beamPid();
  return {
    system: 'RabbitMQ classic queue',
    boundCountsUnacked: false,
    rssBytes: () => (pid === undefined ? undefined : rssOf(pid)),
    async open(name, bound) {
      if (!conns) {
        const p = await amqp.connect(url);
        p.on('error', () => undefined);
        const c = await amqp.connect(url);
        c.on('error', () => undefined);
        conns = { p, c };
      }
      const { p, c } = conns;
      const pub = await p.createConfirmChannel();
      pub.on('error', () => undefined);
      const admin = await p.createChannel();
      admin.on('error', () => undefined);
      await pub.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic', 'x-max-length': bound, 'x-overflow': 'reject-publish' } });
      let unacked = 0;
      return {
        publish(body) {
          return new Promise((resolve) => {
            pub.sendToQueue(name, body, { persistent: true }, (err: unknown) => resolve(err ? 'full' : 'ok'));
          });
        },
        async consume(prefetch, onMessage) {
          const ch = await c.createChannel();
          ch.on('error', () => undefined);
          await ch.prefetch(prefetch);
          const { consumerTag } = await ch.consume(
            name,
            (m) => {
              if (!m) return;
              unacked++;
              onMessage(m.content, () => {
                unacked--;
                ch.ack(m);
              });
            },
            { noAck: false },
          );
          return {
            async stop() {
              await ch.cancel(consumerTag).catch(() => undefined);
              await ch.close().catch(() => undefined);
              unacked = 0;
            },
          };
        },
        async depth() {
          return (await admin.checkQueue(name)).messageCount + unacked;
        },
        async drop() {
          await admin.deleteQueue(name).catch(() => undefined);
          await admin.close().catch(() => undefined);
          await pub.close().catch(() => undefined);
        },
      };
    },
    async close() {
      await conns?.p.close().catch(() => undefined);
      await conns?.c.close().catch(() => undefined);
      conns = undefined;
    },
  };
}
