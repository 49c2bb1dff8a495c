/**
 * The HTTP + SSE gateway, for the dashboard and for curl users. JSON in and out, errors as
 * `{ error: { code, message } }`:
 *
 *   POST /topics/:t/records                 append: a JSON record or array of records, or a raw body
 *                                           (one record, key from ?key=); ?partition= ?acks=
 *   GET  /topics                            list topics
 *   GET  /topics/:t                         describe one
 *   GET  /topics/:t/partitions/:p/records   ?offset= (number | earliest | latest) &max= &wait= (ms)
 *   GET  /topics/:t/stream                  SSE: ?partition= &offset=; each record is an event whose
 *                                           id is its offset, so Last-Event-ID resumes after it
 *   POST /exchanges/:e/publish              the raw body is the message; ?routingKey= &priority=
 *                                           &ttlMs= &delayMs= &messageId= &mandatory= &header.<name>=
 *                                           (`amq.default` is the default exchange "")
 *   GET  /queues                            stats of every queue
 *   GET  /queues/:q                         stats of one
 *   GET  /queues/:q/stream                  SSE: deliveries from the queue. Each delivery is acked
 *                                           once its event has been written to the socket (handed to
 *                                           the kernel): a client that dies right after may lose the
 *                                           event. At-most-once for the stream's reader, so use the
 *                                           TCP protocol where every message matters.
 *
 * Bounded: bodies (limits.maxBody), headers, request and idle timeouts, SSE streams
 * (gateway.maxSseClients, 503 past it), records per read (gateway.maxFetchRecords). With
 * `auth.token` set, every route needs `Authorization: Bearer <token>`.
 */
import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { Logger } from 'pino';
import { SSE_HEADERS, sseEvent } from '../../core/http.js';
import { isArchlabError } from '../../core/errors.js';
import { listen, type ServerAddress, type ServerHandle } from '../../core/lifecycle.js';
import { HttpError, readBody, sendError, sendJson } from '../../core/metrics.js';
import type { LimitsConfig, TimeoutsConfig } from '../../core/config.js';
import type { GatewayConfig } from '../config.js';
import type { Acks, BrokerApi, Delivery, LogRecord, ProducerRecord, PublishMessage, SeekTarget, Subscription } from '../types.js';
import { digestToken, type LogEngine } from './connection.js';
import type { ServerCounters } from './metrics.js';

export interface GatewayOptions {
  config: GatewayConfig;
  limits: LimitsConfig;
  timeouts: TimeoutsConfig;
  token: string | undefined;
  maxFetchWaitMs: number;
  log: LogEngine;
  broker: BrokerApi;
  counters: ServerCounters;
  logger: Logger;
}

export interface GatewayHandle {
  address: ServerAddress;
  close(): Promise<void>;
}

/** Records per POST at most. */
const MAX_RECORDS_PER_POST = 10_000;
/** Bytes of batches one GET .../records reads from the log. */
const FETCH_MAX_BYTES = 1024 * 1024;
const SSE_EVENT_HIGH_WATER = 1024 * 1024;

/** HTTP status of a typed error. */
export function httpStatusFor(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (!isArchlabError(err)) return 500;
  switch (err.code) {
    case 'ARCHLAB_QUEUE_UNKNOWN_TOPIC':
    case 'ARCHLAB_QUEUE_UNKNOWN_PARTITION':
    case 'ARCHLAB_QUEUE_UNKNOWN_QUEUE':
    case 'ARCHLAB_QUEUE_UNKNOWN_EXCHANGE':
      return 404;
    case 'ARCHLAB_QUEUE_BAD_ARGUMENT':
    case 'ARCHLAB_QUEUE_OFFSET_OUT_OF_RANGE':
    case 'ARCHLAB_INVALID_ARGUMENT':
      return 400;
    case 'ARCHLAB_QUEUE_MESSAGE_TOO_LARGE':
      return 413;
    case 'ARCHLAB_QUEUE_DECLARE_MISMATCH':
      return 409;
    case 'ARCHLAB_QUEUE_UNAUTHORIZED':
      return 401;
    case 'ARCHLAB_QUEUE_UNSUPPORTED':
      return 501;
    case 'ARCHLAB_QUEUE_CLOSED':
      return 503;
    default:
      return err.retryable ? 503 : 500;
  }
}

function bad(message: string): HttpError {
  return new HttpError(400, 'ARCHLAB_QUEUE_BAD_ARGUMENT', message);
}

function intParam(url: URL, name: string, dflt: number | undefined, min: number, max: number): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return dflt;
  if (!/^\d+$/.test(raw)) throw bad(`?${name}= must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw bad(`?${name}= must be ${min}..${max}, got ${n}`);
  return n;
}

function acksParam(url: URL): Acks {
  const a = url.searchParams.get('acks') ?? 'leader';
  if (a !== 'none' && a !== 'leader' && a !== 'fsync') throw bad(`?acks= must be none, leader or fsync, got ${JSON.stringify(a)}`);
  return a;
}

function seekParam(raw: string | null, dflt: SeekTarget): SeekTarget {
  if (raw === null || raw === '') return dflt;
  if (raw === 'earliest' || raw === 'latest') return { kind: raw };
  if (/^\d+$/.test(raw)) return { kind: 'offset', offset: Number(raw) };
  throw bad(`?offset= must be a number, earliest or latest, got ${JSON.stringify(raw)}`);
}

type Encoding = 'utf8' | 'base64';

function encodingParam(url: URL): Encoding {
  const e = url.searchParams.get('encoding') ?? 'utf8';
  if (e !== 'utf8' && e !== 'base64') throw bad(`?encoding= must be utf8 or base64, got ${JSON.stringify(e)}`);
  return e;
}

function recordJson(r: LogRecord, enc: Encoding): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const h of r.headers) headers[h.key] = h.value.toString(enc);
  return {
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key === null ? null : r.key.toString(enc),
    value: r.value === null ? null : r.value.toString(enc),
    headers,
  };
}

function deliveryJson(d: Delivery): Record<string, unknown> {
  return {
    queue: d.queue,
    messageId: d.messageId,
    body: d.body.toString('utf8'),
    headers: d.headers,
    priority: d.priority,
    deliveryCount: d.deliveryCount,
    redelivered: d.redelivered,
    publishedAt: d.publishedAt,
  };
}

interface PostedRecord {
  record: ProducerRecord;
  partition: number | undefined;
}

function parseJsonRecords(body: Buffer, enc: Encoding): PostedRecord[] {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw bad(`body is not JSON: ${(err as Error).message}`);
  }
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw bad('no records in the body');
  if (list.length > MAX_RECORDS_PER_POST) throw bad(`at most ${MAX_RECORDS_PER_POST} records per request, got ${list.length}`);
  const bytes = (s: unknown, what: string): Buffer | null => {
    if (s === null || s === undefined) return null;
    if (typeof s === 'string') return Buffer.from(s, enc);
    if (enc === 'base64') throw bad(`${what} must be a base64 string with ?encoding=base64`);
    return Buffer.from(JSON.stringify(s), 'utf8');
  };
  return list.map((item: unknown, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw bad(`record ${i}: expected an object like {"key": "k", "value": ...}`);
    const o = item as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!['key', 'value', 'headers', 'timestamp', 'partition'].includes(k)) throw bad(`record ${i}: unknown field ${JSON.stringify(k)} (have key, value, headers, timestamp, partition)`);
    }
    if (o.key !== undefined && o.key !== null && typeof o.key !== 'string') throw bad(`record ${i}: key must be a string or null`);
    const record: ProducerRecord = { key: bytes(o.key, 'key'), value: o.value === undefined ? null : bytes(o.value, 'value') };
    if (o.headers !== undefined) {
      if (o.headers === null || typeof o.headers !== 'object' || Array.isArray(o.headers)) throw bad(`record ${i}: headers must be an object of strings`);
      record.headers = Object.entries(o.headers as Record<string, unknown>).map(([k, hv]) => {
        if (typeof hv !== 'string') throw bad(`record ${i}: header ${JSON.stringify(k)} must be a string`);
        return { key: k, value: Buffer.from(hv, enc) };
      });
    }
    if (o.timestamp !== undefined) {
      if (!Number.isSafeInteger(o.timestamp)) throw bad(`record ${i}: timestamp must be an integer (ms since the epoch)`);
      record.timestamp = o.timestamp as number;
    }
    let partition: number | undefined;
    if (o.partition !== undefined) {
      if (!Number.isInteger(o.partition) || (o.partition as number) < 0) throw bad(`record ${i}: partition must be a whole number`);
      partition = o.partition as number;
    }
    return { record, partition };
  });
}

export async function startGateway(o: GatewayOptions): Promise<GatewayHandle> {
  const { log, broker, counters, logger, config } = o;
  const tokenDigest = o.token === undefined ? undefined : digestToken(o.token);
  const streams = new Set<() => void>();
  let closing = false;

  const authorized = (req: http.IncomingMessage): boolean => {
    if (tokenDigest === undefined) return true;
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(digestToken(m[1]!), tokenDigest);
  };

  const openStream = (res: http.ServerResponse): void => {
    if (counters.sseClients >= config.maxSseClients) {
      throw new HttpError(503, 'ARCHLAB_QUEUE_LIMIT', `at most ${config.maxSseClients} SSE streams at once`);
    }
    res.writeHead(200, { ...SSE_HEADERS, Connection: 'keep-alive' });
    res.write(': archlab queue stream\n\n');
  };

  /** Writes an SSE event; resolves once the socket took it (or at once when it has room). */
  const writeEvent = (res: http.ServerResponse, event: string, id: string | undefined, data: unknown): Promise<void> => {
    const text = sseEvent(event, data, id);
    return new Promise<void>((resolve) => {
      if (res.writableEnded || res.destroyed) {
        resolve();
      } else if (res.writableLength > SSE_EVENT_HIGH_WATER) {
        res.once('drain', () => resolve());
        res.write(text);
      } else {
        res.write(text, () => resolve());
      }
    });
  };

  const topicStream = async (req: http.IncomingMessage, res: http.ServerResponse, topic: string, url: URL): Promise<void> => {
    const partition = intParam(url, 'partition', 0, 0, 1_000_000)!;
    const lastId = req.headers['last-event-id'];
    let offset: number;
    if (typeof lastId === 'string' && /^\d+$/.test(lastId.trim())) offset = Number(lastId.trim()) + 1;
    else offset = await log.resolveSeek(topic, partition, seekParam(url.searchParams.get('offset'), { kind: 'latest' }));
    openStream(res);
    counters.sseClients++;
    let open = true;
    // Ends the response at once (client gone or server closing); the loop notices after its fetch.
    const stop = (): void => {
      if (!open) return;
      open = false;
      res.end();
    };
    streams.add(stop);
    res.on('close', stop);
    const waitMs = Math.max(1, Math.min(config.sseHeartbeatMs, o.maxFetchWaitMs));
    try {
      while (open && !closing) {
        const r = await log.fetch({ topic, partition, offset, maxBytes: FETCH_MAX_BYTES, maxWaitMs: waitMs });
        if (!open || closing) break;
        counters.fetches++;
        if (r.records.length === 0) res.write(': ping\n\n');
        for (const rec of r.records) {
          if (!open) break;
          await writeEvent(res, 'record', String(rec.offset), recordJson(rec, 'utf8'));
        }
        // Compaction and retention leave gaps: continue from where the log says.
        offset = Math.max(r.nextOffset, offset);
      }
    } catch (err) {
      if (open) await writeEvent(res, 'error', undefined, { code: isArchlabError(err) ? err.code : 'ARCHLAB_INTERNAL', message: (err as Error).message });
    } finally {
      counters.sseClients--;
      streams.delete(stop);
      stop();
    }
  };

  const queueStream = async (res: http.ServerResponse, queue: string): Promise<void> => {
    await broker.queueStats(queue); // 404 before the stream starts
    openStream(res);
    counters.sseClients++;
    const unacked = new Set<number>();
    let sub: Subscription | undefined;
    let ended = false;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const stop = (): void => {
      if (ended) return;
      ended = true;
      finish();
    };
    streams.add(stop);
    res.on('close', stop);
    const heartbeat = setInterval(() => {
      if (!ended) res.write(': ping\n\n');
    }, config.sseHeartbeatMs);
    heartbeat.unref();
    try {
      sub = await broker.consume(queue, {
        prefetch: config.ssePrefetch,
        onDelivery: (d) => {
          if (ended) {
            void broker.nack(d.deliveryTag, { requeue: true }).catch(() => undefined);
            return;
          }
          unacked.add(d.deliveryTag);
          counters.deliveries++;
          void writeEvent(res, 'delivery', String(d.deliveryTag), deliveryJson(d)).then(() => {
            // Written to the socket: auto-ack (see the header comment: at-most-once for the reader).
            if (!unacked.delete(d.deliveryTag)) return;
            counters.acks++;
            broker.ack(d.deliveryTag).catch((err: unknown) => logger.debug({ err }, 'SSE auto-ack failed'));
          });
        },
      });
      await done;
    } finally {
      clearInterval(heartbeat);
      counters.sseClients--;
      streams.delete(stop);
      ended = true;
      await sub?.cancel().catch(() => undefined);
      const left = [...unacked];
      unacked.clear();
      await Promise.allSettled(left.map((t) => broker.nack(t, { requeue: true })));
      res.end();
    }
  };

  const appendRecords = async (req: http.IncomingMessage, res: http.ServerResponse, topic: string, url: URL): Promise<void> => {
    const body = await readBody(req, o.limits.maxBodyBytes);
    const enc = encodingParam(url);
    const acks = acksParam(url);
    const forced = intParam(url, 'partition', undefined, 0, 1_000_000);
    const isJson = /^application\/json\b/i.test(req.headers['content-type'] ?? '');
    const posted: PostedRecord[] = isJson
      ? parseJsonRecords(body, enc)
      : [{ record: { key: url.searchParams.has('key') ? Buffer.from(url.searchParams.get('key')!, 'utf8') : null, value: body }, partition: undefined }];
    // Group by partition: one append (one batch) per partition, in the order given.
    const groups = new Map<number, { records: ProducerRecord[]; index: number[] }>();
    for (let i = 0; i < posted.length; i++) {
      const p = posted[i]!;
      const partition = forced ?? p.partition ?? (await log.partitionFor(topic, p.record.key));
      let g = groups.get(partition);
      if (g === undefined) groups.set(partition, (g = { records: [], index: [] }));
      g.records.push(p.record);
      g.index.push(i);
    }
    const out = new Array<{ partition: number; offset: number }>(posted.length);
    await Promise.all(
      [...groups].map(async ([partition, g]) => {
        const r = await log.append({ topic, partition, records: g.records, acks });
        counters.appendedBatches++;
        if (!r.duplicate) counters.appendedRecords += g.records.length;
        g.index.forEach((at, k) => (out[at] = { partition, offset: r.baseOffset + k }));
      }),
    );
    sendJson(res, 200, { topic, records: out });
  };

  const readRecords = async (res: http.ServerResponse, topic: string, partition: number, url: URL): Promise<void> => {
    const enc = encodingParam(url);
    const max = intParam(url, 'max', Math.min(100, config.maxFetchRecords), 1, config.maxFetchRecords)!;
    const wait = intParam(url, 'wait', 0, 0, o.maxFetchWaitMs)!;
    const offset = await log.resolveSeek(topic, partition, seekParam(url.searchParams.get('offset'), { kind: 'earliest' }));
    const r = await log.fetch({ topic, partition, offset, maxBytes: FETCH_MAX_BYTES, maxWaitMs: wait });
    counters.fetches++;
    const records = r.records.slice(0, max);
    const last = records[records.length - 1];
    const nextOffset = records.length < r.records.length && last !== undefined ? last.offset + 1 : r.nextOffset;
    sendJson(res, 200, {
      topic,
      partition,
      records: records.map((rec) => recordJson(rec, enc)),
      nextOffset,
      highWatermark: r.highWatermark,
      logStartOffset: r.logStartOffset,
    });
  };

  const publish = async (req: http.IncomingMessage, res: http.ServerResponse, exchange: string, url: URL): Promise<void> => {
    const body = await readBody(req, o.limits.maxBodyBytes);
    const q = url.searchParams;
    const message: PublishMessage = { body };
    const headers: Record<string, string> = {};
    for (const [k, v] of q) if (k.startsWith('header.') && k.length > 7) headers[k.slice(7)] = v;
    const ct = req.headers['content-type'];
    if (ct !== undefined && headers['content-type'] === undefined) headers['content-type'] = ct;
    if (Object.keys(headers).length > 0) message.headers = headers;
    const priority = intParam(url, 'priority', undefined, 0, 255);
    if (priority !== undefined) message.priority = priority;
    const ttlMs = intParam(url, 'ttlMs', undefined, 0, 0xffffffff);
    if (ttlMs !== undefined) message.ttlMs = ttlMs;
    const delayMs = intParam(url, 'delayMs', undefined, 0, 0xffffffff);
    if (delayMs !== undefined) message.delayMs = delayMs;
    const messageId = q.get('messageId');
    if (messageId !== null && messageId !== '') message.messageId = messageId;
    const mandatory = q.get('mandatory') === 'true';
    const r = await broker.publish(exchange === 'amq.default' ? '' : exchange, q.get('routingKey') ?? '', message, mandatory ? { mandatory } : undefined);
    counters.published++;
    sendJson(res, 200, r);
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const parts = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';
    const allow = (m: string): never => {
      throw new HttpError(405, 'ARCHLAB_METHOD_NOT_ALLOWED', `${method} is not allowed on ${url.pathname}; use ${m}`);
    };
    const count = (name: string): void => counters.http(name);
    if (!authorized(req)) {
      count('unauthorized');
      res.setHeader('WWW-Authenticate', 'Bearer realm="archlab-queue"');
      throw new HttpError(401, 'ARCHLAB_QUEUE_UNAUTHORIZED', 'this gateway needs an "Authorization: Bearer <token>" header with the server\'s token');
    }
    const [a, b, c, d, e, f] = parts;
    if (a === 'topics') {
      if (b === undefined || b === '') {
        count('topics');
        if (!isGet) allow('GET');
        sendJson(res, 200, { topics: await log.listTopics() });
        return;
      }
      if (c === undefined) {
        count('topic');
        if (!isGet) allow('GET');
        sendJson(res, 200, await log.describeTopic(b));
        return;
      }
      if (c === 'records' && d === undefined) {
        count('append');
        if (method !== 'POST') allow('POST');
        return appendRecords(req, res, b, url);
      }
      if (c === 'stream' && d === undefined) {
        count('topic_stream');
        if (!isGet) allow('GET');
        return topicStream(req, res, b, url);
      }
      if (c === 'partitions' && d !== undefined && /^\d+$/.test(d) && e === 'records' && f === undefined) {
        count('fetch');
        if (!isGet) allow('GET');
        return readRecords(res, b, Number(d), url);
      }
    } else if (a === 'exchanges' && b !== undefined && c === 'publish' && d === undefined) {
      count('publish');
      if (method !== 'POST') allow('POST');
      return publish(req, res, b, url);
    } else if (a === 'queues') {
      if (b === undefined || b === '') {
        count('queues');
        if (!isGet) allow('GET');
        sendJson(res, 200, { queues: await broker.listQueues() });
        return;
      }
      if (c === undefined) {
        count('queue');
        if (!isGet) allow('GET');
        sendJson(res, 200, await broker.queueStats(b));
        return;
      }
      if (c === 'stream' && d === undefined) {
        count('queue_stream');
        if (!isGet) allow('GET');
        return queueStream(res, b);
      }
    }
    count('not_found');
    throw new HttpError(404, 'ARCHLAB_NOT_FOUND', `no route ${method} ${url.pathname}; see docs/queue-protocol.md (HTTP gateway)`);
  };

  const { limits, timeouts } = o;
  const server = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      requestTimeout: timeouts.requestMs,
      headersTimeout: timeouts.headersMs,
      keepAliveTimeout: timeouts.keepAliveMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeouts.headersMs / 2))),
    },
    (req, res) => {
      if (closing) {
        sendError(res, 503, 'ARCHLAB_QUEUE_CLOSED', 'the server is shutting down', { Connection: 'close' });
        return;
      }
      route(req, res).catch((err: unknown) => {
        const status = httpStatusFor(err);
        if (status >= 500 && status !== 503) logger.warn({ err, url: req.url, method: req.method }, 'gateway request failed');
        counters.error(isArchlabError(err) ? err.code : 'ARCHLAB_INTERNAL');
        if (res.headersSent) {
          res.end();
          return;
        }
        const code = isArchlabError(err) ? err.code : 'ARCHLAB_INTERNAL';
        const message = isArchlabError(err) ? err.message : 'internal error';
        const headers: Record<string, string> = {};
        if (status === 503) headers['Retry-After'] = '1';
        if (status === 413) headers.Connection = 'close';
        sendError(res, status, code, message, headers);
      });
    },
  );
  server.maxConnections = limits.maxConnections;
  server.setTimeout(timeouts.idleMs);
  const handle: ServerHandle = await listen(server, { host: config.host, port: config.port, drainTimeoutMs: timeouts.drainMs });
  let closed: Promise<void> | undefined;
  return {
    address: handle.address,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        for (const stop of [...streams]) stop();
        await handle.close();
      })()),
  };
}
