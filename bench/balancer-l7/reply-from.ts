/**
 * Peer: fastify with `@fastify/reply-from` (undici pool to the backend, its defaults: 128
 * connections, no pipelining), forwarding every GET.
 *
 *   node --import tsx bench/balancer-l7/reply-from.ts <backend-port>
 *
 * Prints `{"port":N}` when listening, or `{"unavailable":...}` when a package is not installed.
 */
import type FastifyFactory from 'fastify';
import type ReplyFrom from '@fastify/reply-from';
import { printReady } from './common.js';

const backendPort = Number(process.argv[2]);

let Fastify: typeof FastifyFactory;
let replyFrom: typeof ReplyFrom;
try {
  Fastify = (await import('fastify')).default;
  replyFrom = (await import('@fastify/reply-from')).default;
} catch {
  printReady({ unavailable: 'fastify or @fastify/reply-from not installed: npm install --no-save fastify @fastify/reply-from' });
  process.exit(3);
}

const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
await app.register(replyFrom, { base: `http://127.0.0.1:${backendPort}` });
app.get('/*', (request, reply) => reply.from(request.url));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
printReady({ port: Number(new URL(address).port) });
process.on('SIGTERM', () => process.exit(0));
