/**
 * spiketrace/core: arrays, the tracer (grad, vjp, jvp, jit, scan, customVjp), PRNG, pytrees.
 */
import './backend/cpu.js';
export type { DType, TypedArray } from './dtype.js';
export { Tensor, ConcretizationError, type NestedArray } from './tensor.js';
export { NDArray, array, fromTyped, fromNdarray, zeros, ones, full, scalar, arange, gatherRows, type ArrayOptions } from './ndarray.js';
export { ShapeError, broadcastShapes, sizeOf } from './shape.js';
export * from './ops.js';
export { grad, valueAndGrad, vjp, jvp, jacfwd, jacrev, hessian, vjpRules, type GradOptions, type JacobianOptions, type JvpOutput } from './vjp.js';
export { jit, makeJaxpr, detachResident, type Jitted, type JitOptions, type DonatingOptions } from './jit.js';
export { scan, customVjp, type ScanOptions } from './control.js';
export { vmap, type VmapOptions, type AxisSpec } from './vmap.js';
export { printJaxpr, type Jaxpr, type ClosedJaxpr, type Aval } from './ir.js';
export { shapeRules, type Primitive, type PrimParams } from './primitives.js';
export { bind, getBackend, setBackend, withBackend, registerBackend, Tracer, type Backend } from './trace.js';
export { cpuKernels, cpuBackend } from './backend/cpu.js';
export { kernelStats } from './backend/fusion.js';
export { matmulBackendName } from './backend/wasm/index.js';
export { sharedMemoryArena } from './backend/wasm/kernel-cache.js';
export * as random from './random.js';
export { treeFlatten, treeUnflatten, treeLeaves, treeMap, treeZipMap, treeDefString, TreeStructureError, type Tree, type TreeDef } from './tree.js';
