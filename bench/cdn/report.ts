/** targets() and report() of bench/cdn: the issue's targets with measured values, the docs tables, ratios. */
import { find, format, table, type Results } from '../harness.js';
import { CHART_FILES } from './charts.js';
import { CONNECTIONS, HIT_FULL, HIT_QUICK, HIT_SCENARIO, HIT_SYSTEMS, HOT_OBJECTS, MAX_OTHER_CPU } from './hitpath.js';
import { PURGE_SCENARIO, PURGE_SYSTEM } from './purge.js';
import { LATENCY_SYSTEMS, REGIONS, STORM_SCENARIO, STORM_SYSTEMS, latencyScenario } from './textbook.js';
import { ZIPF_SCENARIO, ZIPF_SYSTEMS } from './zipf.js';

const v = (results: Results, system: string, scenario: string, metric: string): number | undefined => find(results, { system, scenario, metric })?.value;
const ms = (x: number | undefined): string => (x === undefined ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const pct = (x: number | undefined): string => (x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
const int = (x: number | undefined): string => (x === undefined ? '-' : Math.round(x).toLocaleString('en-US'));

export function targets(results: Results): string[] {
  const out: string[] = [];
  const check = (label: string, ok: boolean | undefined, detail: string): void => {
    out.push(`${ok === undefined ? 'not measured' : ok ? 'met' : 'MISSED'}: ${label} (${detail})`);
  };
  const ours = v(results, HIT_SYSTEMS.archlab, HIT_SCENARIO, 'req/s');
  const nginx = v(results, HIT_SYSTEMS.nginx, HIT_SCENARIO, 'req/s');
  // wrk on one core can cap req/s below what the faster system would do, so req/s alone can flatter
  // the slower one. The CPU each request costs is not capped: judge by the smaller of the two ratios.
  const cpuRatio = cpuEfficiency(results);
  check(
    'archlab hit path >= 0.5x nginx proxy_cache req/s, one process each',
    ours === undefined || nginx === undefined ? undefined : Math.min(ours / nginx, cpuRatio ?? Infinity) >= 0.5,
    ours === undefined || nginx === undefined
      ? `${ours === undefined ? 'archlab' : 'nginx'} not measured`
      : `${format(ours)} vs ${format(nginx)} req/s = ${(ours / nginx).toFixed(2)}x; by CPU per request ${cpuRatio === undefined ? '-' : `${cpuRatio.toFixed(2)}x`} (nginx's CPU ms per 1k requests / archlab's); the smaller counts`,
  );
  const edge = v(results, ZIPF_SYSTEMS.edge, ZIPF_SCENARIO, 'hit ratio');
  const lru = v(results, ZIPF_SYSTEMS.lru, ZIPF_SCENARIO, 'hit ratio');
  const objects = v(results, ZIPF_SYSTEMS.edge, ZIPF_SCENARIO, 'objects');
  check(
    'Zipf(0.9), cache of 10% of the objects: edge hit ratio within 2 points of an offline LRU on the same trace',
    edge === undefined || lru === undefined ? undefined : Math.abs(edge - lru) * 100 <= 2,
    edge === undefined || lru === undefined
      ? 'archlab edge not measured'
      : `${pct(edge)} vs ${pct(lru)}: ${((edge - lru) * 100).toFixed(2)} points, ${int(v(results, ZIPF_SYSTEMS.edge, ZIPF_SCENARIO, 'requests'))} requests over ${int(objects)} objects${objects !== undefined && objects < 100_000 ? ' (quick setting: fewer objects than the target names)' : ''}`,
  );
  const p99 = v(results, PURGE_SYSTEM, PURGE_SCENARIO, 'propagation p99');
  check(
    'purge propagation to 3 edges (and the shield) p99 <= 50 ms',
    p99 === undefined ? undefined : p99 <= 50,
    p99 === undefined ? 'not measured' : `p99 ${ms(p99)} ms, p50 ${ms(v(results, PURGE_SYSTEM, PURGE_SCENARIO, 'propagation p50'))} ms over ${int(v(results, PURGE_SYSTEM, PURGE_SCENARIO, 'purges'))} purges`,
  );
  return out;
}

/** nginx's CPU per request over archlab's: what archlab's req/s would be against nginx's if both saturated their core. */
function cpuEfficiency(results: Results): number | undefined {
  const oursCpu = v(results, HIT_SYSTEMS.archlab, HIT_SCENARIO, 'CPU per 1k req');
  const nginxCpu = v(results, HIT_SYSTEMS.nginx, HIT_SCENARIO, 'CPU per 1k req');
  return oursCpu === undefined || nginxCpu === undefined || oursCpu <= 0 ? undefined : nginxCpu / oursCpu;
}

export function report(results: Results): string {
  const hit = results.quick ? HIT_QUICK : HIT_FULL;
  const flagged = (system: string): string => ((v(results, system, HIT_SCENARIO, 'other CPU') ?? 0) > MAX_OTHER_CPU || (v(results, system, HIT_SCENARIO, 'origin requests') ?? 0) > 0 ? ' (unreliable, see notes)' : '');
  const hitSystems = Object.values(HIT_SYSTEMS).filter((s) => v(results, s, HIT_SCENARIO, 'req/s') !== undefined);
  const hitTable = table(
    ['system', 'req/s', 'p50 ms', 'p99 ms', 'vs nginx', 'CPU ms per 1k req'],
    hitSystems.map((s) => [
      s + flagged(s),
      int(v(results, s, HIT_SCENARIO, 'req/s')),
      ms(v(results, s, HIT_SCENARIO, 'p50')),
      ms(v(results, s, HIT_SCENARIO, 'p99')),
      s === HIT_SYSTEMS.nginx ? '1.00x' : (() => {
        const x = v(results, s, HIT_SCENARIO, 'vs nginx');
        return x === undefined ? '-' : `${x.toFixed(2)}x`;
      })(),
      ms(v(results, s, HIT_SCENARIO, 'CPU per 1k req')),
    ]),
  );
  const z = (system: string, metric: string): number | undefined => v(results, system, ZIPF_SCENARIO, metric);
  const zipfRows = [ZIPF_SYSTEMS.edge, ZIPF_SYSTEMS.lru].filter((s) => z(s, 'hit ratio') !== undefined);
  const zipfTable = table(
    ['', 'hit ratio', 'evictions', 'objects held at the end'],
    zipfRows.map((s) => [s, pct(z(s, 'hit ratio')), int(z(s, 'evictions')), int(z(s, 'objects stored at the end'))]),
  );
  const diff = z(ZIPF_SYSTEMS.diff, 'hit ratio difference');
  const p = (metric: string): number | undefined => v(results, PURGE_SYSTEM, PURGE_SCENARIO, metric);
  const purgeTable = table(
    ['', 'p50 ms', 'p99 ms'],
    [
      ['propagation (fan-out start to the last ack, as the admin API reports it)', ms(p('propagation p50')), ms(p('propagation p99'))],
      ['POST /purge answered, at the client', ms(p('answer at client p50')), ms(p('answer at client p99'))],
    ],
  );
  const latencyRegions = REGIONS.filter((r) => v(results, LATENCY_SYSTEMS.hit, latencyScenario(r), 'p50') !== undefined);
  const lat = (system: string, region: string): string => {
    const sc = latencyScenario(region);
    const floor = v(results, system, sc, 'injected round trips');
    return `${ms(v(results, system, sc, 'p50'))} / ${ms(v(results, system, sc, 'p99'))}${floor === undefined ? '' : ` (${Math.round(floor)})`}`;
  };
  const latencyTable = table(
    ['client region', `${LATENCY_SYSTEMS.hit}, p50 / p99 ms`, `${LATENCY_SYSTEMS.miss}, p50 / p99 ms`, `${LATENCY_SYSTEMS.direct}, p50 / p99 ms`],
    latencyRegions.map((r) => [r, lat(LATENCY_SYSTEMS.hit, r), lat(LATENCY_SYSTEMS.miss, r), lat(LATENCY_SYSTEMS.direct, r)]),
  );
  const stormSystems = [STORM_SYSTEMS.shield, STORM_SYSTEMS.noShield].filter((s) => v(results, s, STORM_SCENARIO, 'origin requests') !== undefined);
  const stormTable = table(
    ['', 'origin requests', 'per object', 'peak origin req/s'],
    stormSystems.map((s) => [s, int(v(results, s, STORM_SCENARIO, 'origin requests')), (v(results, s, STORM_SCENARIO, 'origin requests per object') ?? 0).toFixed(2), int(v(results, s, STORM_SCENARIO, 'peak origin req/s'))]),
  );
  const notes = results.notes.filter((n) => !n.startsWith('target '));
  return [
    `Measured by \`npm run bench -- cdn${results.quick ? ' --quick' : ''}\` on ${results.date.slice(0, 10)}: ${results.machine.cpus} CPUs (${results.machine.cpu ?? 'unknown'}), Node ${results.machine.node}, loopback.`,
    '',
    `**Cached hits** (${HIT_SCENARIO}: wrk 4.1, one thread, closed loop, rotating over the ${HOT_OBJECTS} URLs; ${hit.warmupS} s warm-up then ${hit.durationS} s measured per system; every cache warmed and checked first, and the origin's request counter checked to stay still during the run. Each system under test is one process pinned to the same core, wrk to the other. A row marked unreliable ran while other processes took more than ${Math.round(MAX_OTHER_CPU * 100)}% of the CPUs, or reached the origin)`,
    '',
    hitSystems.length ? hitTable : '_not measured_',
    '',
    `CPU ms per 1k requests (of the system's own process) says what each request costs, whatever rate the load generator manages to offer: by it, archlab's edge costs ${(() => {
      const r = cpuEfficiency(results);
      return r === undefined ? '-' : `${(1 / r).toFixed(2)}x nginx's CPU per request (${r.toFixed(2)}x nginx's throughput were both saturated)`;
    })()}.`,
    '',
    `![Cached hits per second](img/${CHART_FILES.hit})`,
    '',
    `**Hit ratio against theory** (${ZIPF_SCENARIO}; the same seeded trace through archlab's edge and through an offline LRU simulation with the same capacity in bytes)`,
    '',
    zipfRows.length ? zipfTable : '_not measured_',
    ...(diff === undefined ? [] : ['', `Difference: ${diff >= 0 ? '+' : ''}${diff.toFixed(2)} points.`]),
    '',
    `**Purge propagation** (${PURGE_SCENARIO}, no injected latency, ${int(p('purges'))} purges one after another, each checked to have emptied every node)`,
    '',
    p('propagation p50') === undefined ? '_not measured_' : purgeTable,
    '',
    "**Latency a user sees, by region** (the simulated geography above; with the CDN through the router to the nearest edge; without it straight to the origin, with the same matrix's round trip to the origin's region injected. In brackets: the round trips injected on that path, the floor of its latency)",
    '',
    latencyRegions.length ? latencyTable : '_not measured_',
    '',
    `![Latency by region with and without the CDN](img/${CHART_FILES.latency})`,
    '',
    `**Miss storm and the shield** (${STORM_SCENARIO}: every region asks for the same new objects at the same moments)`,
    '',
    stormSystems.length ? stormTable : '_not measured_',
    '',
    `![Origin requests per second during a miss storm, with and without the shield](img/${CHART_FILES.storm})`,
    '',
    '**Targets**',
    '',
    ...targets(results).map((t) => `- ${t}`),
    ...(notes.length ? ['', '**Notes**', '', ...notes.map((n) => `- ${n}`)] : []),
    '',
    `_wrk: ${CONNECTIONS} connections; raw numbers in bench/results/cdn.json._`,
  ].join('\n');
}
