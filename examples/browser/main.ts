/**
 * The demo page: loads the Fashion-MNIST subset, trains the seed's spiking model with fitAsync
 * (the page stays responsive), draws loss and accuracy per step, and runs inference at the dt
 * chosen, with a spike raster of a test image. `window.spiketraceDemo` lets a test drive it.
 */
import { getBackend, setBackend, sharedMemoryArena } from '../../core/index.js';
import { enableGpuBackend, gpuBackendInfo } from '../../core/backend/gpu/index.js';
import * as nn from '../../nn/index.js';
import * as spiking from '../../spiking/index.js';
import { FASHION_MNIST_CLASSES } from '../../data/index.js';
import { DATA_FILES, demoData, trainDemo, type DemoSplit } from './demo.js';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const backendSelect = $<HTMLSelectElement>('backend');
const trainButton = $<HTMLButtonElement>('train');
const stopButton = $<HTMLButtonElement>('stop');
const progress = $<HTMLProgressElement>('progress');
const status = $<HTMLSpanElement>('status');
const dtSelect = $<HTMLSelectElement>('dt');
const inference = $<HTMLSpanElement>('inference');

function codeGenerationAllowed(): boolean {
  try {
    return (new Function('return 1') as () => number)() === 1;
  } catch {
    return false;
  }
}

const env = {
  crossOriginIsolated: globalThis.crossOriginIsolated === true,
  sharedMemory: sharedMemoryArena(),
  codeGeneration: codeGenerationAllowed(),
};
$('env').textContent =
  `cross-origin isolated: ${env.crossOriginIsolated ? 'yes' : 'no'} · shared-memory kernels: ${env.sharedMemory ? 'yes' : 'no (COOP/COEP headers missing: CPU steps are slower)'} · ` +
  `eval: ${env.codeGeneration ? 'allowed' : 'forbidden by the Content-Security-Policy (fused loops interpreted)'}`;

const files = Object.fromEntries(
  await Promise.all(
    DATA_FILES.map(async (name) => {
      const r = await fetch(`data/${name}`);
      if (!r.ok) throw new Error(`fetching data/${name}: HTTP ${r.status}`);
      return [name, new Uint8Array(await r.arrayBuffer())] as const;
    }),
  ),
) as Record<(typeof DATA_FILES)[number], Uint8Array>;
const { train, test } = demoData(files);
status.textContent = `${train.labels.shape[0]} training and ${test.labels.shape[0]} test images loaded`;
trainButton.disabled = false;

function chooseBackend(name: string): string {
  if (name === 'gpujs') {
    const r = enableGpuBackend();
    if (!r.ok) {
      backendSelect.value = 'cpu';
      setBackend('cpu');
      status.textContent = `gpu.js is not available here: ${r.reason}`;
      status.className = 'error';
      return 'cpu';
    }
  }
  setBackend(name);
  status.className = '';
  return name;
}
backendSelect.addEventListener('change', () => chooseBackend(backendSelect.value));

// ---------------------------------------------------------------------------------- drawing

const history: { loss: number; accuracy: number }[] = [];
function drawChart(totalSteps: number): void {
  const c = $<HTMLCanvasElement>('chart');
  const g = c.getContext('2d')!;
  g.clearRect(0, 0, c.width, c.height);
  const pad = 30;
  const w = c.width - 2 * pad;
  const h = c.height - 2 * pad;
  g.strokeStyle = '#999';
  g.strokeRect(pad, pad, w, h);
  const maxLoss = Math.max(2.5, ...history.map((p) => p.loss));
  const line = (value: (p: { loss: number; accuracy: number }) => number, color: string): void => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    history.forEach((p, i) => {
      const x = pad + (w * (i + 1)) / Math.max(1, totalSteps);
      const y = pad + h * (1 - value(p));
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  };
  line((p) => p.loss / maxLoss, '#c0392b');
  line((p) => p.accuracy, '#2471a3');
  g.fillStyle = '#c0392b';
  g.fillText(`loss (0 .. ${maxLoss.toFixed(1)})`, pad + 4, pad - 8);
  g.fillStyle = '#2471a3';
  g.fillText('training accuracy (0 .. 1)', pad + 160, pad - 8);
}

function drawImage(split: DemoSplit, i: number): void {
  const c = $<HTMLCanvasElement>('image');
  const g = c.getContext('2d')!;
  const img = g.createImageData(28, 28);
  for (let p = 0; p < 784; p++) {
    const v = 255 - split.raw[i * 784 + p];
    img.data.set([v, v, v, 255], 4 * p);
  }
  const small = document.createElement('canvas');
  small.width = small.height = 28;
  small.getContext('2d')!.putImageData(img, 0, 0);
  g.imageSmoothingEnabled = false;
  g.drawImage(small, 0, 0, c.width, c.height);
}

/** Spikes of the 128 neurons (rows) over the time steps (columns) for test image `i`. */
function drawRaster(stats: spiking.SpikeStats, i: number): void {
  const c = $<HTMLCanvasElement>('raster');
  const g = c.getContext('2d')!;
  g.fillStyle = '#fff';
  g.fillRect(0, 0, c.width, c.height);
  const units = stats.spikeCounts.size / (stats.spikeCounts.shape[0] * stats.steps);
  const counts = stats.spikeCounts.toTyped() as Float32Array;
  const cw = (c.width - 40) / stats.steps;
  const ch = (c.height - 20) / units;
  g.fillStyle = '#111';
  for (let t = 0; t < stats.steps; t++) {
    for (let u = 0; u < units; u++) {
      const n = counts[(i * stats.steps + t) * units + u];
      if (n > 0) g.fillRect(40 + t * cw + cw * 0.2, u * ch, cw * 0.6 * Math.min(1, n), Math.max(1, ch - 0.5));
    }
  }
  g.fillText('neuron', 2, 12);
  g.fillText(`time step (dt = ${Number(stats.dt.toPrecision(6))} s)`, 40, c.height - 4);
}

// ---------------------------------------------------------------------------------- training

let trained: { model: nn.Layer; vars: nn.Variables } | null = null;

function infer(dt: number): { accuracy: number; meanRateHz: number } {
  if (trained === null) throw new Error('infer: train the model first');
  const stats = spiking.spikeStats(trained.model, trained.vars, test.sequences, { labels: test.labels, dt });
  const i = 0;
  drawImage(test, i);
  drawRaster(stats, i);
  inference.textContent =
    `test accuracy at dt = ${dt}: ${(100 * stats.accuracy!).toFixed(1)}% · mean rate ${stats.rateHz.mean.toFixed(1)} Hz · ` +
    `test image 0: ${FASHION_MNIST_CLASSES[test.labels.toTyped()[i]]}`;
  return { accuracy: stats.accuracy!, meanRateHz: stats.rateHz.mean };
}
dtSelect.addEventListener('change', () => {
  if (trained !== null) infer(Number(dtSelect.value));
});

let controller: AbortController | null = null;
async function runTraining(
  options: { epochs?: number; limit?: number; backend?: string } = {},
): Promise<{ losses: number[]; backend: string; ms: number }> {
  const backend = chooseBackend(options.backend ?? backendSelect.value);
  controller = new AbortController();
  trainButton.disabled = true;
  stopButton.disabled = false;
  history.length = 0;
  const t0 = performance.now();
  try {
    const r = await trainDemo(train, {
      epochs: options.epochs ?? Number($<HTMLInputElement>('epochs').value),
      limit: options.limit,
      signal: controller.signal,
      onStep: (step, steps, logs) => {
        history.push({ loss: logs.loss, accuracy: logs.accuracy });
        progress.value = step / steps;
        status.textContent = `step ${step}/${steps} · loss ${logs.loss.toFixed(4)} · accuracy ${(100 * logs.accuracy).toFixed(1)}% · ${getBackend().name}`;
        drawChart(steps);
      },
    });
    trained = r;
    infer(Number(dtSelect.value));
    return { losses: r.losses, backend, ms: performance.now() - t0 };
  } finally {
    trainButton.disabled = false;
    stopButton.disabled = true;
  }
}
// ?limit=N trains on the first N images only (quick runs, and the browser test).
const query = new URLSearchParams(location.search);
const limit = query.has('limit') ? Number(query.get('limit')) : undefined;
let runs = 0;
trainButton.addEventListener('click', () => {
  runTraining({ limit }).then(
    (r) => {
      lastRun = { ...r, gpuMode: gpuBackendInfo().mode, accuracy: trained === null ? NaN : infer(Number(dtSelect.value)).accuracy };
      document.body.dataset.runs = String(++runs);
    },
    (e: Error) => {
      status.textContent = e.message;
      status.className = 'error';
      document.body.dataset.runs = String(++runs);
    },
  );
});
let lastRun: { losses: number[]; backend: string; gpuMode: string | null; ms: number; accuracy: number } | null = null;
stopButton.addEventListener('click', () => controller?.abort());

declare global {
  interface Window {
    spiketraceDemo?: { env: typeof env; train: typeof runTraining; infer: typeof infer; readonly lastRun: typeof lastRun };
  }
}
window.spiketraceDemo = {
  env,
  train: runTraining,
  infer,
  get lastRun() {
    return lastRun;
  },
};
document.body.dataset.ready = 'true';
