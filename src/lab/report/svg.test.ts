import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isArchlabError } from '../../core/errors.js';
import { barChart, escapeXml, formatTick, lineChart, niceTicks, scaleLinear } from './svg.js';

/**
 * A small XML well-formedness check: balanced tags, quoted attributes, no raw '<' or '&' in text.
 * Returns the element names in document order.
 */
function parseXml(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const token = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy;
  let pos = 0;
  const body = xml.trim();
  while (pos < body.length) {
    token.lastIndex = pos;
    const m = token.exec(body);
    assert.ok(m, `not well-formed at ${pos}: ${JSON.stringify(body.slice(pos, pos + 60))}`);
    pos = token.lastIndex;
    const [, close, name, , selfClose, text] = m;
    if (text !== undefined) {
      assert.ok(!/&(?!(lt|gt|amp|quot|#39);)/.test(text), `bare & in text: ${text}`);
      continue;
    }
    if (close) assert.equal(stack.pop(), name, `mismatched </${name}>`);
    else {
      names.push(name!);
      if (!selfClose) stack.push(name!);
    }
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  return names;
}

function attr(xml: string, element: string, name: string): string[] {
  const re = new RegExp(`<${element}\\b[^>]*\\s${name}="([^"]*)"`, 'g');
  return [...xml.matchAll(re)].map((m) => m[1]!);
}

test('scaleLinear maps the domain ends to the range ends, and a zero-width domain to the middle', () => {
  const s = scaleLinear([10, 20], [100, 300]);
  assert.equal(s(10), 100);
  assert.equal(s(20), 300);
  assert.equal(s(15), 200);
  const inverted = scaleLinear([0, 50], [400, 0]);
  assert.equal(inverted(0), 400);
  assert.equal(inverted(50), 0);
  assert.equal(scaleLinear([5, 5], [0, 10])(5), 5);
});

test('niceTicks covers the range with round steps', () => {
  assert.deepEqual(niceTicks(0, 100, 5), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0, 97, 5), [0, 20, 40, 60, 80, 100]);
  const t = niceTicks(3, 4.2, 4);
  assert.ok(t[0]! <= 3 && t[t.length - 1]! >= 4.2, `${t}`);
  assert.deepEqual(t, [3, 3.5, 4, 4.5]);
  const one = niceTicks(7, 7);
  assert.ok(one.length >= 2 && one[0]! <= 7 && one[one.length - 1]! >= 7, `${one}`);
  assert.deepEqual(niceTicks(0, 0), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  const neg = niceTicks(-35, 12, 5);
  assert.ok(neg[0]! <= -35 && neg[neg.length - 1]! >= 12, `${neg}`);
  assert.throws(() => niceTicks(0, Infinity), (e) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('formatTick shortens large and small numbers', () => {
  assert.equal(formatTick(0), '0');
  assert.equal(formatTick(250), '250');
  assert.equal(formatTick(15_000), '15k');
  assert.equal(formatTick(2_500_000), '2.5M');
  assert.equal(formatTick(0.25), '0.25');
  assert.equal(formatTick(-40_000), '-40k');
});

test('escapeXml escapes markup and drops characters XML forbids', () => {
  assert.equal(escapeXml(`<a href="x">&'\u0001`), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;');
});

test('lineChart is a well-formed, accessible, standalone SVG', () => {
  const svg = lineChart({
    title: 'Queue depth',
    xLabel: 'time (s)',
    yLabel: 'messages',
    series: [
      { name: 'archlab', points: [[0, 0], [1, 500], [2, 1000], [3, 200]] },
      { name: 'rabbitmq', points: [[0, 0], [3, 800]] },
    ],
    referenceLines: [{ y: 1000, label: 'maxLength 1000' }],
  });
  const names = parseXml(svg);
  assert.equal(names[0], 'svg');
  assert.ok(names.includes('title') && names.includes('desc'));
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /role="img"/);
  const [labelled] = attr(svg, 'svg', 'aria-labelledby');
  for (const id of labelled!.split(' ')) assert.ok(svg.includes(`id="${id}"`), `aria-labelledby points at missing id ${id}`);
  assert.equal((svg.match(/<polyline/g) ?? []).length, 2);
  assert.match(svg, /<desc[^>]*>.*archlab: 4 points, time \(s\) 0 to 3, messages 0 to 1000\./);
  assert.match(svg, /maxLength 1000/);
  assert.ok(!/<script|href=|@import/.test(svg), 'nothing external or executable');
  // Deterministic: the same input gives the same bytes.
  assert.equal(svg, lineChart({ title: 'Queue depth', xLabel: 'time (s)', yLabel: 'messages', series: [{ name: 'archlab', points: [[0, 0], [1, 500], [2, 1000], [3, 200]] }, { name: 'rabbitmq', points: [[0, 0], [3, 800]] }], referenceLines: [{ y: 1000, label: 'maxLength 1000' }] }));
});

test('lineChart places points on the scale of the axes', () => {
  const width = 600;
  const height = 300;
  const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', width, height, series: [{ name: 's', points: [[100, 50], [0, 0]] }] });
  const [points] = attr(svg, 'polyline', 'points');
  const pairs = points!.split(' ').map((p) => p.split(',').map(Number) as [number, number]);
  assert.equal(pairs.length, 2);
  // Sorted by x: (0,0) first, at the plot's bottom-left; (100,50) at the top-right (ticks end at 100 and 50).
  const [a, b] = pairs as [[number, number], [number, number]];
  assert.ok(a[0] < b[0] && a[1] > b[1], `${points}`);
  assert.equal(a[0], 64, 'x = 0 at the left edge of the plot');
  assert.equal(a[1], height - 46, 'y = 0 at the bottom edge of the plot');
  // y runs from the bottom (0) to the top (the largest y tick, >= 50) of the plot, linearly.
  const yTicks = [...svg.matchAll(/text-anchor="end" fill="#444">([^<]+)</g)].map((m) => Number(m[1]));
  const top = Math.max(...yTicks);
  assert.ok(top >= 50 && yTicks[0] === 0, `${yTicks}`);
  assert.ok(Math.abs(b[1] - (height - 46 - ((height - 46 - 36) * 50) / top)) <= 0.1, `y of 50 is ${b[1]} with ticks ${yTicks}`);
  // x = 100 sits exactly under the x tick labelled 100.
  const tick100 = /<text x="([\d.]+)" y="[\d.]+" text-anchor="middle" fill="#444">100</.exec(svg);
  assert.ok(tick100, 'an x tick at 100');
  assert.equal(b[0], Number(tick100[1]));
  // Half-way x lands half-way between the ends.
  const mid = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', width, height, series: [{ name: 's', points: [[0, 0], [50, 25], [100, 50]] }] });
  const xs = attr(mid, 'polyline', 'points')[0]!.split(' ').map((p) => Number(p.split(',')[0]));
  assert.ok(Math.abs(xs[1]! - (xs[0]! + xs[2]!) / 2) <= 0.1, `${xs}`);
});

test('lineChart escapes series names, titles and labels', () => {
  const evil = '</text><script>alert("x")</script> & co';
  const svg = lineChart({ title: `T ${evil}`, xLabel: `x ${evil}`, yLabel: 'y <1>', series: [{ name: evil, points: [[0, 1], [1, 2]] }] });
  parseXml(svg);
  assert.ok(!svg.includes('<script>'));
  assert.ok(svg.includes('&lt;/text&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co'));
  assert.ok(svg.includes('y &lt;1&gt;'));
});

test('lineChart handles empty series, a series of one point and non-finite points', () => {
  const empty = lineChart({ title: 'empty', xLabel: 'x', yLabel: 'y', series: [] });
  parseXml(empty);
  assert.match(empty, /no data/);
  const noPoints = lineChart({ title: 'none', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: [] }] });
  parseXml(noPoints);
  assert.match(noPoints, /no data/);
  assert.match(noPoints, /a: no points/);
  const one = lineChart({ title: 'one', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: [[5, 5]] }, { name: 'b', points: [[1, NaN], [2, Infinity]] }] });
  parseXml(one);
  assert.equal((one.match(/<circle/g) ?? []).length, 1);
  assert.ok(!/NaN|Infinity/.test(one), 'no non-finite coordinate written');
  assert.match(one, /b: no points/);
});

test('charts refuse sizes too small to draw', () => {
  assert.throws(() => lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [], width: 50 }), (e) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
  assert.throws(() => barChart({ title: 't', yLabel: 'y', groups: [], series: [], height: 10 }), (e) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('barChart draws one bar per series per group, scaled from zero, with gaps for missing values', () => {
  const height = 300;
  const svg = barChart({
    title: 'Produce rate',
    yLabel: 'msgs/s',
    xLabel: 'message size',
    height,
    groups: ['100 B', '1 KB'],
    series: [
      { name: 'archlab <log>', values: [400_000, 100_000] },
      { name: 'rabbitmq', values: [200_000, null] },
    ],
  });
  const names = parseXml(svg);
  assert.equal(names[0], 'svg');
  // Legend swatches are rects too; bars carry a <title> tooltip.
  const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="[^"]+"><title>([^<]*)<\/title>/g)];
  assert.equal(bars.length, 3, 'the missing value draws no bar');
  const h = Object.fromEntries(bars.map((m) => [m[5]!, Number(m[4])]));
  assert.ok(Math.abs(h['archlab &lt;log&gt;, 100 B: 400k']! / h['rabbitmq, 100 B: 200k']! - 2) < 0.01, JSON.stringify(h));
  assert.ok(Math.abs(h['archlab &lt;log&gt;, 100 B: 400k']! / h['archlab &lt;log&gt;, 1 KB: 100k']! - 4) < 0.01, JSON.stringify(h));
  // Bars stand on the zero line at the bottom of the plot.
  for (const b of bars) assert.ok(Math.abs(Number(b[2]) + Number(b[4]) - (height - 46)) <= 0.15, `${b[0]}`);
  assert.match(svg, /rabbitmq 1 KB|1 KB: archlab &lt;log&gt; 100k, rabbitmq no value/);
});

test('barChart with no values or groups says so', () => {
  const svg = barChart({ title: 't', yLabel: 'y', groups: ['a'], series: [{ name: 's', values: [null] }] });
  parseXml(svg);
  assert.match(svg, /no data/);
  assert.throws(() => barChart({ title: 't', yLabel: 'y', groups: ['a'], series: [{ name: 's', values: [1, 2] }] }), (e) => isArchlabError(e, 'ARCHLAB_INVALID_ARGUMENT'));
});

test('horizontal barChart lists groups down the left, scales bar lengths from zero and labels values', () => {
  const svg = barChart({
    title: 'h',
    yLabel: 'msgs/s',
    orientation: 'horizontal',
    groups: ['a long system name', 'b'],
    series: [
      { name: '100 B', values: [300, 100] },
      { name: '1 KB', values: [150, null] },
    ],
  });
  parseXml(svg);
  const bars = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="[^"]+"><title>([^<]*)<\/title>/g)];
  assert.equal(bars.length, 3);
  const w = Object.fromEntries(bars.map((m) => [m[5]!, Number(m[3])]));
  assert.ok(Math.abs(w['100 B, a long system name: 300']! / w['100 B, b: 100']! - 3) < 0.02, JSON.stringify(w));
  assert.ok(Math.abs(w['100 B, a long system name: 300']! / w['1 KB, a long system name: 150']! - 2) < 0.02, JSON.stringify(w));
  // Every bar starts at the same x (zero), and the group label sits left of it.
  assert.equal(new Set(bars.map((m) => m[1])).size, 1);
  const label = /<text x="([\d.]+)" y="[\d.]+" dy="0.32em" text-anchor="end" fill="#222">a long system name</.exec(svg);
  assert.ok(label && Number(label[1]) < Number(bars[0]![1]), 'group label left of the bars');
  assert.match(svg, />300</, 'value written at the end of its bar');
});

test('barChart gives every series its own fill, hatching past the palette', () => {
  const series = Array.from({ length: 11 }, (_, i) => ({ name: `s${i}`, values: [i + 1] }));
  const svg = barChart({ title: 'many', yLabel: 'y', groups: ['g'], series });
  parseXml(svg);
  const fills = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="([^"]+)"><title>/g)].map((m) => m[1]);
  assert.equal(fills.length, 11);
  assert.equal(new Set(fills).size, 11, `fills repeat: ${fills.join(' ')}`);
  for (const f of fills.filter((x) => x!.startsWith('url('))) {
    const ref = /url\(#([^)]+)\)/.exec(f!)![1];
    assert.ok(svg.includes(`<pattern id="${ref}"`), `pattern ${ref} is defined`);
  }
});
