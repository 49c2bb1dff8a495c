/**
 * `npm run bench -- <name> [--quick]`: runs bench/<name>.ts, writes bench/results/<name>.json and,
 * for a full run, the table into the block's docs page. `npm run bench -- --list` lists them.
 * `npm run bench -- <name> --render` measures nothing: it writes the docs table anew from the
 * results file already there (after a change to how a bench reports).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, runBench, writeDocsRegion, writeResults, type Bench, type Results } from './harness.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const render = args.includes('--render');
const names = args.filter((a) => !a.startsWith('--'));
const available = readdirSync(join(ROOT, 'bench'))
  .filter((f) => f.endsWith('.ts') && !['harness.ts', 'run.ts'].includes(f) && !f.endsWith('.test.ts'))
  .map((f) => f.slice(0, -3));

if (args.includes('--list') || names.length === 0) {
  process.stdout.write(`usage: npm run bench -- <name> [--quick | --render]\nbenchmarks: ${available.join(', ')}\n`);
  process.exit(names.length === 0 && !args.includes('--list') ? 2 : 0);
}

for (const name of names) {
  if (!available.includes(name)) {
    process.stderr.write(`no benchmark "${name}"; have: ${available.join(', ')}\n`);
    process.exit(2);
  }
  const mod = (await import(pathToFileURL(join(ROOT, 'bench', `${name}.ts`)).href)) as { default: Bench };
  const bench = mod.default;
  let results: Results;
  if (render) {
    const file = join(ROOT, 'bench', 'results', `${name}.json`);
    results = JSON.parse(readFileSync(file, 'utf8')) as Results;
    process.stdout.write(`read ${file} (measured ${results.date}${results.quick ? ', quick' : ''})\n`);
  } else {
    results = await runBench(bench, quick);
    process.stdout.write(`\nwrote ${writeResults(results)}\n`);
  }
  if (bench.report) {
    const md = bench.report(results);
    process.stdout.write(`\n${md}\n`);
    if (!results.quick && bench.docsPage) {
      const ok = writeDocsRegion(bench.docsPage, bench.name, md);
      process.stdout.write(ok ? `updated ${bench.docsPage}\n` : `no <!-- bench:${bench.name} --> region in ${bench.docsPage}; table not written\n`);
    }
  }
}
