import { Command } from 'commander';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { InvalidArgumentError } from '../core/errors.js';
import { cdnConfig, loadCdnConfig, type CdnConfigInput } from '../cdn/config.js';
import { startCdnServer } from '../cdn/server.js';
import type { CliContext } from './context.js';

/**
 * What `archlab cdn` runs with no file: the demo origin behind a shield and three regions (two edges
 * in eu, one in us and ap), router on 8300, admin on 8301, loopback clients placed in eu.
 */
export const DEFAULT_CDN_CONFIG: CdnConfigInput = {
  listeners: [{ port: 8300 }],
  admin: { port: 8301 },
  origin: { demo: {} },
  regions: [
    { name: 'eu', edges: 2 },
    { name: 'us', edges: 1 },
    { name: 'ap', edges: 1 },
  ],
  latency: {
    clients: {
      eu: { eu: '10ms', us: '90ms', ap: '160ms' },
      us: { eu: '90ms', us: '10ms', ap: '140ms' },
      ap: { eu: '160ms', us: '140ms', ap: '10ms' },
    },
    shield: { eu: '20ms', us: '60ms', ap: '120ms' },
    origin: '30ms',
  },
  routing: { addressMap: [{ cidr: '127.0.0.0/8', region: 'eu' }, { cidr: '::1/128', region: 'eu' }] },
};

/**
 * `archlab cdn [--config cdn.yaml] [--port n]`: the CDN. Prints the router URL, every node, the
 * admin URL and its token; SIGINT/SIGTERM drain and stop everything.
 */
export function cdnCommand(ctx: CliContext, logLevel: () => string): Command {
  return new Command('cdn')
    .description('a CDN on one machine: edges by region behind a router over simulated latency, an origin shield, HTTP caching to RFC 9111, purge with acks; admin /purge /stats /topology /metrics')
    .option('-c, --config <file>', 'YAML or JSON config (see examples/cdn/); default: demo origin, shield, regions eu/us/ap, router on 8300, admin on 8301')
    .option('--port <n>', 'override the first router listener port')
    .action(async (o: { config?: string; port?: string }) => {
      let config = o.config ? loadCdnConfig(o.config) : cdnConfig(DEFAULT_CDN_CONFIG, '<defaults>');
      if (o.port !== undefined) {
        const port = /^\d{1,5}$/.test(o.port) ? Number(o.port) : NaN;
        if (!Number.isInteger(port) || port > 65535) throw new InvalidArgumentError(`--port must be 0..65535, got ${JSON.stringify(o.port)}`);
        config = { ...config, listeners: [{ ...config.listeners[0]!, port }, ...config.listeners.slice(1)] };
      }
      const level = logLevel() !== 'info' ? logLevel() : config.log.level;
      const logger = createLogger({ level, name: 'archlab-cdn', ...(config.log.pretty === undefined ? {} : { pretty: config.log.pretty }) });
      const cdn = await startCdnServer(config, { logger });
      const say = (line: string): void => ctx.err(`archlab cdn: ${line}\n`);
      for (const r of cdn.routers) say(`router listening on ${r.url} (site host ${cdn.siteHost})`);
      if (cdn.origin.demo) say(`origin (demo) ${cdn.origin.url}`);
      else say(`origin ${cdn.origin.url}`);
      if (cdn.shield) say(`shield ${cdn.shield.name} ${cdn.shield.url}`);
      for (const e of cdn.edges) say(`edge ${e.name} (${e.region}) ${e.url}`);
      if (cdn.admin) {
        say(`admin on ${cdn.admin.url} (POST /purge, GET /stats, /topology, /metrics)`);
        // Printed only when made up here: a token from the file is the user's already.
        if (config.admin?.token === undefined && config.purge.token === undefined) say(`admin and purge token ${cdn.adminToken}`);
      }
      runUntilSignal([cdn], { logger, drainTimeoutMs: config.timeouts.drainMs + 5000 });
      await new Promise<never>(() => undefined);
    });
}
