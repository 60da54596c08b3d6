/**
 * spiketrace/core: arrays, the tracer (grad, vjp, jvp, jit, scan, customVjp), PRNG, pytrees.
 * The machinery under it (rule tables, bind, backend registration, kernel counters) is in
 * spiketrace/core/internal.
 */
import './backend/cpu.js';
export type { DType, TypedArray } from './dtype.js';
export { Tensor, ConcretizationError, type NestedArray } from './tensor.js';
export {
  NDArray,
  array,
  fromTyped,
  fromNdarray,
  zeros,
  ones,
  full,
  scalar,
  arange,
  gatherRows,
  toDevice,
  type ArrayOptions,
} from './ndarray.js';
export { ShapeError, broadcastShapes, sizeOf } from './shape.js';
export * from './ops.js';
export * from './conv.js';
export {
  grad,
  valueAndGrad,
  vjp,
  jvp,
  jacfwd,
  jacrev,
  hessian,
  type GradOptions,
  type FirstArgGradOptions,
  type Grads,
  type JacobianOptions,
  type Jacobian,
  type ArgsAt,
  type JvpOutput,
} from './vjp.js';
export { jit, makeJaxpr, toHost, type Jitted, type JitOptions, type DonatingOptions } from './jit.js';
export { dispose } from './dispose.js';
export { scan, customVjp, cond, whileLoop, foriLoop, type ScanOptions } from './control.js';
export { vmap, type VmapOptions, type AxisSpec } from './vmap.js';
export { printJaxpr, type Jaxpr, type ClosedJaxpr, type Aval } from './ir.js';
export type { Primitive, PrimParams } from './primitives.js';
export { getBackend, setBackend, withBackend, type Backend } from './backends.js';
export { Tracer, broadcastSourceOf } from './trace.js';
export { sharedMemoryArena } from './backend/wasm/kernel-cache.js';
export * as random from './random.js';
export {
  treeFlatten,
  treeUnflatten,
  treeLeaves,
  treeMap,
  treeZipMap,
  treeDefString,
  TreeStructureError,
  type Tree,
  type TreeDef,
} from './tree.js';
