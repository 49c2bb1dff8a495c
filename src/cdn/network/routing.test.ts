import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCdnError } from '../errors.js';
import { LatencyMatrix } from './geo.js';
import { parsePurgeRequest } from './purge.js';
import { EdgeSelector, RegionResolver } from './routing.js';
import { RecentSamples } from './window.js';

const latency = {
  clientsMs: {
    eu: { eu: 10, us: 90, ap: 160 },
    us: { eu: 90, us: 10, ap: 140 },
    ap: { eu: 160, us: 140, ap: 10 },
    af: { eu: 60, us: 60, ap: 200 },
  },
  shieldMs: { eu: 20, us: 60, ap: 120 },
  originMs: 30,
};

test('latency matrix: nearest edge regions by round trip, ties in config order; upstream links with and without the shield', () => {
  const m = new LatencyMatrix({ latency, edgeRegions: ['eu', 'us', 'ap'], shieldEnabled: true });
  assert.deepEqual(m.nearest('eu'), ['eu', 'us', 'ap']);
  assert.deepEqual(m.nearest('ap'), ['ap', 'us', 'eu']);
  assert.deepEqual(m.nearest('af'), ['eu', 'us', 'ap'], 'eu and us tie at 60 ms: config order decides');
  const reordered = new LatencyMatrix({ latency, edgeRegions: ['us', 'eu', 'ap'], shieldEnabled: true });
  assert.deepEqual(reordered.nearest('af'), ['us', 'eu', 'ap']);
  assert.equal(m.clientRttMs('ap', 'eu'), 160);
  assert.equal(m.edgeUpstreamRttMs('ap'), 120);
  assert.equal(m.shieldUpstreamRttMs(), 30);
  const noShield = new LatencyMatrix({ latency, edgeRegions: ['eu', 'us', 'ap'], shieldEnabled: false });
  assert.equal(noShield.edgeUpstreamRttMs('ap'), 150, 'edge -> origin runs through where the shield would be');
  assert.throws(() => m.nearest('mars'), /unknown client region "mars"/);
  const zero = { clientsMs: { eu: { eu: 0, us: 0 }, us: { eu: 0, us: 0 } }, shieldMs: {}, originMs: 0 };
  const flat = new LatencyMatrix({ latency: zero, edgeRegions: ['eu', 'us'], shieldEnabled: true });
  assert.deepEqual(flat.nearest('us'), ['us', 'eu'], 'on a tie a client\'s own region comes first');
  assert.throws(() => new LatencyMatrix({ latency: { ...latency, clientsMs: { eu: { eu: 1 } } }, edgeRegions: ['eu', 'us'], shieldEnabled: true }), /latency\.clients\.eu\.us is missing/);
});

test('region resolver: the header wins (any case), then the first matching CIDR rule, then the default; an unknown region is a 400', () => {
  const r = new RegionResolver({
    clientRegions: ['eu', 'us', 'ap', 'af'],
    header: 'x-client-region',
    addressMap: [
      { cidr: '10.1.0.0/16', region: 'eu' },
      { cidr: '10.0.0.0/8', region: 'us' },
      { cidr: '127.0.0.0/8', region: 'ap' },
      { cidr: 'fd00::/8', region: 'af' },
    ],
    defaultRegion: 'eu',
  });
  assert.deepEqual(r.resolve('us', '10.1.2.3'), { region: 'us', source: 'header' });
  assert.deepEqual(r.resolve('AP', undefined), { region: 'ap', source: 'header' });
  assert.deepEqual(r.resolve(['af', 'eu'], undefined), { region: 'af', source: 'header' });
  assert.deepEqual(r.resolve(undefined, '10.1.2.3'), { region: 'eu', source: 'address' }, 'first match wins over the wider 10/8');
  assert.deepEqual(r.resolve(undefined, '10.9.2.3'), { region: 'us', source: 'address' });
  assert.deepEqual(r.resolve(undefined, '::ffff:127.0.0.1'), { region: 'ap', source: 'address' }, 'IPv4-mapped IPv6 matches IPv4 rules');
  assert.deepEqual(r.resolve(undefined, 'fd12::1'), { region: 'af', source: 'address' });
  assert.deepEqual(r.resolve('  ', '192.0.2.1'), { region: 'eu', source: 'default' });
  assert.deepEqual(r.resolve(undefined, '::1'), { region: 'eu', source: 'default' }, 'loopback maps only when listed');
  assert.throws(
    () => r.resolve('mars', undefined),
    (err) => isCdnError(err, 'ARCHLAB_CDN_BAD_REQUEST') && /unknown client region "mars".*known: eu, us, ap, af/.test(err.message),
  );
});

test('edge selector: a region\'s URLs spread over its nodes, the same URL always lands on the same node, nearest region first', () => {
  const m = new LatencyMatrix({ latency, edgeRegions: ['eu', 'us', 'ap'], shieldEnabled: true });
  const edges = [
    { name: 'eu-1', region: 'eu' },
    { name: 'eu-2', region: 'eu' },
    { name: 'eu-3', region: 'eu' },
    { name: 'us-1', region: 'us' },
    { name: 'ap-1', region: 'ap' },
  ];
  for (const algorithm of ['rendezvous', 'ketama'] as const) {
    const s = new EdgeSelector(m, edges, algorithm);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const key = `http://cdn.test/objects/${i}`;
      const e = s.candidates('eu', key, 1)[0]!;
      assert.equal(e.region, 'eu');
      counts.set(e.name, (counts.get(e.name) ?? 0) + 1);
      assert.equal(s.candidates('eu', key, 1)[0]!.name, e.name, 'stable');
      assert.equal(new EdgeSelector(m, edges, algorithm).inRegion('eu', key)!.name, e.name, 'another router with the same nodes agrees');
    }
    assert.equal(counts.size, 3, `${algorithm}: every eu node gets URLs`);
    for (const [name, n] of counts) assert.ok(n > 700 && n < 1300, `${algorithm}: ${name} got ${n} of 3000`);
    assert.equal(s.candidates('ap', 'http://cdn.test/x', 1)[0]!.name, 'ap-1');
    // Failover order: the other eu nodes by preference, then the owner in the next-nearest region.
    const c = s.candidates('eu', 'http://cdn.test/x', 5);
    assert.deepEqual(c.slice(0, 3).map((e) => e.region), ['eu', 'eu', 'eu']);
    assert.equal(new Set(c.slice(0, 3).map((e) => e.name)).size, 3);
    assert.deepEqual(c.slice(3).map((e) => e.name), ['us-1', 'ap-1']);
  }
  // A region without nodes is skipped: clients in it go to the next nearest.
  const partial = new EdgeSelector(m, [{ name: 'us-1', region: 'us' }]);
  assert.equal(partial.candidates('eu', 'k', 1)[0]!.name, 'us-1');
  assert.equal(partial.inRegion('eu', 'k'), undefined);
});

test('recent samples: nearest-rank percentiles over the last N, checked against a sort of the same window', () => {
  const w = new RecentSamples(100);
  assert.equal(w.percentile(50), undefined);
  const all: number[] = [];
  let x = 7;
  for (let i = 0; i < 1000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const v = x % 997;
    all.push(v);
    w.add(v);
  }
  const window = all.slice(-100).sort((a, b) => a - b);
  for (const p of [1, 50, 90, 99, 100]) assert.equal(w.percentile(p), window[Math.ceil((p / 100) * 100) - 1], `p${p}`);
  assert.equal(w.percentile(0), window[0]);
  assert.equal(w.last(), all[all.length - 1]);
  assert.equal(w.count, 1000);
  assert.throws(() => new RecentSamples(0), /capacity/);
});

test('purge requests: exactly one of url, prefix, tag; paths take the site host; absolute URLs keep theirs', () => {
  assert.deepEqual(parsePurgeRequest({ url: '/a?b=1' }, 'cdn.test'), { selector: { kind: 'url', host: 'cdn.test', path: '/a?b=1' }, mode: 'hard' });
  assert.deepEqual(parsePurgeRequest({ prefix: 'http://Other.Test:81/img/', mode: 'soft' }, 'cdn.test'), {
    selector: { kind: 'prefix', host: 'other.test:81', path: '/img/' },
    mode: 'soft',
  });
  assert.deepEqual(parsePurgeRequest({ tag: 'assets' }, 'x'), { selector: { kind: 'tag', tag: 'assets' }, mode: 'hard' });
  const bad = (req: unknown, re: RegExp): void =>
    assert.throws(
      () => parsePurgeRequest(req as never, 'x'),
      (err) => isCdnError(err, 'ARCHLAB_CDN_BAD_REQUEST') && re.test(err.message),
    );
  bad({}, /exactly one of url, prefix, tag \(got none\)/);
  bad({ url: '/a', tag: 't' }, /got url, tag/);
  bad({ url: '/a', mode: 'gentle' }, /mode must be "soft" or "hard"/);
  bad({ url: 'ftp://x/a' }, /http\(s\) URL/);
  bad({ url: 'a/b' }, /neither a path/);
  bad({ url: '/a b' }, /whitespace/);
  bad({ tag: 'two words' }, /visible ASCII/);
  bad({ tag: 42 }, /visible ASCII/);
  bad(null, /a purge is an object/);
});
