/**
 * Tests that need a service on the machine (Redis, PostgreSQL, ...) ask `needService` first. When the
 * service is down they are skipped with a message saying what to start, except under CI=true, where
 * a missing service fails the run: CI must prove the real integration.
 */
import * as net from 'node:net';
import { ArchlabError } from '../../src/core/errors.js';

export interface ServiceSpec {
  name: string;
  port: number;
  host?: string;
  /** How a user starts it; shown in the skip message. */
  hint?: string;
}

export const REDIS: ServiceSpec = { name: 'Redis', port: 6379, hint: 'redis-server --daemonize yes --port 6379' };
export const POSTGRES: ServiceSpec = { name: 'PostgreSQL', port: 5432, hint: 'pg_ctlcluster $(ls /etc/postgresql) main start (trust auth, database test)' };
export const MARIADB: ServiceSpec = { name: 'MariaDB', port: 3306 };
export const RABBITMQ: ServiceSpec = { name: 'RabbitMQ', port: 5672, hint: 'rabbitmq-server -detached' };
export const NATS: ServiceSpec = { name: 'NATS', port: 4222, hint: 'nats-server -js' };

function reachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Resolves to `false` when the service answers on its port, or to a skip message when it does not.
 * Under CI=true an absent service throws instead. Use as `test(name, { skip: await needService(REDIS) }, fn)`.
 */
export async function needService(spec: ServiceSpec): Promise<string | false> {
  const host = spec.host ?? '127.0.0.1';
  if (await reachable(host, spec.port, 1000)) return false;
  const message = `${spec.name} is not running on ${host}:${spec.port}${spec.hint ? ` (start it with: ${spec.hint})` : ''}`;
  if (process.env.CI === 'true') throw new ArchlabError('TEST_SERVICE_MISSING', `${message}; CI=true requires it`);
  return `skipped: ${message}`;
}
