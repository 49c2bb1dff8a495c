import { Command } from 'commander';
import { runUntilSignal } from '../core/lifecycle.js';
import { createLogger } from '../core/log.js';
import { defaultTopology, loadTopology, REFERENCE_TOPOLOGY_FILE } from '../up/topology.js';
import { startUp, type UpSummary } from '../up/runner.js';
import { startDashboard, type DashboardHandle } from '../up/dashboard/server.js';
import { formatComponents, formatSummary } from '../up/format.js';
import type { CliContext } from './context.js';

/** How often the live summary line is printed (interactive terminals only). */
export const SUMMARY_INTERVAL_MS = 2000;

/**
 * `archlab up [--topology file]`: the reference architecture on this machine. Validates the
 * topology before starting anything (a bad file exits 1 naming the field), starts every component,
 * prints the table of what runs where on stdout, then, on a terminal, a summary line every 2 s on
 * stderr. SIGINT/SIGTERM stop everything in reverse order and exit 0.
 *
 * Components log at warn unless --log-level asks for another level than the default info, so the
 * table and the summary stay readable.
 */
export function upCommand(ctx: CliContext, logLevel: () => string): Command {
  return new Command('up')
    .description('start the reference architecture on this machine (CDN -> L7 balancer -> app instances -> cache -> database, queue and worker, forward proxy), print what runs where, stop cleanly on Ctrl-C')
    .option('-t, --topology <file>', `topology YAML (see examples/reference.yaml, the default)`)
    .action(async (o: { topology?: string }) => {
      const topology = o.topology === undefined ? defaultTopology() : loadTopology(o.topology);
      const level = logLevel() !== 'info' ? logLevel() : 'warn';
      const logger = createLogger({ level, name: 'archlab-up', destination: process.stderr });
      const up = await startUp(topology, { logger });
      let dashboard: DashboardHandle;
      try {
        dashboard = await startDashboard(up, { port: topology.dashboard.port, logger });
      } catch (err) {
        await up.close();
        throw err;
      }
      ctx.out(`archlab up: topology "${topology.name}" from ${o.topology ?? REFERENCE_TOPOLOGY_FILE}\n\n`);
      ctx.out(formatComponents(up.components));
      ctx.out(`\ndashboard ${dashboard.url}${dashboard.webBuilt ? '' : ' (web app not built: run npm run build:web)'}\n`);
      ctx.out(`\nopen ${dashboard.url} in a browser to watch and break it; the site itself is ${up.url}/api/products/1 (through the CDN), ${up.url}/static/products/1.svg; balancer admin ${up.balancer.adminUrl}/pools (token ${up.balancer.adminToken}). Ctrl-C stops everything.\n`);
      let timer: NodeJS.Timeout | undefined;
      if (ctx.interactive) {
        let previous: { summary: UpSummary; at: number } | undefined;
        let busy = false;
        timer = setInterval(() => {
          if (busy) return;
          busy = true;
          up.summary().then(
            (s) => {
              const at = performance.now();
              const line = formatSummary(s, previous === undefined ? undefined : { summary: previous.summary, elapsedMs: at - previous.at });
              previous = { summary: s, at };
              ctx.err(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
            },
            (err: unknown) => logger.warn({ err }, 'summary failed'),
          ).finally(() => (busy = false));
        }, SUMMARY_INTERVAL_MS);
      }
      runUntilSignal(
        [
          {
            close: async () => {
              clearInterval(timer);
              await dashboard.close();
              await up.close();
              ctx.err('archlab up: stopped\n');
            },
          },
        ],
        { logger, drainTimeoutMs: 15_000 },
      );
      // Keep the action pending until the process exits (runUntilSignal exits it).
      await new Promise<never>(() => undefined);
    });
}
