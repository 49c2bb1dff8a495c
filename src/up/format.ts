/** What `archlab up` prints: the table of what runs where, and the compact live summary line. Pure. */
import type { UpComponent, UpSummary } from './runner.js';

/** Columns component, engine, URL, state; padded to the widest cell, one line per component. */
export function formatComponents(components: readonly UpComponent[]): string {
  const rows = [['COMPONENT', 'ENGINE', 'URL', 'STATE'], ...components.map((c) => [c.name, c.engine, c.url ?? '-', c.state])];
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows.map((r) => r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  ')).join('\n') + '\n';
}

const pct = (ratio: number | null): string => (ratio === null ? '-' : `${Math.round(ratio * 100)}%`);

const ms = (v: number | null): string => (v === null ? '-' : v >= 10 ? `${Math.round(v)}ms` : `${v.toFixed(1)}ms`);

/** The load generator: the offered rate (with a spike in progress), p99 over its window, dropped sends. */
function formatClients(c: UpSummary['clients']): string {
  if (c.rate === 0 && c.inFlight === 0) return `clients idle dropped ${c.dropped}`;
  const spike = c.spike === null ? '' : ` (spike x${c.spike.factor}, ${Math.ceil(c.spike.remainingMs / 1000)}s left)`;
  return `clients ${Math.round(c.rate)}/s${spike} p99 ${ms(c.p99Ms)} dropped ${c.dropped}`;
}

/**
 * One line, counters since start and the rates over the interval since `previous`:
 * `clients 50/s p99 12ms dropped 0 | cdn 120 req (6/s) edge hit 80% | lb 40 req 2/2 up | errors 0 | cache hit 93% | orders 5 | queue depth 0 (consumed 5)`
 * (`orders 5 (payments failed 2)` once orders were refused for their payment).
 */
export function formatSummary(s: UpSummary, previous?: { summary: UpSummary; elapsedMs: number }): string {
  const rate =
    previous === undefined || previous.elapsedMs <= 0 ? '' : ` (${Math.round(((s.cdn.requests - previous.summary.cdn.requests) * 1000) / previous.elapsedMs)}/s)`;
  const errors = s.cdn.errors + s.balancer.failures;
  return [
    formatClients(s.clients),
    `cdn ${s.cdn.requests} req${rate} edge hit ${pct(s.cdn.edgeHitRatio)}`,
    `lb ${s.balancer.requests} req ${s.balancer.backendsUp}/${s.balancer.backends} up`,
    `errors ${errors}`,
    `cache hit ${pct(s.app.cacheHitRatio)}`,
    `orders ${s.app.ordersPlaced}${s.app.payments.failed > 0 ? ` (payments failed ${s.app.payments.failed})` : ''}`,
    `queue depth ${s.queue.depth} (consumed ${s.queue.consumed}${s.queue.workerRunning ? '' : ', worker stopped'})`,
  ].join(' | ');
}
