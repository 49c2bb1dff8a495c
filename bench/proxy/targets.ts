/**
 * The targets every proxy is measured against, in one child process: a TCP source (sends the number
 * of bytes asked for in a "<n>\n" line, then ends), a TCP sink (reads "<n>\n" and n bytes, answers
 * "k"), and an HTTP server answering a 64-byte body with keep-alive.
 * Prints {"ready":true,"source":port,"sink":port,"http":port}.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { BODY } from './common.js';
import { printLine } from './procs.js';

const CHUNK = Buffer.alloc(256 * 1024);
for (let i = 0; i < CHUNK.length; i++) CHUNK[i] = i & 255;

/** Reads the "<n>\n" request line, then hands over what followed it. */
function onRequestLine(socket: net.Socket, then: (n: number, rest: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  const onData = (d: Buffer): void => {
    buf = Buffer.concat([buf, d]);
    const nl = buf.indexOf(0x0a);
    if (nl < 0) {
      if (buf.length > 32) socket.destroy();
      return;
    }
    socket.off('data', onData);
    then(Number(buf.subarray(0, nl).toString()), buf.subarray(nl + 1));
  };
  socket.on('data', onData);
}

const source = net.createServer((socket) => {
  socket.on('error', () => socket.destroy());
  onRequestLine(socket, (n) => {
    // Bytes follow the pattern i & 255 from offset 0, so a client can check what arrived.
    let left = n;
    const pump = (): void => {
      while (left > 0) {
        const take = Math.min(left, CHUNK.length);
        left -= take;
        const ok = socket.write(take === CHUNK.length ? CHUNK : CHUNK.subarray(0, take));
        if (!ok) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
});

const sink = net.createServer((socket) => {
  socket.on('error', () => socket.destroy());
  onRequestLine(socket, (n, rest) => {
    let got = rest.length;
    const check = (): void => {
      if (got >= n) {
        socket.off('data', onData);
        socket.end('k');
      }
    };
    const onData = (d: Buffer): void => {
      got += d.length;
      check();
    };
    socket.on('data', onData);
    check();
  });
});

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  res.end(BODY);
});

const listen = (s: net.Server): Promise<number> => new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as net.AddressInfo).port)));
const [sourcePort, sinkPort, httpPort] = await Promise.all([listen(source), listen(sink), listen(server)]);
printLine({ ready: true, source: sourcePort, sink: sinkPort, http: httpPort });
process.on('SIGTERM', () => process.exit(0));
