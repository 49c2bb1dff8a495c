/**
 * The UDP bench's backend: answers every datagram with the same bytes, to the address it came
 * from. One socket, nothing kept per datagram.
 *
 *   node --import tsx bench/balancer-udp/echo.ts
 *
 * Prints `{"port":N}` once bound on 127.0.0.1.
 */
import * as dgram from 'node:dgram';
import { printReady } from '../balancer-l7/common.js';

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.bind(0, '127.0.0.1', () => printReady({ port: sock.address().port }));
process.on('SIGTERM', () => sock.close(() => process.exit(0)));
