/**
 * End to end: `archlab up` with a small topology as a real child process, its dashboard opened in
 * Debian's chromium through playwright-core. The graph shows every component; killing an app
 * instance from the page makes the balancer mark it down while the clients see no failure; purging
 * the CDN from the page makes the edges' miss count jump; the page works at phone width, from the
 * keyboard, and loads nothing from outside its own server. Ctrl-C then leaves no port behind.
 * Screenshots go to test-results/ (not committed).
 *
 * Needs chromium (`apt-get install chromium`) and the web build (`npm run build:web`, run by npm
 * install): without chromium the test is skipped with the reason, and fails instead under CI=true;
 * a missing build is built first.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { probe, spawnTsx, tempDir, waitFor, type CapturedChild } from './helpers.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const main = join(root, 'src/cli/main.ts');
const results = join(root, 'test-results');

function findChromium(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' });
  const path = r.stdout.trim().split('\n')[0];
  return r.status === 0 && path !== undefined && path !== '' ? path : undefined;
}

const executablePath = findChromium();
const skip = executablePath === undefined && process.env.CI !== 'true' ? 'chromium is not installed (apt-get install chromium); the dashboard end-to-end test needs it' : false;

/** Starts `archlab up --topology file`; once the table is printed, the dashboard URL and every port printed. */
async function startUpProcess(t: TestContext, file: string): Promise<CapturedChild & { dashboard: string; ports: number[] }> {
  const up = spawnTsx(t, main, ['up', '--topology', file], root);
  await up.waitForOut(/Ctrl-C stops everything/, 40_000, 'table');
  const out = up.out();
  const dashboard = /^dashboard (http:\/\/127\.0\.0\.1:\d+)/m.exec(out)?.[1];
  assert.ok(dashboard !== undefined, `no dashboard line: ${out}`);
  const ports = [...out.matchAll(/http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  return { ...up, dashboard, ports: [...new Set(ports)] };
}

async function numberOf(page: Page, testId: string): Promise<number> {
  const text = (await page.getByTestId(testId).first().textContent()) ?? '';
  const n = Number(text.replace(/[^0-9.]/g, ''));
  assert.ok(Number.isFinite(n) && text.trim() !== '', `${testId} shows a number, got "${text}"`);
  return n;
}

test('the dashboard in chromium: every component on the graph, kill an instance, purge the CDN, phone width, keyboard, nothing external', { skip, timeout: 180_000 }, async (t) => {
  assert.ok(executablePath !== undefined, 'chromium is required under CI=true (apt-get install chromium)');
  if (!existsSync(join(root, 'web/dist/index.html'))) execFileSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', 'web', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  mkdirSync(results, { recursive: true });
  const dir = tempDir(t);
  const file = join(dir, 'small.yaml');
  writeFileSync(
    file,
    [
      'name: e2e',
      'dataDir: data',
      // Mostly static images (what the CDN caches), so the purge has something to show.
      'clients: { rate: 100, mix: { reads: 5, searches: 0, static: 90, writes: 5 } }',
      'cdn: { regions: [{ name: eu }, { name: us }] }',
      'app: { instances: 3, data: { products: 40, users: 10 } }',
      'queue: { worker: { work: 1ms } }',
      '',
    ].join('\n'),
  );
  const up = await startUpProcess(t, file);
  const browser: Browser = await chromium.launch({ executablePath, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const origin = new URL(up.dashboard).origin;
  const foreign: string[] = [];
  const pageErrors: string[] = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('data:')) foreign.push(u);
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));

  await page.goto(up.dashboard);
  await page.locator('[data-testid="connection"][data-state="live"]').waitFor({ timeout: 15_000 });

  // The graph shows every component the server reports (which is every component of the table).
  const state = (await (await fetch(`${up.dashboard}/api/state`)).json()) as { hello: { nodes: Array<{ id: string }> } };
  const ids = state.hello.nodes.map((n) => n.id);
  for (const id of ['clients', 'cdn', 'cdn-eu-1', 'cdn-us-1', 'cdn-shield', 'balancer', 'app-1', 'app-2', 'app-3', 'cache', 'database', 'queue', 'worker', 'proxy']) assert.ok(ids.includes(id), `${id} in the graph`);
  for (const id of ids) await page.getByTestId(`node-${id}`).waitFor({ state: 'visible', timeout: 10_000 });
  await waitFor('traffic on the page', async () => (await numberOf(page, 'cdn-misses')) > 0, 15_000);
  await page.screenshot({ path: join(results, 'dashboard-1-running.png'), fullPage: true });

  // Kill app-2 from the page: the balancer marks it down, the clients see no failure.
  const errorsBefore = await numberOf(page, 'client-errors');
  await page.getByTestId('kill-app-app-2').click();
  await page.locator('[data-testid="backend-app-2"][data-state="down"]').waitFor({ timeout: 15_000 });
  await page.locator('[data-testid="node-app-2"][data-health="stopped"]').waitFor({ timeout: 5000 });
  await page.waitForTimeout(3000); // keep the load on one instance short for a while
  assert.equal(await numberOf(page, 'client-errors'), errorsBefore, 'the clients saw no failure while app-2 was down');
  await page.getByTestId('event-log').getByText('balancer marks app-2 down').first().waitFor({ timeout: 5000 });
  await page.screenshot({ path: join(results, 'dashboard-2-app-killed.png'), fullPage: true });

  // Purge the CDN from the page: the edges miss what they held, and the miss count jumps. Measured
  // as misses over 3 s before and after the purge (the product API is not cached at the edges, so
  // misses never stop: the jump is the cached images missing again).
  const missesOver = async (ms: number): Promise<number> => {
    const before = await numberOf(page, 'cdn-misses');
    await page.waitForTimeout(ms);
    return (await numberOf(page, 'cdn-misses')) - before;
  };
  const baseline = await missesOver(3000);
  await page.getByTestId('purge-cdn').click();
  await page.getByTestId('control-status').getByText(/purged \d+ objects/).waitFor({ timeout: 10_000 });
  const afterPurge = await missesOver(3000);
  assert.ok(afterPurge >= baseline + 20, `misses over 3 s: ${baseline} before the purge, ${afterPurge} after`);
  t.diagnostic(`CDN misses over 3 s: ${baseline} before the purge, ${afterPurge} after`);
  await page.screenshot({ path: join(results, 'dashboard-3-purged.png'), fullPage: true });

  // Keyboard: the restart button is reachable by Tab and works with Enter.
  const restart = page.getByTestId('restart-app-app-2');
  let reached = false;
  await page.locator('body').focus();
  for (let i = 0; i < 200 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await restart.evaluate((el: { ownerDocument: { activeElement: unknown } }) => el === el.ownerDocument.activeElement);
  }
  assert.ok(reached, 'restart-app-app-2 is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="backend-app-2"][data-state="up"]').waitFor({ timeout: 15_000 });

  // Phone width: nothing overflows sideways, the controls are still there.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(500);
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 375 px`);
  await page.getByTestId('purge-cdn').waitFor({ state: 'visible' });
  await page.screenshot({ path: join(results, 'dashboard-4-phone.png'), fullPage: true });

  assert.deepEqual(foreign, [], 'the page loads nothing from outside its own server');
  assert.deepEqual(pageErrors, [], 'no script error on the page');
  await browser.close();

  // Ctrl-C: exits 0, every port released (the dashboard's too).
  up.child.kill('SIGINT');
  assert.deepEqual(await up.exit(20_000, 'after SIGINT'), { code: 0, signal: null }, up.err());
  for (const p of up.ports) assert.equal(await probe(p), 'refused', `port ${p} released`);
});
