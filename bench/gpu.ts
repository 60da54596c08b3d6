/**
 * Issue 7's training figures: the M2 model and the seed's spiking-aware model trained on the gpu.js
 * backend and on the CPU backend, same data, weights and batches; prints the OpenGL renderer,
 * samples/s per backend and the gpujs/cpu ratio, and the transfers of one gpujs step. Part of
 * `npm run bench:gpu` (after the matmul figures of core/backend/gpu/bench.ts); meant to be run
 * unchanged on a machine with a GPU (bench/README.md, "GPU").
 *
 *   xvfb-run -a npx tsx bench/gpu.ts [--steps N]
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fromTyped, random, setBackend, type NDArray } from '../core/index.js';
import { enableGpuBackend, gpuBackendInfo, gpuTransferStats, resetGpuTransferStats } from '../core/backend/gpu/index.js';
import { loadFashionMnist, tileTime } from '../data/index.js';
import * as nn from '../nn/index.js';
import * as spiking from '../spiking/index.js';
import { BATCH, HIDDEN, CLASSES, IMAGE, SPIKING_DT, TIME_STEPS } from './lib/common.js';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '30' } } });
const steps = Number(values.steps);
if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`bench/gpu: --steps must be an integer >= 2, got ${values.steps}`);

const gpu = enableGpuBackend();
if (!gpu.ok) {
  console.log(`gpujs unavailable: ${gpu.reason}`);
  process.exit(0);
}
setBackend('cpu');

// Real images where the data is installed, else a seeded synthetic set of the same shape.
const rows = BATCH * steps;
let images: NDArray;
let labels: NDArray;
let source: string;
try {
  const { train, source: where } = await loadFashionMnist();
  images = fromTyped((train.images.toTyped() as Float32Array).subarray(0, rows * IMAGE), [rows, 28, 28]);
  labels = fromTyped((train.labels.toTyped() as Int32Array).subarray(0, rows), [rows], 'int32');
  source = `Fashion-MNIST (${where})`;
} catch {
  images = random.uniform(random.key(7), [rows, 28, 28]) as NDArray;
  labels = fromTyped(
    Int32Array.from({ length: rows }, (_, i) => (i * 7) % CLASSES),
    [rows],
    'int32',
  );
  source = 'synthetic uniform images (Fashion-MNIST not found)';
}
/**
 * The OpenGL implementation behind the display headless-gl draws on: under plain Xvfb that is
 * Mesa's software rasterizer (llvmpipe) whatever GPU the machine has, so the figures below are a
 * GPU's only when this line names one. headless-gl itself reports 'ANGLE' (WebGL masks the
 * renderer, and it lacks WEBGL_debug_renderer_info), so the display's GLX renderer is asked of
 * glxinfo (Debian's mesa-utils) where it is installed.
 */
function glRenderer(): string {
  try {
    const out = execFileSync('glxinfo', ['-B'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const line = /OpenGL renderer string:\s*(.*)/.exec(out)?.[1]?.trim();
    return line
      ? `${line}${/llvmpipe|softpipe|swrast/i.test(line) ? ' (software rendering: not a GPU)' : ''}`
      : 'unknown (glxinfo printed no renderer)';
  } catch {
    return 'unknown (glxinfo not found: install mesa-utils to see whether the display renders on a GPU)';
  }
}

console.log(`OpenGL renderer of the display: ${glRenderer()}`);
console.log(
  `gpu.js mode: ${gpuBackendInfo().mode}; data: ${source}; ${steps} steps of batch ${BATCH}, the first (compiling) step excluded`,
);

function model(kind: 'm2' | 'spiking'): nn.Layer {
  const act = kind === 'm2' ? nn.activation('relu') : spiking.spikingActivation('relu', { dt: SPIKING_DT });
  return nn.sequential([
    nn.reshape([-1, IMAGE]),
    nn.timeDistributed(nn.dense(HIDDEN)),
    act,
    nn.globalAveragePooling1d(),
    nn.dense(CLASSES),
  ]);
}

for (const kind of ['m2', 'spiking'] as const) {
  const perBackend: Record<string, { samplesPerS: number; loss: number }> = {};
  for (const backend of ['cpu', 'gpujs']) {
    setBackend(backend);
    const layer = model(kind);
    const init = layer.init(random.key(0), [null, 28, 28]);
    let t0 = 0;
    let last = NaN;
    nn.fit(layer, init, tileTime(images, TIME_STEPS), labels, {
      optimizer: nn.adam(),
      loss: nn.sparseCategoricalCrossentropy({ fromLogits: true }),
      batchSize: BATCH,
      shuffle: false,
      verbose: 0,
      key: random.key(1),
      callbacks: [
        {
          onBatchEnd: (b, logs) => {
            if (b === 0) t0 = performance.now();
            if (backend === 'gpujs' && b === steps - 2) resetGpuTransferStats();
            last = logs.batchLoss;
          },
        },
      ],
    });
    const s = (performance.now() - t0) / 1000;
    perBackend[backend] = { samplesPerS: ((steps - 1) * BATCH) / s, loss: last };
    if (backend === 'gpujs') console.log(`  ${kind} one gpujs step: ${JSON.stringify(gpuTransferStats())}`);
  }
  setBackend('cpu');
  const c = perBackend.cpu;
  const g = perBackend.gpujs;
  console.log(
    `${kind}: cpu ${c.samplesPerS.toFixed(0)} samples/s, gpujs ${g.samplesPerS.toFixed(0)} samples/s, gpujs/cpu ${(g.samplesPerS / c.samplesPerS).toFixed(3)}x; last loss cpu ${c.loss.toFixed(5)}, gpujs ${g.loss.toFixed(5)}`,
  );
}
