/**
 * One client API (QueueDriver: producer, consumer, publish, subscribe, ack/nack) on every engine:
 *
 * | driver   | engine                                   | opened by                          |
 * | -------- | ---------------------------------------- | ---------------------------------- |
 * | embedded | src/queue/log + src/queue/broker, here   | embeddedDriver({ dataDir })        |
 * | archlab  | the archlab queue server over TCP        | archlabDriver({ host, port })      |
 * | rabbitmq | RabbitMQ (amqplib): queues and streams   | rabbitmqDriver({ url })            |
 * | nats     | NATS JetStream (nats v2)                 | natsDriver({ servers })            |
 *
 * `driver.capabilities` says what each engine does; where one cannot do something it refuses with
 * ARCHLAB_QUEUE_UNSUPPORTED. The module comment of each driver says where semantics differ, and
 * conformance.ts checks every driver against the same cases.
 *
 * Shared semantics:
 * - Consumer.run(handler): the handler runs for one record at a time (never concurrently, across
 *   partitions too), in partition order; a record counts as committed only after its handler
 *   resolved (at-least-once). A handler that throws stops the consumer: run() rejects with the error.
 * - subscribe(queue, { prefetch }, handler): the handler is called for each delivery as it arrives,
 *   without waiting for the previous call, with at most `prefetch` (default 100) messages unsettled;
 *   settle each with ack() or nack({ requeue }) (requeue defaults to true); a second ack/nack fails
 *   with ARCHLAB_QUEUE_UNKNOWN_DELIVERY. A handler that throws before settling has its message
 *   nacked with requeue.
 * - An option the engine cannot honour is refused (ARCHLAB_QUEUE_UNSUPPORTED), never ignored; the
 *   exceptions are tuning knobs with no meaning there (lingerMs and maxBatchBytes on RabbitMQ and
 *   NATS, where each record is one message).
 */
import { z } from 'zod';
import type { DriverName, QueueDriver } from '../types.js';
import { archlabDriver, type ArchlabDriverOptions } from './archlab.js';
import { badArgument } from './common.js';
import { embeddedDriver, type EmbeddedDriverOptions } from './embedded.js';
import { natsDriver, type NatsDriverOptions } from './nats.js';
import { rabbitmqDriver, type RabbitmqDriverOptions } from './rabbitmq.js';

export { archlabDriver, type ArchlabDriverOptions } from './archlab.js';
export { embeddedDriver, type EmbeddedDriverOptions } from './embedded.js';
export { engineDriver, ENGINE_CAPABILITIES, type EngineDriver, type EngineDriverOptions } from './engine.js';
export { EngineProducer, type EngineProducerLimits, type EngineProducerOptions } from './engine-producer.js';
export { EngineConsumer, type EngineConsumerLimits, type EngineConsumerOptions } from './engine-consumer.js';
export { rabbitmqDriver, mapAmqpError, RABBITMQ_CAPABILITIES, type RabbitmqDriverOptions } from './rabbitmq.js';
export { natsDriver, natsToken, mapNatsError, NATS_CAPABILITIES, type NatsDriverOptions } from './nats.js';
export { topicMatches, headersMatch, QUEUE_DEFAULTS, TOPIC_DEFAULTS } from './common.js';

/** Which driver to open, and its options. */
export type DriverSpec =
  | ({ kind: 'embedded' } & EmbeddedDriverOptions)
  | ({ kind: 'archlab' } & ArchlabDriverOptions)
  | ({ kind: 'rabbitmq' } & RabbitmqDriverOptions)
  | ({ kind: 'nats' } & NatsDriverOptions);

/** Opens the driver `spec.kind` with the rest of `spec` as its options. */
export async function openDriver(spec: DriverSpec): Promise<QueueDriver> {
  switch (spec?.kind) {
    case 'embedded':
      return embeddedDriver(spec);
    case 'archlab':
      return archlabDriver(spec);
    case 'rabbitmq':
      return rabbitmqDriver(spec);
    case 'nats':
      return natsDriver(spec);
    default:
      throw badArgument(`driver kind must be one of embedded, archlab, rabbitmq, nats; got ${JSON.stringify((spec as { kind?: unknown } | undefined)?.kind)}`);
  }
}

export const DRIVER_NAMES: readonly DriverName[] = ['embedded', 'archlab', 'rabbitmq', 'nats'];

/**
 * A driver as a config file names it (the connection part; tuning stays in code):
 *   driver: { kind: nats, servers: ["127.0.0.1:4222"] }
 * Parse with core/config's parseConfig/loadConfig, then pass the result to openDriver.
 */
export const zDriverSpec = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('embedded'),
    /** Directory of the embedded log and broker. Required. */
    dataDir: z.string().min(1),
  }),
  z.strictObject({
    kind: z.literal('archlab'),
    /** Host of the archlab queue server. Default 127.0.0.1. */
    host: z.string().min(1).default('127.0.0.1'),
    /** Port of its binary protocol listener. Required. */
    port: z.int().min(1).max(65_535),
    /** The server's auth token, when it has one. */
    token: z.string().min(1).optional(),
  }),
  z.strictObject({
    kind: z.literal('rabbitmq'),
    /** amqp:// or amqps:// URL. Default amqp://guest:guest@127.0.0.1:5672. */
    url: z.string().regex(/^amqps?:\/\//, 'expected an amqp:// or amqps:// URL').default('amqp://guest:guest@127.0.0.1:5672'),
  }),
  z.strictObject({
    kind: z.literal('nats'),
    /** "host:port" or a list of them. Default 127.0.0.1:4222. */
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(16)]).default('127.0.0.1:4222'),
  }),
]);
