/**
 * spiketrace/plot: a spike raster and a membrane-potential trace as SVG and PNG, for user scripts.
 * The figures go through the tutorial's stack (vega-lite -> vega -> SVG -> resvg -> PNG). vega,
 * vega-lite and @resvg/resvg-js are optional peer dependencies, imported when a figure is rendered
 * (never by spiketrace/core, /nn, /spiking or /data), so only a script that draws needs them.
 */

/** A rendered figure: SVG text, PNG bytes and the pixel size. */
export interface Figure {
  readonly svg: string;
  readonly png: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** A (time, neurons) array: an NDArray / Tensor (anything with `shape` and `toTyped()`), or nested rows. */
export type TimeByNeurons = { readonly shape: readonly number[]; toTyped(): ArrayLike<number> } | readonly (readonly number[])[];

/** A vega-lite spec as JSON (the renderer compiles it). */
export type VegaLiteSpec = Record<string, unknown>;

function rowsOf(where: string, x: TimeByNeurons): { steps: number; neurons: number; at: (t: number, n: number) => number } {
  if (Array.isArray(x)) {
    const rows = x as readonly (readonly number[])[];
    const neurons = rows[0]?.length ?? 0;
    if (rows.some((r) => r.length !== neurons)) throw new RangeError(`${where}: every time step needs ${neurons} values`);
    return { steps: rows.length, neurons, at: (t, n) => rows[t][n] };
  }
  const a = x as { readonly shape: readonly number[]; toTyped(): ArrayLike<number> };
  if (a.shape.length !== 2)
    throw new RangeError(
      `${where}: expected a (time, neurons) array, got shape [${a.shape.join(', ')}]; pick one example first (e.g. indexAxis(spikes, 0, i))`,
    );
  const data = a.toTyped();
  const [steps, neurons] = a.shape;
  return { steps, neurons, at: (t, n) => Number(data[t * neurons + n]) };
}

export interface RasterOptions {
  /** Seconds per step: the x axis is in ms when given, else in steps. */
  dt?: number;
  title?: string;
  width?: number;
  height?: number;
}

/**
 * The vega-lite spec of a spike raster: one tick per nonzero entry of a (time, neurons) array.
 *
 * @example
 * const spec = spikeRasterSpec(spikesOfOneImage, { dt: 0.001, title: 'hidden layer' });
 */
export function spikeRasterSpec(spikes: TimeByNeurons, options: RasterOptions = {}): VegaLiteSpec {
  const { steps, neurons, at } = rowsOf('spikeRasterSpec', spikes);
  const values: { t: number; neuron: number }[] = [];
  const scale = options.dt !== undefined ? options.dt * 1000 : 1;
  for (let t = 0; t < steps; t++) for (let n = 0; n < neurons; n++) if (at(t, n) !== 0) values.push({ t: t * scale, neuron: n });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title ?? `Spike raster (${values.length} spikes)`,
    width: options.width ?? 600,
    height: options.height ?? Math.min(600, Math.max(150, neurons * 3)),
    data: { values },
    mark: { type: 'tick', orient: 'vertical', thickness: 1.5, color: '#1f77b4' },
    encoding: {
      x: {
        field: 't',
        type: 'quantitative',
        title: options.dt !== undefined ? 'time (ms)' : 'time step',
        scale: { domain: [0, steps * scale] },
      },
      y: { field: 'neuron', type: 'quantitative', title: 'neuron', scale: { domain: [-0.5, neurons - 0.5] }, axis: { tickMinStep: 1 } },
    },
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif' },
  };
}

export interface TraceOptions extends RasterOptions {
  /** A horizontal rule at the firing threshold. */
  threshold?: number;
  /** Which neurons to draw (default: the first 5). */
  neurons?: readonly number[];
}

/**
 * The vega-lite spec of membrane-potential traces: one line per chosen neuron of a (time, neurons) array.
 *
 * @example
 * const spec = membraneTraceSpec(memOfOneImage, { threshold: 1, neurons: [0, 3] });
 */
export function membraneTraceSpec(membrane: TimeByNeurons, options: TraceOptions = {}): VegaLiteSpec {
  const { steps, neurons, at } = rowsOf('membraneTraceSpec', membrane);
  const chosen = options.neurons ?? Array.from({ length: Math.min(5, neurons) }, (_, i) => i);
  for (const n of chosen)
    if (!(Number.isInteger(n) && n >= 0 && n < neurons))
      throw new RangeError(`membraneTraceSpec: neuron ${n} is out of range [0, ${neurons})`);
  const scale = options.dt !== undefined ? options.dt * 1000 : 1;
  const values: { t: number; u: number; neuron: string }[] = [];
  for (const n of chosen) for (let t = 0; t < steps; t++) values.push({ t: t * scale, u: at(t, n), neuron: `neuron ${n}` });
  const line = {
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 't', type: 'quantitative', title: options.dt !== undefined ? 'time (ms)' : 'time step' },
      y: { field: 'u', type: 'quantitative', title: 'membrane potential' },
      color: { field: 'neuron', type: 'nominal', title: null },
    },
  };
  const layers: Record<string, unknown>[] = [line];
  if (options.threshold !== undefined) {
    layers.push({
      data: { values: [{ thr: options.threshold }] },
      mark: { type: 'rule', strokeDash: [4, 4], color: '#d62728' },
      encoding: { y: { field: 'thr', type: 'quantitative' } },
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: options.title ?? 'Membrane potential',
    width: options.width ?? 600,
    height: options.height ?? 250,
    data: { values },
    layer: layers,
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif' },
  };
}

async function optionalImport<T>(name: string): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (err) {
    throw new Error(
      `spiketrace/plot: rendering needs the optional package '${name}' (npm install vega vega-lite @resvg/resvg-js): ${(err as Error).message}`,
    );
  }
}

interface VegaModule {
  View: new (runtime: unknown, opts: { renderer: string; logLevel: number }) => { toSVG(): Promise<string>; finalize(): void };
  parse(spec: unknown): unknown;
  Warn: number;
}

/** Renders a vega-lite spec to SVG and PNG (white background). */
export async function renderFigure(spec: VegaLiteSpec): Promise<Figure> {
  const vl = await optionalImport<{ compile(spec: unknown): { spec: unknown } }>('vega-lite');
  const vega = await optionalImport<VegaModule>('vega');
  const { Resvg } = await optionalImport<{ Resvg: new (svg: string, opts: unknown) => { render(): { asPng(): Uint8Array } } }>(
    '@resvg/resvg-js',
  );
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none', logLevel: vega.Warn });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const resvg = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'original' },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
    logLevel: 'off',
  });
  const png = new Uint8Array(resvg.render().asPng());
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { svg, png, width: dv.getUint32(16), height: dv.getUint32(20) };
}

/** A spike raster figure (see spikeRasterSpec). */
export async function spikeRaster(spikes: TimeByNeurons, options: RasterOptions = {}): Promise<Figure> {
  return renderFigure(spikeRasterSpec(spikes, options));
}

/** A membrane-trace figure (see membraneTraceSpec). */
export async function membraneTrace(membrane: TimeByNeurons, options: TraceOptions = {}): Promise<Figure> {
  return renderFigure(membraneTraceSpec(membrane, options));
}

/**
 * Writes `<path>.svg` and `<path>.png` atomically (a temporary file renamed into place); Node only.
 *
 * @example
 * await writeFigure('out/raster', await spikeRaster(spikes, { dt: 0.001 }));
 */
export async function writeFigure(
  pathWithoutExtension: string,
  figure: Pick<Figure, 'svg' | 'png'>,
): Promise<{ svgPath: string; pngPath: string }> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  await fs.mkdir(path.dirname(pathWithoutExtension), { recursive: true });
  const write = async (file: string, data: string | Uint8Array): Promise<void> => {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
    try {
      await fs.writeFile(tmp, data);
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
  };
  const svgPath = `${pathWithoutExtension}.svg`;
  const pngPath = `${pathWithoutExtension}.png`;
  await write(svgPath, figure.svg);
  await write(pngPath, figure.png);
  return { svgPath, pngPath };
}
