/** spiketrace/plot: raster and membrane figures render to PNG and SVG, and the spec holds every spike. */
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { array } from '../core/index.js';
import { membraneTrace, membraneTraceSpec, spikeRaster, spikeRasterSpec, writeFigure } from '../plot/index.js';

t.test('raster and membrane trace', async (t) => {
  const spikes = array([0, 1, 0, 1, 1, 0, 0, 0, 1], { shape: [3, 3] });
  const spec = spikeRasterSpec(spikes, { dt: 0.002 }) as { data: { values: { t: number; neuron: number }[] } };
  t.same(
    spec.data.values,
    [
      { t: 0, neuron: 1 },
      { t: 2, neuron: 0 },
      { t: 2, neuron: 1 },
      { t: 4, neuron: 2 },
    ],
    'one tick per spike, time in ms',
  );
  const fig = await spikeRaster(spikes, { dt: 0.002 });
  t.same([...fig.png.subarray(0, 4)], [137, 80, 78, 71], 'PNG signature');
  t.ok(fig.svg.startsWith('<svg') && fig.width > 300 && fig.height > 100, `svg, ${fig.width}x${fig.height}`);
  const mem = [
    [0, 0.5],
    [0.9, 1.2],
    [0.1, 0.3],
  ];
  const ms = membraneTraceSpec(mem, { threshold: 1 }) as { data: { values: unknown[] }; layer: unknown[] };
  t.equal(ms.data.values.length, 6);
  t.equal(ms.layer.length, 2, 'a threshold rule');
  const out = mkdtempSync(join(tmpdir(), 'spiketrace-plot-'));
  const { pngPath, svgPath } = await writeFigure(join(out, 'mem'), await membraneTrace(mem, { threshold: 1 }));
  t.ok(readFileSync(pngPath).length > 1000 && readFileSync(svgPath, 'utf8').includes('<svg'));
  t.throws(() => spikeRasterSpec(array([1, 2, 3]) as never), /spikeRasterSpec: expected a \(time, neurons\) array, got shape \[3\]/);
});
