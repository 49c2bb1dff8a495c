/** A disk-tier object whose file went bad is a miss served whole from upstream, never a response cut short. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { send, startOrigin, startTestEdge, waitFor } from '../../src/cdn/edge/test-helpers.js';
import { createStorage } from '../../src/cdn/storage/index.js';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out;
}

test('a disk object whose file was truncated: the next request goes upstream and gets the whole body (X-Cache MISS), and it is stored again', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archlab-edge-disk-'));
  const body = Buffer.alloc(64 * 1024, 'x');
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=100', 'content-length': String(body.length) });
    res.end(body);
  });
  // memoryObjectMaxBytes below the object's size sends it straight to disk.
  const storage = await createStorage({ memoryBytes: 1024 * 1024, memoryObjectMaxBytes: 1024, disk: { dir, maxBytes: 8 * 1024 * 1024 } });
  const e = await startTestEdge(origin.url, { storage });
  t.after(async () => {
    await e.close();
    await origin.close();
    await rm(dir, { recursive: true, force: true });
  });

  const first = await send(e.url, '/obj');
  assert.equal(first.headers['x-cache'], 'MISS');
  await waitFor(() => e.storage.variants('http://example.test/obj').length === 1, 5000, 'the object stored');
  const hit = await send(e.url, '/obj');
  assert.equal(hit.headers['x-cache'], 'HIT');
  assert.deepEqual(hit.body, body);

  // Truncate every stored body file (they live under objects/; the marker and lock do not).
  const before = await filesUnder(dir);
  let cut = 0;
  for (const f of before.filter((f) => f.includes(`${path.sep}objects${path.sep}`))) {
    await truncate(f, 10);
    cut++;
  }
  assert.ok(cut >= 1, `no stored body file found under ${dir}: ${before.join(', ')}`);

  const after = await send(e.url, '/obj');
  assert.equal(after.status, 200);
  assert.equal(after.headers['x-cache'], 'MISS', 'the bad file is a miss');
  assert.equal(after.body.length, body.length, 'the whole body, not a cut-short one');
  assert.deepEqual(after.body, body);
  assert.equal(origin.count('/obj'), 2);
  await waitFor(() => e.storage.variants('http://example.test/obj').length === 1, 5000, 'the object stored again');
  const again = await send(e.url, '/obj');
  assert.equal(again.headers['x-cache'], 'HIT');
  assert.deepEqual(again.body, body);
});
