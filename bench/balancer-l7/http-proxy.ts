/**
 * Peer: the `http-proxy` npm package as a reverse proxy, the way its README sets one up
 * (http.createServer + proxy.web), with a keep-alive agent to the backend.
 *
 *   node --import tsx bench/balancer-l7/http-proxy.ts <backend-port>
 *
 * Prints `{"port":N}` when listening, or `{"unavailable":...}` when the package is not installed.
 */
import { createServer, Agent } from 'node:http';
import type HttpProxy from 'http-proxy';
import { printReady } from './common.js';

const backendPort = Number(process.argv[2]);

let httpProxy: typeof HttpProxy;
try {
  httpProxy = (await import('http-proxy')).default;
} catch {
  printReady({ unavailable: 'http-proxy not installed: npm install --no-save http-proxy' });
  process.exit(3);
}

// Without keep-alive http-proxy opens a connection per request; every peer here reuses them.
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${backendPort}`, agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  printReady({ port: typeof addr === 'object' && addr ? addr.port : 0 });
});
process.on('SIGTERM', () => process.exit(0));
