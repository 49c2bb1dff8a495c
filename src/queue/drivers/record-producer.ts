/**
 * A Producer for engines that take one record per publish (RabbitMQ streams, JetStream): the option
 * checks, key partitioning (murmur2 as Kafka, round robin for null keys), the set of sends in
 * flight that flush() waits for, and close. A driver supplies the partition count and the publish.
 */
import { checkName } from '../errors.js';
import { partitionForKey } from '../log/murmur2.js';
import type { Acks, Compression, DriverName, Producer, ProducerOptions, ProducerRecord, SendResult } from '../types.js';
import { checkClientCompression, closedError, intOption } from './common.js';
import { checkAcks, checkRecord } from './validate.js';

export abstract class RecordProducer implements Producer {
  protected readonly acks: Acks;
  protected readonly compression: Compression;
  private readonly pending = new Set<Promise<unknown>>();
  private roundRobin = 0;
  private closed = false;

  constructor(
    private readonly driverName: DriverName,
    options: ProducerOptions,
    private readonly onClosed: () => void,
  ) {
    this.acks = checkAcks(options.acks);
    this.compression = checkClientCompression(driverName, options.compression);
    // Accepted for API compatibility and checked, but each record is published on its own.
    intOption('lingerMs', options.lingerMs, 0, 0, 60_000);
    intOption('maxBatchBytes', options.maxBatchBytes, 0, 1, 1 << 30);
  }

  /** Partitions of `topic` (throws ARCHLAB_QUEUE_UNKNOWN_TOPIC). */
  protected abstract partitionCount(topic: string): Promise<number>;
  /** Publishes one checked record to one partition. */
  protected abstract publish(topic: string, partition: number, record: ProducerRecord): Promise<SendResult>;

  send(topic: string, record: ProducerRecord): Promise<SendResult> {
    if (this.closed) return Promise.reject(closedError(`${this.driverName} producer`));
    const p = this.route(topic, record);
    this.pending.add(p);
    const drop = (): void => void this.pending.delete(p);
    p.then(drop, drop);
    return p;
  }

  private async route(topic: string, record: ProducerRecord): Promise<SendResult> {
    checkName('topic', topic);
    const checked = checkRecord(record);
    const n = await this.partitionCount(topic);
    const partition = checked.key !== null ? partitionForKey(checked.key, n) : this.roundRobin++ % n;
    return this.publish(topic, partition, checked);
  }

  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    this.onClosed();
  }
}
