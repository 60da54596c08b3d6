/**
 * spiketrace/core/internal: the machinery under the public API (rule tables, `bind`, the backend
 * registry and the CPU backend's kernels and counters), for tests, benchmarks and new backends.
 * Not part of the stable API: these names may change in any release.
 */
import './backend/cpu.js';
export { bind, bind1, evalJaxpr } from './trace.js';
export { vjpRules } from './vjp.js';
export { shapeRules, ELEMENTWISE, ELEMENTWISE_PRIMS, type ElementwisePrim, type Primitive, type PrimParams } from './primitives.js';
export {
  registerBackend,
  registeredBackends,
  backendNamed,
  type Backend,
  type CompiledProgram,
  type DeviceBuffer,
  type DeviceMemory,
} from './backends.js';
export { cpuKernels, cpuBackend } from './backend/cpu.js';
export { SCALAR_OPS, storeAs, storeValue, type ScalarOp, type SimdRender, type LaneType } from './backend/scalar-ops.js';
export { kernelStats } from './backend/fusion.js';
export { matmulBackendName } from './backend/wasm/index.js';
export { setWasmScan, wasmScanStats } from './backend/wasm/scan.js';
