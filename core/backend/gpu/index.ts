/**
 * The gpu.js backend ('gpujs', issue 7): float32 matmul, fused elementwise programs and
 * reductions as gpu.js kernels (transpiled to GLSL), and scans whose bodies are made of those
 * (the spiking neuron, the lowpass and alpha filters, forward and backward) run step by step on
 * the device; every other primitive runs on the CPU kernels with explicit upload/readback. Not
 * registered on import: call `enableGpuBackend()`.
 *
 * @example
 * import { setBackend } from 'spiketrace/core';
 * import { enableGpuBackend, gpuBackendInfo } from 'spiketrace/gpu';
 * const r = enableGpuBackend(); // { ok, mode, reason }: in Node needs the 'gl' package and a display (xvfb-run)
 * if (r.ok) setBackend('gpujs');
 */
import { registerBackend, type Backend } from '../../backends.js';
import { compileGpu, gpuRun } from './compile.js';
import { currentMode, defaultModes, gpuMemory, probes, startGpu, type GpuMode } from './runtime.js';

export { gpuTransferStats, resetGpuTransferStats, type GpuMode, type GpuTransferStats } from './runtime.js';

export const gpuBackend: Backend = {
  name: 'gpujs',
  run: (prim, inputs, params) => gpuRun(prim, inputs, params),
  compile: (jaxpr) => compileGpu(jaxpr),
  memory: gpuMemory,
  // dispose(): a disposed device array's texture is freed now rather than when WebGL's context
  // goes; host arrays (read back into ordinary memory) are left to the garbage collector.
  release: (arrays) => {
    for (const x of arrays) if (x.device === 'gpujs' && x.deviceBuffer !== null) gpuMemory.free(x.deviceBuffer);
  },
};

export interface GpuEnableOptions {
  /** gpu.js modes to try, in order (default: ['headlessgl'] in Node; ['webgl2', 'webgl', 'webgpu'] in browsers). */
  modes?: GpuMode[];
  /** Also make 'gpujs' the active backend (default false). */
  makeDefault?: boolean;
}

export interface GpuEnableResult {
  /** False when no mode works; the backend is then not registered. */
  ok: boolean;
  /** The gpu.js mode that ran the probe kernel, or null. */
  mode: GpuMode | null;
  /** Why it worked or, per mode tried, why not. */
  reason: string;
}

let lastReason = 'enableGpuBackend() has not been called';

/**
 * Starts gpu.js in the first mode that runs a probe kernel correctly and registers the 'gpujs'
 * backend (not as the default unless `makeDefault`). Never throws for lack of a GPU: the result
 * says whether it worked and why not.
 */
export function enableGpuBackend(options: GpuEnableOptions = {}): GpuEnableResult {
  let r: { ok: boolean; mode: GpuMode | null; reason: string };
  try {
    r = startGpu(options.modes ?? defaultModes());
  } catch (e) {
    r = { ok: false, mode: null, reason: `gpu.js failed to start: ${(e as Error).message}` };
  }
  lastReason = r.reason;
  if (r.ok) registerBackend(gpuBackend, options.makeDefault ?? false);
  return r;
}

export interface GpuBackendInfo {
  enabled: boolean;
  /** The gpu.js mode that actually runs the kernels. */
  mode: GpuMode | null;
  reason: string;
  tried: { mode: GpuMode; ok: boolean; reason: string }[];
}

export function gpuBackendInfo(): GpuBackendInfo {
  const mode = currentMode();
  return { enabled: mode !== null, mode, reason: lastReason, tried: probes.map((p) => ({ ...p })) };
}
