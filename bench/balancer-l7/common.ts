/** What the L7 benchmark's parent and its child scripts share. */

/** The body every proxy must return unchanged: 63 visible bytes and a newline (64 bytes). */
export function backendBody(backendName: string): string {
  return `archlab bench backend ${backendName} `.padEnd(63, '.').slice(0, 63) + '\n';
}

/** A child script's first stdout line: ready on `port`, or unable to run and why. */
export type ReadyLine = { port: number } | { unavailable: string } | { failed: string };

export function printReady(line: ReadyLine): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

/** What bench/balancer-l7/fixedrate.ts prints when done. */
export interface FixedRateResult {
  /** Requests the schedule called for in the measured window, and those that completed. */
  scheduled: number;
  completed: number;
  /** Transport errors and responses other than 200 with the expected body. */
  errors: number;
  /** Latency from the moment each request was sent (on schedule, not after the previous answer), in ms. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** How late the generator sent requests against the schedule, 99th percentile, in ms. */
  p99LateMs: number;
  /** Completed requests per second in the measured window. */
  achievedRate: number;
  /** With --count-bodies: measured responses by body. */
  bodies?: Record<string, number>;
}
