/**
 * NATS JetStream through the `nats` client (v2): one stream per run with file storage and one
 * subject, a durable pull consumer with explicit acks. The producer publishes on one connection
 * (`js.publish`, resolved by the stream's PubAck); the consumer runs `consumer.consume()` on a
 * second connection, `max_messages` = the consumer window, and acks every message.
 *
 * Durability: a PubAck for file storage means the message is written to the stream's block file;
 * the server fsyncs those on its own interval, not per message (compare with acks=leader, not
 * fsync). NATS_URL (default 127.0.0.1:4222) says where.
 */
import { AckPolicy, connect, DeliverPolicy, RetentionPolicy, StorageType, type ConsumerMessages, type NatsConnection } from 'nats';
import type { RunMode, Session, Target } from './runner.js';

export function natsUrl(): string {
  return process.env.NATS_URL ?? '127.0.0.1:4222';
}

/** Undefined when NATS answers with JetStream enabled within `timeoutMs`, else why not. */
export async function natsDown(url = natsUrl(), timeoutMs = 2000): Promise<string | undefined> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: url, timeout: timeoutMs, reconnect: false });
    await (await nc.jetstreamManager({ timeout: timeoutMs })).getAccountInfo();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

export interface NatsOptions {
  url?: string;
  /** Messages the pull consumer asks for at a time, and the most unacked it may hold. */
  prefetch: number;
}

class NatsTarget implements Target {
  readonly system = 'NATS JetStream (file)';
  readonly durability = 'file storage, ack after write (server fsyncs on an interval)';
  readonly method: string;
  private producer: NatsConnection | undefined;
  private consumer: NatsConnection | undefined;

  constructor(private readonly o: NatsOptions) {
    this.method = `${this.system}: nats client, js.publish on one connection (PubAck per message), durable pull consumer on a second connection (consume(), max_messages ${o.prefetch}, explicit ack per message)`;
  }

  private async conns(): Promise<{ p: NatsConnection; c: NatsConnection }> {
    const servers = this.o.url ?? natsUrl();
    this.producer ??= await connect({ servers, reconnect: false });
    this.consumer ??= await connect({ servers, reconnect: false });
    return { p: this.producer, c: this.consumer };
  }

  async open(name: string, _mode: RunMode): Promise<Session> {
    const { p, c } = await this.conns();
    const jsm = await p.jetstreamManager();
    await jsm.streams.add({ name, subjects: [name], storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 });
    const durable = 'bench';
    await jsm.consumers.add(name, { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_ack_pending: Math.max(1000, this.o.prefetch * 2) });
    const js = p.jetstream();
    const prefetch = this.o.prefetch;
    return {
      async send(body: Buffer): Promise<void> {
        await js.publish(name, body);
      },
      async consume(onMessage) {
        const consumer = await c.jetstream().consumers.get(name, durable);
        const messages: ConsumerMessages = await consumer.consume({
          max_messages: prefetch,
          callback: (m) => {
            onMessage(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
            m.ack();
          },
        });
        return {
          async stop() {
            await messages.close().catch(() => undefined);
          },
        };
      },
      async drop() {
        await jsm.streams.delete(name);
      },
    };
  }

  async close(): Promise<void> {
    await this.producer?.drain().catch(() => undefined);
    await this.consumer?.drain().catch(() => undefined);
    this.producer = this.consumer = undefined;
  }
}

export function natsTarget(o: NatsOptions): Target {
  return new NatsTarget(o);
}
