/**
 * The storage checked against simple references on random operations (seeded; the seed is printed on
 * failure): an obviously-correct LRU-by-bytes over a Map for the memory tier, and, with a disk tier,
 * the invariant that every index agrees with what the tiers hold and every stored body is whole and the
 * latest accepted version of its key.
 *
 * Replay a failure with TEST_SEED=<seed>. The disk run interleaves with real file I/O, so a seed
 * replays its operations exactly but not always their timing against the disk writes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SeededRandom, freshSeed, type Random } from '../../core/random.js';
import type { PurgeSelector, StoredObjectMeta } from '../types.js';
import { createStorage, type TieredStorage } from './index.js';
import { estimateHeadBytes } from './head-bytes.js';
import { readBody, tempDir } from './test-helpers.js';

const PKS = ['https://a.test/x/1', 'https://a.test/x/2', 'https://a.test/y', 'https://b.test/x/1', 'http://a.test/x/1', 'https://a.test/x'];
const KEYS = PKS.flatMap((pk) => [`${pk}#`, `${pk}#gzip`, `${pk}#br`]);
const TAGS = ['t0', 't1', 't2', 't3', 't4'];
const PREFIXES = ['', 'h', 'http://', 'https://', 'https://a.test/', 'https://a.test/x', 'https://a.test/x/', 'https://b', 'https://c', 'z'];

function pkOf(key: string): string {
  return key.slice(0, key.indexOf('#'));
}

function pickTags(rnd: Random): string[] {
  return TAGS.filter(() => rnd.next() < 0.3);
}

/** A body that says which key and version it is, `n` bytes long. */
function versionBody(key: string, version: number, n: number): Buffer {
  const b = Buffer.alloc(n, 0x2e);
  b.write(`${version}|${key}`.slice(0, n));
  return b;
}

function metaFor(key: string, tags: string[], version: number): Omit<StoredObjectMeta, 'bodyBytes'> {
  return { key, primaryKey: pkOf(key), status: 200, headers: { 'x-version': String(version) }, policy: { version }, tags, storedAt: version };
}

function selectors(): PurgeSelector[] {
  return [
    ...PKS.map((primaryKey): PurgeSelector => ({ kind: 'url', primaryKey })),
    ...PREFIXES.map((prefix): PurgeSelector => ({ kind: 'prefix', prefix })),
    ...TAGS.map((tag): PurgeSelector => ({ kind: 'tag', tag })),
  ];
}

function selected(select: PurgeSelector, key: string, tags: readonly string[]): boolean {
  if (select.kind === 'url') return pkOf(key) === select.primaryKey;
  if (select.kind === 'prefix') return pkOf(key).startsWith(select.prefix);
  return tags.includes(select.tag);
}

interface ModelEntry {
  tags: string[];
  size: number;
  version: number;
  bodyBytes: number;
}

/** LRU by bytes with a count bound, as plainly as it can be written: a Map in recency order. */
class LruModel {
  readonly entries = new Map<string, ModelEntry>();
  evictions = 0;
  constructor(
    readonly maxBytes: number,
    readonly maxObjects: number,
  ) {}

  total(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.size;
    return n;
  }

  put(key: string, e: ModelEntry): void {
    this.entries.delete(key);
    while (this.entries.size >= this.maxObjects) this.evictOldest();
    this.entries.set(key, e);
    while (this.total() > this.maxBytes) this.evictOldest();
  }

  touch(key: string): ModelEntry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e;
  }

  private evictOldest(): void {
    const oldest = this.entries.keys().next().value!;
    this.entries.delete(oldest);
    this.evictions++;
  }
}

function checkIndexes(s: TieredStorage, expected: Map<string, { tags: readonly string[]; version: number }>, where: string): void {
  for (const select of selectors()) {
    const want = [...expected].filter(([key, e]) => selected(select, key, e.tags)).map(([key]) => key).sort();
    assert.deepEqual(s.find(select).sort(), want, `${where}: find ${JSON.stringify(select)}`);
  }
  for (const pk of PKS) {
    const want = [...expected.keys()].filter((k) => pkOf(k) === pk).sort();
    const got = s.variants(pk);
    assert.deepEqual(got.map((m) => m.key).sort(), want, `${where}: variants ${pk}`);
    for (const m of got) assert.equal(m.storedAt, expected.get(m.key)!.version, `${where}: variant head of ${m.key}`);
  }
  assert.equal(s.stats().objects, expected.size, `${where}: objects`);
}

test('storage model: memory tier matches an LRU-by-bytes reference on random operations', async () => {
  for (let run = 0; run < 3; run++) {
    const seed = process.env.TEST_SEED === undefined ? freshSeed() : Number(process.env.TEST_SEED) + run;
    const rnd = new SeededRandom(seed);
    const memoryBytes = 2500 + rnd.int(2500);
    const maxObjects = 3 + rnd.int(8);
    const maxObjectBytes = 300 + rnd.int(600);
    const s = await createStorage({ memoryBytes, maxObjects, maxObjectBytes });
    const model = new LruModel(memoryBytes, maxObjects);
    let version = 0;
    let step = 0;
    try {
      for (step = 0; step < 700; step++) {
        const key = KEYS[rnd.int(KEYS.length)]!;
        const r = rnd.next();
        if (r < 0.4) {
          const v = ++version;
          const tags = pickTags(rnd);
          const n = rnd.int(700);
          const m = metaFor(key, tags, v);
          const size = estimateHeadBytes(m) + n;
          const known = rnd.next() < 0.5;
          const w = s.begin(m, known ? n : undefined);
          const fits = n <= maxObjectBytes && size <= memoryBytes;
          if (known) assert.equal(w !== undefined, fits, `begin(${n}) with room ${memoryBytes}, max ${maxObjectBytes}`);
          if (w !== undefined) {
            const data = versionBody(key, v, n);
            const half = rnd.int(n + 1);
            w.write(data.subarray(0, half));
            w.write(data.subarray(half));
            await w.commit();
          }
          if (fits) model.put(key, { tags, size, version: v, bodyBytes: n });
        } else if (r < 0.7) {
          const got = s.get(key);
          const e = model.touch(key);
          assert.equal(got !== undefined, e !== undefined, `get ${key}`);
          if (got !== undefined) {
            assert.equal(got.meta.storedAt, e!.version);
            assert.ok(got.body!.equals(versionBody(key, e!.version, e!.bodyBytes)), `body of ${key}`);
          }
        } else if (r < 0.82) {
          assert.equal(s.delete(key), model.entries.delete(key), `delete ${key}`);
        } else {
          const tags = pickTags(rnd);
          s.updateMeta(key, { tags, headers: { 'x-version': 'updated', 'x-pad': 'p'.repeat(rnd.int(300)) } });
          const e = model.entries.get(key);
          if (e !== undefined) {
            const got = s.peek(key)!;
            const size = estimateHeadBytes(got.meta) + e.bodyBytes;
            if (size > memoryBytes) model.entries.delete(key);
            else {
              model.touch(key);
              e.tags = tags;
              e.size = size;
              while (model.total() > memoryBytes) model.entries.delete(model.entries.keys().next().value!);
            }
          }
        }
        const st = s.stats();
        assert.equal(st.memoryBytes, model.total(), 'memory bytes');
        assert.equal(st.memoryObjects, model.entries.size, 'memory objects');
        assert.ok(st.memoryBytes <= memoryBytes);
        assert.ok(st.objects <= maxObjects);
        if (step % 5 === 0) {
          const expected = new Map([...model.entries].map(([k, e]) => [k, { tags: e.tags, version: e.version }]));
          checkIndexes(s, expected, `step ${step}`);
          for (const k of KEYS) assert.equal(s.peek(k) !== undefined, model.entries.has(k), `present ${k}`);
        }
      }
    } catch (err) {
      console.error(`storage model: failing seed ${seed} at step ${step}`);
      throw err;
    } finally {
      await s.close();
    }
  }
});

test('storage model: with a disk tier, indexes agree with the tiers and bodies are whole and current', async () => {
  for (let run = 0; run < 2; run++) {
    const seed = process.env.TEST_SEED === undefined ? freshSeed() : Number(process.env.TEST_SEED) + run;
    const rnd = new SeededRandom(seed);
    const { dir, cleanup } = tempDir();
    const s = await createStorage({
      memoryBytes: 2000,
      memoryObjectMaxBytes: 400,
      maxObjects: 8 + rnd.int(10),
      maxObjectBytes: 1500,
      disk: { dir, maxBytes: 4000 + rnd.int(3000), writeQueueBytes: 1200 },
    }).catch((err: unknown) => {
      cleanup();
      throw err;
    });
    // The version each key holds when present (a refused or aborted write leaves the previous one).
    const current = new Map<string, { version: number; bodyBytes: number; tags: string[] }>();
    let version = 0;
    let step = 0;
    try {
      for (step = 0; step < 300; step++) {
        const key = KEYS[rnd.int(KEYS.length)]!;
        const r = rnd.next();
        if (r < 0.45) {
          const v = ++version;
          const tags = pickTags(rnd);
          const n = rnd.int(1600);
          const w = s.begin(metaFor(key, tags, v), rnd.next() < 0.5 ? n : undefined);
          if (w !== undefined) {
            const data = versionBody(key, v, n);
            for (let off = 0; off < n; off += 300) w.write(data.subarray(off, off + 300));
            await w.commit();
            if (s.peek(key)?.meta.storedAt === v) current.set(key, { version: v, bodyBytes: n, tags });
          }
        } else if (r < 0.7) {
          s.get(key);
        } else if (r < 0.8) {
          s.delete(key);
          current.delete(key);
        } else if (r < 0.9) {
          const tags = pickTags(rnd);
          s.updateMeta(key, { tags });
          const c = current.get(key);
          if (c !== undefined && s.peek(key) !== undefined) c.tags = tags;
        } else {
          await s.idle();
        }
        if (rnd.next() < 0.5) continue;
        await s.idle();
        // Present keys are the truth; each must be the latest accepted version of its key.
        const expected = new Map<string, { tags: readonly string[]; version: number }>();
        for (const k of KEYS) {
          const obj = s.peek(k);
          if (obj === undefined) continue;
          const c = current.get(k);
          assert.ok(c !== undefined, `${k} present but deleted or never accepted`);
          assert.equal(obj.meta.storedAt, c.version, `${k}: an old version came back`);
          assert.deepEqual(obj.meta.tags, c.tags);
          expected.set(k, { tags: obj.meta.tags, version: obj.meta.storedAt });
          if (rnd.next() < 0.3) assert.ok((await readBody(obj)).equals(versionBody(k, c.version, c.bodyBytes)), `${k}: body`);
        }
        checkIndexes(s, expected, `step ${step}`);
        const st = s.stats();
        assert.equal(st.memoryObjects + st.diskObjects, st.objects);
        assert.ok(st.memoryBytes <= 2000);
        assert.ok(st.diskBytes <= s.options.disk!.maxBytes);
        // No file left behind: one per disk object, no temp files.
        const files = readdirSync(join(dir, 'objects')).reduce((n, sub) => n + readdirSync(join(dir, 'objects', sub)).length, 0);
        assert.equal(files, st.diskObjects, 'files on disk');
        assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
      }
      assert.ok(s.stats().demotions > 0, `the run moved objects to disk: ${JSON.stringify(s.stats())}`);
    } catch (err) {
      console.error(`storage model (disk): failing seed ${seed} at step ${step}`);
      throw err;
    } finally {
      await s.close();
      cleanup();
    }
  }
});
