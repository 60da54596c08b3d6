import t, { type Test } from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import {
  pngSize,
  sampleGridFigure,
  sampleGridSpec,
  spikeHistogram,
  spikeOutputFigure,
  spikeOutputSpec,
  writeFigure,
  type Figure,
} from '../../examples/lib/figures.js';

const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const S = 28;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Deterministic Park-Miller generator in [0, 1). */
function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

/** n synthetic 28x28 uint8 images: a shaded ellipse per image. */
function syntheticImages(n: number): Uint8Array {
  const out = new Uint8Array(n * S * S);
  for (let i = 0; i < n; i++) {
    const cx = 14 + ((i % 3) - 1) * 3;
    const rx = 5 + (i % 5) * 1.5;
    const ry = 8 + (i % 4);
    for (let r = 0; r < S; r++) {
      for (let c = 0; c < S; c++) {
        const d = ((c - cx) / rx) ** 2 + ((r - 14) / ry) ** 2;
        out[i * S * S + r * S + c] = d < 1 ? Math.round(255 * (1 - 0.7 * d)) : 0;
      }
    }
  }
  return out;
}

function syntheticSpikeInputs(steps: number, units: number, numClasses: number) {
  const rnd = rng(7);
  const spikes = new Float32Array(steps * units);
  for (let i = 0; i < spikes.length; i++) {
    const u = rnd();
    spikes[i] = u < 0.55 ? 0 : u < 0.8 ? 1 : u < 0.95 ? 2 : u < 0.99 ? 3 : 5; // bin 4 stays empty
  }
  const probs = new Float32Array(steps * numClasses);
  for (let s = 0; s < steps; s++) {
    const e = Array.from({ length: numClasses }, (_, c) => Math.exp((c === 3 ? s / 6 : 0) + 0.5 * rnd()));
    const z = e.reduce((a, b) => a + b, 0);
    for (let c = 0; c < numClasses; c++) probs[s * numClasses + c] = e[c] / z;
  }
  return { spikes, probs };
}

function checkPng(t: Test, fig: Figure, w: [number, number], h: [number, number]): void {
  t.same([...fig.png.subarray(0, 8)], PNG_SIGNATURE, 'PNG signature');
  t.same(pngSize(fig.png), { width: fig.width, height: fig.height }, 'IHDR size equals the returned size');
  t.ok(fig.width >= w[0] && fig.width <= w[1], `width ${fig.width} in [${w}]`);
  t.ok(fig.height >= h[0] && fig.height <= h[1], `height ${fig.height} in [${h}]`);
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(fig.svg);
  t.ok(m, 'SVG root has width/height');
  if (m) t.same([Number(m[1]), Number(m[2])], [fig.width, fig.height], 'SVG size equals PNG size');
}

/** Text contents of every `<text>` element, XML entities decoded. */
function svgTexts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) =>
    m[1]
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, '&'),
  );
}

/** Independent count: values v with k - 0.5 <= v < k + 0.5, for k = 0..K. */
function countBins(values: ArrayLike<number>): number[] {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]);
  const counts: number[] = [];
  for (let k = 0; k - 0.5 <= max; k++) {
    let n = 0;
    for (let i = 0; i < values.length; i++) if (values[i] >= k - 0.5 && values[i] < k + 0.5) n++;
    counts.push(n);
  }
  return counts;
}

type Values = Record<string, unknown>[];
/** `data.values` of each unit in an hconcat / layer spec, in order. */
function unitValues(spec: TopLevelSpec): Values[] {
  const units = ('hconcat' in spec ? spec.hconcat : 'layer' in spec ? spec.layer : [spec]) as { data?: { values?: unknown } }[];
  return units.map((u) => (u.data?.values ?? []) as Values);
}

t.test('pngSize reads IHDR and rejects non-PNGs', async (t) => {
  const buf = new Uint8Array(33);
  buf.set(PNG_SIGNATURE);
  buf.set([0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52], 8);
  new DataView(buf.buffer).setUint32(16, 1234);
  new DataView(buf.buffer).setUint32(20, 56);
  t.same(pngSize(buf), { width: 1234, height: 56 });
  t.throws(() => pngSize(new Uint8Array(40)), /signature/);
});

t.test('spikeHistogram matches an independent count', async (t) => {
  const rnd = rng(3);
  const ints = Float32Array.from({ length: 5000 }, () => Math.floor(-Math.log(1 - rnd()) * 1.3));
  t.same(
    spikeHistogram(ints).map((b) => b.count),
    countBins(ints),
    'integer counts',
  );
  const fractional = Float32Array.from({ length: 3000 }, () => rnd() * 4.2);
  const bins = spikeHistogram(fractional);
  t.same(
    bins.map((b) => b.count),
    countBins(fractional),
    'fractional rates',
  );
  t.equal(
    bins.reduce((a, b) => a + b.count, 0),
    fractional.length,
    'every value counted',
  );
  t.same(
    bins.map((b) => [b.lo, b.k, b.hi]),
    bins.map((_, k) => [k - 0.5, k, k + 0.5]),
    'edges at k +- 0.5',
  );
  t.same(
    spikeHistogram(new Float32Array([0, 1, 1, 3, 0.5, 0.49])).map((b) => b.count),
    [2, 3, 0, 1],
    'half-open bins',
  );
  t.same(
    spikeHistogram(new Float32Array(4)).map((b) => b.count),
    [4],
    'all zeros',
  );
  t.throws(() => spikeHistogram(new Float32Array([1, -1])), RangeError);
  t.throws(() => spikeHistogram(new Float32Array([NaN])), RangeError);
});

t.test('sampleGridFigure', async (t) => {
  const n = 30;
  const images = syntheticImages(n);
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % 10);
  const fig = await sampleGridFigure({ images, labels, classNames: CLASS_NAMES });
  checkPng(t, fig, [700, 1100], [700, 1100]);

  const texts = svgTexts(fig.svg);
  for (const name of CLASS_NAMES) t.ok(texts.includes(name), `title "${name}" in SVG`);
  const titleTexts = texts.filter((s) => CLASS_NAMES.includes(s));
  t.same(
    titleTexts,
    Array.from(labels.subarray(0, 25), (l) => CLASS_NAMES[l]),
    '25 titles in order',
  );
  t.notMatch(fig.svg, /role-axis/, 'no axes');

  // pixel colours: matplotlib `binary`, autoscaled per image (min white, max black)
  const spec = sampleGridSpec({ images, labels, classNames: CLASS_NAMES });
  const [pixels] = unitValues(spec) as { x0: number; x1: number; y0: number; y1: number; c: string }[][];
  const black = pixels.filter((p) => p.c === '#000000');
  t.ok(black.length >= 25, 'every image has its maximum drawn black');
  t.notOk(
    pixels.some((p) => p.c === '#ffffff'),
    'zero (white) pixels are left to the background',
  );
  let covered = 0;
  for (const p of pixels) covered += (p.x1 - p.x0) * (p.y1 - p.y0);
  let nonzero = 0;
  for (let i = 0; i < 25 * S * S; i++) if (images[i] > 0) nonzero++;
  t.equal(covered, nonzero * 25, 'rects cover exactly the non-zero pixels (5x5 px each)');

  // uint8 0..255 and float 0..1 give the same picture
  const floats = Float32Array.from(images, (v) => v / 255);
  const specF = sampleGridSpec({ images: floats, labels, classNames: CLASS_NAMES });
  t.same(unitValues(specF)[0], pixels, 'float input renders like uint8 input');

  const small = await sampleGridFigure({ images, labels, classNames: CLASS_NAMES, count: 6, columns: 3 });
  checkPng(t, small, [450, 650], [300, 450]);
  t.equal(svgTexts(small.svg).filter((s) => CLASS_NAMES.includes(s)).length, 6);

  t.throws(() => sampleGridSpec({ images: new Uint8Array(100), labels, classNames: CLASS_NAMES }), RangeError);
  t.throws(() => sampleGridSpec({ images, labels: [1, 2, 42], classNames: CLASS_NAMES, count: 3 }), RangeError);
});

t.test('spikeOutputFigure', async (t) => {
  const steps = 40;
  const units = 64;
  const numClasses = CLASS_NAMES.length;
  const { spikes, probs } = syntheticSpikeInputs(steps, units, numClasses);
  const image = syntheticImages(4).subarray(3 * S * S, 4 * S * S);
  const opts = {
    image,
    title: 'Dress',
    spikesPerNeuronPerStep: spikes,
    probabilitiesOverTime: probs,
    steps,
    numClasses,
    dt: 0.01,
    classNames: CLASS_NAMES,
  };
  const fig = await spikeOutputFigure(opts);
  checkPng(t, fig, [1000, 1500], [300, 500]);

  const texts = svgTexts(fig.svg);
  for (const s of [
    'Dress',
    'Spikes per neuron per timestep',
    'Output predictions',
    '# of spikes',
    'Frequency',
    'Time (s)',
    'Probability',
  ]) {
    t.ok(texts.includes(s), `"${s}" in SVG`);
  }
  for (const name of CLASS_NAMES) t.ok(texts.includes(name), `legend entry "${name}"`);
  t.equal(fig.svg.match(/aria-roledescription="line mark"/g)?.length, numClasses, 'one line per class');

  const expected = countBins(spikes);
  t.same(expected, [expected[0], expected[1], expected[2], expected[3], 0, expected[5]], 'test data has an empty bin');

  // the histogram data in the generated spec
  const hist = unitValues(spikeOutputSpec(opts))[1] as { k: number; count: number }[];
  t.same(
    hist.map((b) => b.k),
    expected.map((_, k) => k),
    'integer bin centres 0..max',
  );
  t.same(
    hist.map((b) => b.count),
    expected,
    'spec frequencies equal an independent count',
  );

  // the rendered bars: labels carry the frequency, heights are proportional to it
  const bars = [
    ...fig.svg.matchAll(/<path aria-label="(\d+) spikes: frequency (\d+)"[^>]* d="M([-\d.e]+),([-\d.e]+)h([-\d.e]+)v([-\d.e]+)h/g),
  ].map((m) => ({
    k: Number(m[1]),
    count: Number(m[2]),
    x: Number(m[3]),
    width: Number(m[5]),
    height: Number(m[6]),
  }));
  t.same(
    bars.map((b) => b.count),
    expected,
    'rendered bar frequencies equal the independent count',
  );
  const pxPerCount = bars[0].height / expected[0];
  for (const b of bars) t.ok(Math.abs(b.height - b.count * pxPerCount) < 1e-6, `bar ${b.k} height proportional to ${b.count}`);
  for (let i = 1; i < bars.length; i++) {
    t.ok(Math.abs(bars[i - 1].x + bars[i - 1].width - bars[i].x) < 1e-6, `bars ${i - 1} and ${i} are adjacent`);
  }

  // predictions data: t = step * dt, one value per class and step
  const pred = unitValues(spikeOutputSpec(opts))[2] as { t: number; cls: string; p: number }[];
  t.equal(pred.length, steps * numClasses);
  t.same(pred[numClasses * 5 + 3], { t: 5 * 0.01, cls: 'Dress', p: probs[numClasses * 5 + 3] });

  t.throws(() => spikeOutputSpec({ ...opts, steps: 41 }), RangeError);
  t.throws(() => spikeOutputSpec({ ...opts, classNames: CLASS_NAMES.slice(1) }), RangeError);
  t.throws(() => spikeOutputSpec({ ...opts, image: new Uint8Array(27) }), RangeError);
});

t.test('writeFigure writes .svg and .png atomically', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'spiketrace-figures-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const fig = await sampleGridFigure({
    images: syntheticImages(4),
    labels: [0, 1, 2, 3],
    classNames: CLASS_NAMES,
    count: 4,
    columns: 2,
  });
  const dir = join(root, 'nested', 'figs');
  const base = join(dir, 'samples');
  await writeFile(join(root, 'unrelated.txt'), 'x');
  const paths = await writeFigure(base, fig);
  t.same(paths, { svgPath: `${base}.svg`, pngPath: `${base}.png` });
  t.same((await readdir(dir)).sort(), ['samples.png', 'samples.svg'], 'no temp files left');
  t.equal(await readFile(`${base}.svg`, 'utf8'), fig.svg);
  t.same(new Uint8Array(await readFile(`${base}.png`)), fig.png);
  // overwrite in place
  const fig2 = { ...fig, svg: fig.svg.replace('</svg>', '<!-- 2 --></svg>') };
  await writeFigure(base, fig2);
  t.same((await readdir(dir)).sort(), ['samples.png', 'samples.svg'], 'still no temp files after overwrite');
  t.equal(await readFile(`${base}.svg`, 'utf8'), fig2.svg);
});
