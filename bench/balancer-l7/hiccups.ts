/**
 * The machine's own stalls: a process that only spins, reading the clock, on the core given, for a
 * fixed time. Every gap between two reads longer than 1 ms is time the process was not running
 * although it wanted to (another process, an interrupt storm, or, on a VM, the hypervisor taking the
 * vCPU). Latency percentiles of anything on that core cannot be better than these gaps allow, so
 * the L7 bench reports them beside its p99 rows.
 *
 *   node --import tsx bench/balancer-l7/hiccups.ts <durationMs>
 *
 * Prints one JSON line: { durationMs, gaps (count over 1 ms), maxMs, p99GapMs, stalledShare }.
 */
const durationMs = Math.min(60_000, Math.max(100, Number(process.argv[2] ?? '2000')));
const gaps: number[] = [];
const end = performance.now() + durationMs;
let last = performance.now();
for (;;) {
  const now = performance.now();
  if (now >= end) break;
  const gap = now - last;
  if (gap > 1) gaps.push(gap);
  last = now;
}
gaps.sort((a, b) => a - b);
const stalled = gaps.reduce((x, y) => x + y, 0);
process.stdout.write(
  JSON.stringify({
    durationMs,
    gaps: gaps.length,
    maxMs: gaps.at(-1) ?? 0,
    p99GapMs: gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * 0.99))]! : 0,
    stalledShare: stalled / durationMs,
  }) + '\n',
);
