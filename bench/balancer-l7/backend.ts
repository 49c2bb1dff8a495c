/**
 * The shared backend of the L7 balancer benchmark: node:http answering every GET with a fixed
 * 64-byte body over keep-alive, after an optional fixed delay (a timer, so a slow backend costs no
 * CPU: it only holds the request).
 *
 *   node --import tsx bench/balancer-l7/backend.ts <port|0> [--delay-ms N] [--name NAME]
 *
 * Prints `{"port":N}` on stdout once listening. `GET /__stats` (sent directly, not through a
 * proxy) answers `{"served":N}`: requests served so far, so the bench can tell which share of a
 * run each backend took.
 */
import { createServer } from 'node:http';
import { backendBody } from './common.js';

const args = process.argv.slice(2);
const port = Number(args[0] ?? '0');
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const delayMs = Number(opt('--delay-ms') ?? '0');
const name = opt('--name') ?? 'backend';

const body = Buffer.from(backendBody(name));
const headers = { 'content-type': 'text/plain', 'content-length': String(body.length) };
let served = 0;

const server = createServer((req, res) => {
  if (req.url === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ served }));
    return;
  }
  served++;
  // Drain any request body so the connection can be reused.
  req.resume();
  if (delayMs > 0) {
    setTimeout(() => {
      res.writeHead(200, headers);
      res.end(body);
    }, delayMs);
  } else {
    res.writeHead(200, headers);
    res.end(body);
  }
});
// Longer than every proxy's idle upstream timeout, so no proxy reuses a socket we just closed.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.requestTimeout = 0;

server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
