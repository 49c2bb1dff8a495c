import { isIP } from 'node:net';
import { InvalidArgumentError } from './errors.js';

/** A host and a TCP/UDP port. */
export interface HostPort {
  host: string;
  port: number;
}

/** `("::1", 80)` -> `"[::1]:80"`; `("example.com", 80)` -> `"example.com:80"`. */
export function formatHostPort(host: string, port: number): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${h}:${port}`;
}

/** Parses a port given as text or number; throws InvalidArgumentError unless it is an integer 0..65535. */
export function parsePort(text: string | number, context = 'port'): number {
  const port = typeof text === 'number' ? text : /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`invalid ${context} ${JSON.stringify(text)}: expected an integer 0..65535`, {
      input: text,
    });
  }
  return port;
}

/**
 * Parses `"host:port"` or `"[ipv6]:port"`. An IPv6 address must be bracketed, since its colons
 * would otherwise be ambiguous with the port separator. Throws InvalidArgumentError naming the input.
 */
export function parseHostPort(text: string): HostPort {
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(
      `invalid address ${JSON.stringify(text)}: ${why}; expected "host:port" or "[ipv6]:port", e.g. "127.0.0.1:8080" or "[::1]:8080"`,
      { input: text },
    );
  if (typeof text !== 'string') throw bad(`got ${typeof text}`);
  const s = text.trim();
  let host: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw bad('missing "]"');
    host = s.slice(1, close);
    if (s[close + 1] !== ':') throw bad('missing ":port" after "]"');
    portText = s.slice(close + 2);
    if (isIP(host) !== 6) throw bad(`"${host}" inside brackets is not an IPv6 address`);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) throw bad('missing ":port"');
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (host.includes(':')) throw bad('an IPv6 address needs brackets');
  }
  if (host === '') throw bad('empty host');
  if (/\s/.test(host)) throw bad('host contains whitespace');
  if (!/^\d{1,5}$/.test(portText)) throw bad(portText === '' ? 'empty port' : `port "${portText}" is not a number`);
  const port = Number(portText);
  if (port > 65535) throw bad(`port ${port} is over 65535`);
  return { host, port };
}

/** True for names and addresses that only this machine can reach: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    const lower = h.toLowerCase();
    return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(lower);
  }
  return false;
}
