/**
 * Argument checks every driver applies the same way before touching its engine, so a bad argument
 * fails with ARCHLAB_QUEUE_BAD_ARGUMENT whatever the engine would have said.
 */
import type { Acks, ExchangeConfig, ExchangeType, ProducerRecord, PublishMessage } from '../types.js';
import { badArgument } from './common.js';

const ACKS: readonly Acks[] = ['none', 'leader', 'fsync'];
const EXCHANGE_TYPES: readonly ExchangeType[] = ['direct', 'topic', 'fanout', 'headers'];

export function checkAcks(acks: Acks | undefined): Acks {
  if (acks === undefined) return 'leader';
  if (!ACKS.includes(acks)) throw badArgument(`acks must be one of ${ACKS.join(', ')}, got ${JSON.stringify(acks)}`);
  return acks;
}

export function checkExchangeConfig(config: Partial<ExchangeConfig> | undefined): ExchangeConfig {
  const type = config?.type ?? 'direct';
  if (!EXCHANGE_TYPES.includes(type)) throw badArgument(`exchange type must be one of ${EXCHANGE_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
  const durable = config?.durable ?? true;
  if (typeof durable !== 'boolean') throw badArgument('exchange durable must be a boolean');
  return { type, durable };
}

function isNonNegativeInt(n: unknown): boolean {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

export function checkPublishMessage(message: PublishMessage): void {
  if (message === null || typeof message !== 'object' || !Buffer.isBuffer(message.body)) throw badArgument('publish needs a message with a Buffer body');
  if (message.headers !== undefined) {
    if (message.headers === null || typeof message.headers !== 'object') throw badArgument('message headers must be an object of strings');
    for (const [key, value] of Object.entries(message.headers)) {
      if (typeof value !== 'string') throw badArgument(`message header ${JSON.stringify(key)} must be a string`);
    }
  }
  if (message.priority !== undefined && (!isNonNegativeInt(message.priority) || message.priority > 255)) {
    throw badArgument(`priority must be an integer in [0, 255], got ${String(message.priority)}`);
  }
  if (message.ttlMs !== undefined && !isNonNegativeInt(message.ttlMs)) throw badArgument(`ttlMs must be a non-negative integer, got ${String(message.ttlMs)}`);
  if (message.delayMs !== undefined && !isNonNegativeInt(message.delayMs)) throw badArgument(`delayMs must be a non-negative integer, got ${String(message.delayMs)}`);
  if (message.messageId !== undefined && (typeof message.messageId !== 'string' || message.messageId.length > 255)) {
    throw badArgument('messageId must be a string of at most 255 characters');
  }
}

/** Checks a record; a missing key (undefined) is read as null. */
export function checkRecord(record: ProducerRecord): ProducerRecord {
  if (record === null || typeof record !== 'object') throw badArgument('send needs a record object');
  if (record.key === undefined) record = { ...record, key: null };
  if (record.key !== null && !Buffer.isBuffer(record.key)) throw badArgument('record key must be a Buffer or null');
  if (record.value !== null && !Buffer.isBuffer(record.value)) throw badArgument('record value must be a Buffer or null');
  if (record.timestamp !== undefined && !isNonNegativeInt(record.timestamp)) throw badArgument('record timestamp must be ms since the epoch');
  if (record.headers !== undefined) {
    if (!Array.isArray(record.headers)) throw badArgument('record headers must be an array');
    for (const h of record.headers) {
      if (typeof h?.key !== 'string' || !Buffer.isBuffer(h.value)) throw badArgument('each record header needs a string key and a Buffer value');
    }
  }
  return record;
}
