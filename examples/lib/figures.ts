/**
 * Figure rendering for the Fashion-MNIST spiking tutorial (a TypeScript
 * reproduction of KerasSpiking's "Classifying Fashion MNIST with spiking
 * activations" notebook), without a browser or a canvas.
 *
 * Route: build a vega-lite spec -> `vega-lite.compile` -> vega `View`
 * (renderer `'none'`) -> `view.toSVG()` -> `@resvg/resvg-js` -> PNG.
 *
 * Inputs are plain typed arrays; nothing here imports the library's `core/`.
 *
 * @example
 * ```ts
 * import { sampleGridFigure, writeFigure } from './lib/figures.js';
 * const fig = await sampleGridFigure({ images, labels, classNames });
 * await writeFigure('out/figures/samples', fig); // out/figures/samples.{svg,png}
 * ```
 * @module
 */
import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { UnitSpec, UnitSpecWithFrame } from 'vega-lite/types_unstable/spec/unit.js';
import type { Field } from 'vega-lite/types_unstable/channeldef.js';
import { Resvg } from '@resvg/resvg-js';

/** A rendered figure: the SVG text, the PNG bytes and the pixel size of both. */
export interface Figure {
  /** Standalone SVG document (text is kept as `<text>`; fonts resolved by the viewer). */
  svg: string;
  /** PNG bytes rendered from `svg` (white background). */
  png: Uint8Array;
  /** Width in pixels (the PNG's IHDR width). */
  width: number;
  /** Height in pixels (the PNG's IHDR height). */
  height: number;
}

/** Image pixels: `uint8` 0..255 or float (typically 0..1), row-major. */
export type PixelArray = Uint8Array | Float32Array;

/** Font list used in the SVG; DejaVu Sans is matplotlib's default font. */
export const FONT_FAMILY = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const RESVG_DEFAULT_FAMILY = 'DejaVu Sans';
/** matplotlib's default colour cycle (tab10), identical to vega's category10. */
const TAB10 = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

// ---------------------------------------------------------------------------
// colormaps

/**
 * Per-image autoscaling like matplotlib's `imshow` (vmin = min, vmax = max),
 * quantised to matplotlib's 256-entry lookup table. Returns indices 0..255.
 * A constant image maps to 0 (as matplotlib's `Normalize` does).
 */
function levels(pixels: ArrayLike<number>, offset: number, length: number): Uint8Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = pixels[offset + i];
    if (!Number.isFinite(v)) throw new RangeError(`pixel ${offset + i} is not finite (${v})`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = new Uint8Array(length);
  if (!(hi > lo)) return out;
  const span = hi - lo;
  for (let i = 0; i < length; i++) {
    const t = (pixels[offset + i] - lo) / span;
    out[i] = Math.min(255, Math.floor(t * 256));
  }
  return out;
}

function grayHex(g: number): string {
  const h = g.toString(16).padStart(2, '0');
  return `#${h}${h}${h}`;
}

/** matplotlib `gray`: level 0 black, 255 white. */
const GRAY = Array.from({ length: 256 }, (_, i) => grayHex(i));
/** matplotlib `binary`: level 0 white, 255 black. */
const BINARY = Array.from({ length: 256 }, (_, i) => grayHex(255 - i));

interface PixelDatum {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  c: string;
}

/**
 * One image as pixel rectangles in screen coordinates (no scales), with
 * `skipLevel` (the background level) left out to keep the SVG small.
 */
function pixelRects(
  pixels: ArrayLike<number>,
  offset: number,
  side: number,
  pixelSize: number,
  originX: number,
  originY: number,
  cmap: readonly string[],
  skipLevel: number | null,
): PixelDatum[] {
  const lv = levels(pixels, offset, side * side);
  const out: PixelDatum[] = [];
  for (let r = 0; r < side; r++) {
    const y0 = originY + r * pixelSize;
    // merge horizontal runs of equal level into one rectangle
    for (let c = 0; c < side;) {
      const l = lv[r * side + c];
      let end = c + 1;
      while (end < side && lv[r * side + end] === l) end++;
      if (l !== skipLevel) {
        out.push({ x0: originX + c * pixelSize, x1: originX + end * pixelSize, y0, y1: y0 + pixelSize, c: cmap[l] });
      }
      c = end;
    }
  }
  return out;
}

/** vega-lite rect layer drawing `PixelDatum`s verbatim (no scales, no axes). */
function pixelLayer(values: PixelDatum[]): UnitSpec<Field> {
  return {
    data: { values },
    mark: { type: 'rect', aria: false },
    encoding: {
      x: { field: 'x0', type: 'quantitative', scale: null, axis: null },
      x2: { field: 'x1' },
      y: { field: 'y0', type: 'quantitative', scale: null, axis: null },
      y2: { field: 'y1' },
      fill: { field: 'c', type: 'nominal', scale: null, legend: null },
    },
  };
}

// ---------------------------------------------------------------------------
// rendering

/** Shared matplotlib-like look: DejaVu Sans, black frame, no grid. */
function baseConfig(): NonNullable<TopLevelSpec['config']> {
  return {
    font: FONT_FAMILY,
    background: 'white',
    view: { stroke: 'black', strokeWidth: 1 },
    title: { fontSize: 16, fontWeight: 'normal', color: 'black', offset: 8 },
    axis: {
      grid: false,
      domainColor: 'black',
      tickColor: 'black',
      labelColor: 'black',
      titleColor: 'black',
      labelFontSize: 12,
      titleFontSize: 14,
      titleFontWeight: 'normal',
      tickSize: 5,
      labelPadding: 3,
      titlePadding: 8,
    },
    legend: { labelFontSize: 13, labelColor: 'black', symbolSize: 120, symbolStrokeWidth: 2.5 },
  };
}

/**
 * Compile a vega-lite spec, render it headlessly to SVG with a vega `View`
 * (renderer `'none'`), then rasterise the SVG with resvg.
 *
 * @example
 * ```ts
 * const fig = await renderSpec({ mark: 'point', data: { values: [{ a: 1 }] }, encoding: { x: { field: 'a', type: 'quantitative' } } });
 * ```
 */
export async function renderSpec(spec: TopLevelSpec): Promise<Figure> {
  const { spec: vgSpec } = compile(spec);
  const view = new vega.View(vega.parse(vgSpec), { renderer: 'none', logLevel: vega.Warn });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const resvg = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'original' },
    font: {
      loadSystemFonts: true,
      defaultFontFamily: RESVG_DEFAULT_FAMILY,
      sansSerifFamily: RESVG_DEFAULT_FAMILY,
    },
    logLevel: 'off',
  });
  const png = new Uint8Array(resvg.render().asPng());
  const { width, height } = pngSize(png);
  return { svg, png, width, height };
}

/**
 * Width and height from a PNG's IHDR chunk.
 *
 * @example
 * ```ts
 * const { width, height } = pngSize(fig.png);
 * ```
 */
export function pngSize(png: Uint8Array): { width: number; height: number } {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (png.length < 24 || sig.some((b, i) => png[i] !== b)) throw new Error('not a PNG (bad signature)');
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const type = String.fromCharCode(png[12], png[13], png[14], png[15]);
  if (type !== 'IHDR') throw new Error(`not a PNG (first chunk is ${type}, expected IHDR)`);
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

// ---------------------------------------------------------------------------
// 1. sample grid

/** Options of {@link sampleGridFigure}. */
export interface SampleGridOptions {
  /** `n * imageSize * imageSize` pixels, row-major; uint8 0..255 or float 0..1. */
  images: PixelArray;
  /** One class index per image (at least the first `count`). */
  labels: ArrayLike<number>;
  /** Class names, indexed by label. */
  classNames: readonly string[];
  /** Number of images to draw (the first `count`; clipped to the number available). Default 25. */
  count?: number;
  /** Images per row. Default 5. */
  columns?: number;
  /** Side of each (square) input image in pixels. Default 28. */
  imageSize?: number;
  /** Screen pixels per image pixel. Default 5 (a 28x28 image becomes 140x140). */
  pixelSize?: number;
}

/**
 * Build the vega-lite spec for {@link sampleGridFigure} (exposed for tests
 * and for users who want to tweak it).
 *
 * @example
 * ```ts
 * const spec = sampleGridSpec({ images, labels, classNames });
 * const fig = await renderSpec(spec);
 * ```
 */
export function sampleGridSpec(opts: SampleGridOptions): TopLevelSpec {
  const side = opts.imageSize ?? 28;
  const columns = opts.columns ?? 5;
  const px = opts.pixelSize ?? 5;
  if (!Number.isInteger(side) || side <= 0) throw new RangeError(`imageSize must be a positive integer, got ${side}`);
  if (!Number.isInteger(columns) || columns <= 0) throw new RangeError(`columns must be a positive integer, got ${columns}`);
  if (!(px > 0)) throw new RangeError(`pixelSize must be positive, got ${px}`);
  const per = side * side;
  if (opts.images.length === 0 || opts.images.length % per !== 0) {
    throw new RangeError(`images.length (${opts.images.length}) is not a positive multiple of ${side}*${side}`);
  }
  const available = opts.images.length / per;
  const count = Math.min(opts.count ?? 25, available);
  if (!Number.isInteger(count) || count <= 0) throw new RangeError(`count must be a positive integer, got ${opts.count}`);
  if (opts.labels.length < count) throw new RangeError(`labels has ${opts.labels.length} entries, need ${count}`);

  const imgPx = side * px;
  const titleFont = 14;
  const titleBand = Math.round(titleFont * 1.9); // matplotlib puts the title just above the axes
  const gapX = Math.max(16, Math.round(imgPx * 0.2));
  const gapY = 8;
  const cellW = imgPx + gapX;
  const cellH = titleBand + imgPx + gapY;
  const cols = Math.min(columns, count);
  const rows = Math.ceil(count / columns);

  const pixels: PixelDatum[] = [];
  const titles: { x: number; y: number; text: string }[] = [];
  for (let i = 0; i < count; i++) {
    const label = opts.labels[i];
    const name = opts.classNames[label];
    if (!Number.isInteger(label) || name === undefined) {
      throw new RangeError(`labels[${i}] = ${label} has no class name (${opts.classNames.length} classes)`);
    }
    const ox = (i % columns) * cellW + gapX / 2;
    const oy = Math.floor(i / columns) * cellH + titleBand;
    pixels.push(...pixelRects(opts.images, i * per, side, px, ox, oy, BINARY, 0));
    titles.push({ x: ox + imgPx / 2, y: oy - 7, text: name });
  }

  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: cols * cellW,
    height: rows * cellH - gapY,
    padding: 10,
    autosize: { type: 'pad' },
    config: { ...baseConfig(), view: { stroke: null } },
    layer: [
      pixelLayer(pixels),
      {
        data: { values: titles },
        mark: {
          type: 'text',
          fontSize: titleFont,
          color: 'black',
          align: 'center',
          baseline: 'alphabetic',
          limit: cellW - 4,
        },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: null, axis: null },
          y: { field: 'y', type: 'quantitative', scale: null, axis: null },
          text: { field: 'text', type: 'nominal' },
        },
      },
    ],
  };
}

/**
 * The notebook's grid of training samples: each image in matplotlib's
 * `binary` colormap (autoscaled per image like `imshow`: minimum white,
 * maximum black), no axes, the class name above each image.
 *
 * @example
 * ```ts
 * const fig = await sampleGridFigure({ images: trainImages, labels: trainLabels, classNames });
 * await writeFigure('out/fashion-mnist/samples', fig);
 * ```
 */
export async function sampleGridFigure(opts: SampleGridOptions): Promise<Figure> {
  return renderSpec(sampleGridSpec(opts));
}

// ---------------------------------------------------------------------------
// 2. spikes + output predictions

/** Options of {@link spikeOutputFigure}. */
export interface SpikeOutputOptions {
  /** The input image, 28*28 (any square size works), uint8 or float. */
  image: PixelArray;
  /** Title of the image panel (the class name). */
  title: string;
  /** `steps * units` spike counts per neuron per timestep (non-negative; fractional allowed). */
  spikesPerNeuronPerStep: Float32Array;
  /** `steps * numClasses` softmax outputs, row-major by step. */
  probabilitiesOverTime: Float32Array;
  /** Number of timesteps. */
  steps: number;
  /** Number of classes (columns of `probabilitiesOverTime`). */
  numClasses: number;
  /** Simulation timestep in seconds; t = step * dt. */
  dt: number;
  /** Class names (legend labels), `numClasses` of them, unique. */
  classNames: readonly string[];
}

/** One histogram bin: centred on integer `k`, covering [k-0.5, k+0.5). */
export interface SpikeBin {
  k: number;
  lo: number;
  hi: number;
  count: number;
}

/**
 * Histogram of spike counts with integer bins centred on 0, 1, ..., K
 * (edges at k-0.5, half-open like numpy). K = round(max), so every value is
 * counted (numpy with the notebook's `arange(int(max) + 2) - 0.5` edges would
 * drop fractional values above int(max)+0.5; with integer counts the two agree).
 *
 * @example
 * ```ts
 * spikeHistogram(new Float32Array([0, 1, 1, 3])); // counts 1, 2, 0, 1 for k = 0..3
 * ```
 */
export function spikeHistogram(values: ArrayLike<number>): SpikeBin[] {
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`spike count ${i} must be finite and non-negative, got ${v}`);
    if (v > max) max = v;
  }
  const K = Math.floor(max + 0.5);
  const counts = new Array<number>(K + 1).fill(0);
  for (let i = 0; i < values.length; i++) counts[Math.min(K, Math.floor(values[i] + 0.5))]++;
  return counts.map((count, k) => ({ k, lo: k - 0.5, hi: k + 0.5, count }));
}

/**
 * Build the vega-lite spec for {@link spikeOutputFigure}.
 *
 * @example
 * ```ts
 * const spec = spikeOutputSpec(opts); // hconcat of image | histogram | predictions
 * ```
 */
export function spikeOutputSpec(opts: SpikeOutputOptions): TopLevelSpec {
  const { steps, numClasses, dt, classNames } = opts;
  if (!Number.isInteger(steps) || steps <= 0) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  if (!Number.isInteger(numClasses) || numClasses <= 0) throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  if (!(dt > 0)) throw new RangeError(`dt must be positive, got ${dt}`);
  if (classNames.length !== numClasses) throw new RangeError(`classNames has ${classNames.length} entries, numClasses is ${numClasses}`);
  if (new Set(classNames).size !== classNames.length) throw new RangeError('classNames must be unique (they key the legend)');
  if (opts.probabilitiesOverTime.length !== steps * numClasses) {
    throw new RangeError(`probabilitiesOverTime.length (${opts.probabilitiesOverTime.length}) != steps*numClasses (${steps * numClasses})`);
  }
  const spikes = opts.spikesPerNeuronPerStep;
  if (spikes.length === 0 || spikes.length % steps !== 0) {
    throw new RangeError(`spikesPerNeuronPerStep.length (${spikes.length}) is not a positive multiple of steps (${steps})`);
  }
  const side = Math.round(Math.sqrt(opts.image.length));
  if (side * side !== opts.image.length || side === 0) throw new RangeError(`image.length (${opts.image.length}) is not a square`);

  const panel = 260; // plot-area height of every panel
  const px = Math.max(1, Math.floor(panel / side));
  const imgPx = side * px;

  // left: the image (gray colormap, no axes)
  const imagePanel: UnitSpecWithFrame<Field> = {
    title: opts.title,
    width: imgPx,
    height: imgPx,
    view: { stroke: null },
    ...pixelLayer(pixelRects(opts.image, 0, side, px, 0, 0, GRAY, null)),
  };

  // middle: histogram of spikes per neuron per timestep
  const bins = spikeHistogram(spikes);
  const K = bins.length - 1;
  const margin = 0.05 * (K + 1); // matplotlib's default 5% axis margins
  const intTicks = Array.from({ length: K + 1 }, (_, k) => k);
  const histPanel: UnitSpecWithFrame<Field> = {
    title: 'Spikes per neuron per timestep',
    width: 290,
    height: panel,
    data: { values: bins },
    transform: [{ calculate: "datum.k + ' spikes: frequency ' + datum.count", as: 'description' }],
    // a hairline stroke in the fill colour hides anti-aliasing seams between adjacent bars
    mark: { type: 'rect', color: TAB10[0], stroke: TAB10[0], strokeWidth: 0.6 },
    encoding: {
      x: {
        field: 'lo',
        type: 'quantitative',
        title: '# of spikes',
        scale: { domain: [-0.5 - margin, K + 0.5 + margin], nice: false, zero: false },
        axis: K <= 15 ? { values: intTicks, format: 'd' } : { tickMinStep: 1, format: 'd' },
      },
      x2: { field: 'hi' },
      y: { field: 'count', type: 'quantitative', title: 'Frequency', axis: { format: 'd', tickMinStep: 1 } },
      y2: { datum: 0 },
      description: { field: 'description', type: 'nominal' },
    },
  };

  // right: softmax outputs over time, one line per class
  const probs: { t: number; cls: string; p: number }[] = [];
  for (let s = 0; s < steps; s++) {
    for (let c = 0; c < numClasses; c++) {
      probs.push({ t: s * dt, cls: classNames[c], p: opts.probabilitiesOverTime[s * numClasses + c] });
    }
  }
  const tSpan = Math.max(steps - 1, 1) * dt; // matplotlib's 5% margins around [0, (T-1)*dt]
  const colors = classNames.map((_, i) => TAB10[i % TAB10.length]);
  const predPanel: UnitSpecWithFrame<Field> = {
    title: 'Output predictions',
    width: 290,
    height: panel,
    data: { values: probs },
    mark: { type: 'line', strokeWidth: 1.5, clip: true },
    encoding: {
      x: {
        field: 't',
        type: 'quantitative',
        title: 'Time (s)',
        scale: { domain: [-0.05 * tSpan, 1.05 * tSpan], nice: false, zero: false },
      },
      y: { field: 'p', type: 'quantitative', title: 'Probability', scale: { domain: [-0.05, 1.05], nice: false, zero: false } },
      color: {
        field: 'cls',
        type: 'nominal',
        title: null,
        scale: { domain: [...classNames], range: colors },
        legend: { orient: 'right', symbolType: 'stroke' },
      },
    },
  };

  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    padding: 12,
    config: baseConfig(),
    spacing: 30,
    hconcat: [imagePanel, histPanel, predPanel],
    resolve: { scale: { color: 'independent' } },
  };
}

/**
 * The notebook's 1x3 figure for one test example: the image (gray colormap)
 * titled with its class, the histogram of spikes per neuron per timestep,
 * and the softmax output of each class over time.
 *
 * @example
 * ```ts
 * const fig = await spikeOutputFigure({
 *   image, title: classNames[label], spikesPerNeuronPerStep, probabilitiesOverTime,
 *   steps: 60, numClasses: 10, dt: 0.01, classNames,
 * });
 * await writeFigure('out/fashion-mnist/spikes-0', fig);
 * ```
 */
export async function spikeOutputFigure(opts: SpikeOutputOptions): Promise<Figure> {
  return renderSpec(spikeOutputSpec(opts));
}

// ---------------------------------------------------------------------------
// 3. writing

/**
 * Write `<path>.svg` and `<path>.png`, each atomically (a temporary file in
 * the same directory, then `rename`), creating the directory if needed.
 *
 * @example
 * ```ts
 * const { svgPath, pngPath } = await writeFigure('out/figs/samples', fig);
 * ```
 */
export async function writeFigure(
  pathWithoutExtension: string,
  figure: Pick<Figure, 'svg' | 'png'>,
): Promise<{ svgPath: string; pngPath: string }> {
  const dir = dirname(pathWithoutExtension);
  await mkdir(dir, { recursive: true });
  const svgPath = `${pathWithoutExtension}.svg`;
  const pngPath = `${pathWithoutExtension}.png`;
  await atomicWrite(svgPath, figure.svg);
  await atomicWrite(pngPath, figure.png);
  return { svgPath, pngPath };
}

async function atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
