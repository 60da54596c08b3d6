/**
 * A NIR graph as a spiketrace model: the graph's nodes become one step function, run over time as
 * one scan. Nested graphs are inlined (their nodes are named `outer.inner`), edges into a node sum
 * (fan-in), a node's output feeds every edge out of it (fan-out), and an edge that closes a cycle
 * into a stateful node (a neuron or a Delay) reads that edge's source from the previous step.
 *
 * Within step t (x_t the summed input of a node, v its state after step t-1, states start at 0):
 * - input enters the update of the same step (v_t depends on x_t);
 * - a spiking node compares the updated potential with v_threshold (z_t = v' > v_threshold) and
 *   resets to v_reset in the same step: the stored v_t is the reset value where z_t = 1;
 * - 'euler' (default): v' = v + dt/tau ((v_leak - v) + r x_t); 'exact' holds x_t constant over the
 *   step (zero-order hold): v' = d v + (1 - d) v_leak + (1 - d) r x_t, d = exp(-dt/tau). CubaLI/CubaLIF
 *   update the synaptic current first, I' = I + dt/tau_syn (w_in x_t - I), and the membrane from I'
 *   (Euler, as snnTorch's Synaptic); 'exact' solves the two-state linear system over the step.
 * - Conv1d/Conv2d/SumPool2d/AvgPool2d follow PyTorch on channels-first tensors (batch, c, ...spatial);
 *   AvgPool2d counts padded positions (count_include_pad).
 */
import {
  add,
  cast,
  concatenate,
  div,
  equal,
  exp,
  greater,
  matmul,
  maximum,
  mul,
  neg,
  reshape,
  scalar,
  scan,
  slice,
  indexAxis,
  sub,
  transpose,
  where,
  zeros,
  abs,
  less,
  fromTyped,
  convGeneral,
  sumPool,
  type Tensor,
  type Tree,
} from '../../core/index.js';
import { uniqueName, type Layer, type LayerShape } from '../../nn/index.js';
import { NirError } from './hdf5.js';
import {
  intParam,
  NODE_PARAMS,
  shapeParam,
  sizeOfShape,
  withDefaults,
  type NirArray,
  type NirGraph,
  type NirLeafNode,
  type NirLeafType,
  type NirNode,
  type NirValue,
} from './graph.js';

export type Discretisation = 'euler' | 'exact';

/** A node of the inlined graph. */
export interface FlatNode {
  /** `outer.inner` for nodes of nested graphs. */
  readonly name: string;
  readonly path: readonly string[];
  readonly type: NirLeafType;
  readonly node: NirLeafNode;
  readonly inShape: readonly number[];
  readonly outShape: readonly number[];
}
/** An edge of a FlatGraph between two leaf nodes (names as `outer.inner` paths). */
export interface FlatEdge {
  readonly from: string;
  readonly to: string;
  /** Reads the source's output of the previous step (the edge closes a cycle into a stateful node). */
  readonly recurrent: boolean;
}
/** A NIR graph with its nested graphs inlined, shapes checked along every edge and nodes in evaluation order. */
export interface FlatGraph {
  readonly nodes: ReadonlyMap<string, FlatNode>;
  readonly edges: readonly FlatEdge[];
  /** Nodes in evaluation order (every non-recurrent edge points forward). */
  readonly order: readonly string[];
  readonly input: string;
  readonly output: string;
}

const NEURONS: ReadonlySet<NirLeafType> = new Set(['I', 'LI', 'IF', 'LIF', 'CubaLI', 'CubaLIF']);
const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;
const squeezed = (s: readonly number[]): string => s.filter((d) => d !== 1).join(',');

function arr(node: NirLeafNode, key: string, name: string): NirArray {
  const v = node.params[key];
  if (v === undefined)
    throw new NirError(
      `nir: node '${name}' (${node.type}) is missing the parameter '${key}' (needs ${NODE_PARAMS[node.type].required.join(', ')})`,
    );
  if (typeof v === 'string') throw new NirError(`nir: node '${name}' (${node.type}): parameter '${key}' must be numeric, got '${v}'`);
  return v;
}

/** The input and output shapes a node declares through its parameters (null where it takes them from its input). */
function intrinsicShapes(node: NirLeafNode, name: string): { inShape: number[] | null; outShape: number[] | null } {
  const where = `nir: node '${name}' (${node.type})`;
  const same = (keys: readonly string[]): { inShape: number[]; outShape: number[] } => {
    const shapes = keys.filter((k) => node.params[k] !== undefined).map((k) => [k, arr(node, k, name).shape] as const);
    const [k0, s0] = shapes[0];
    for (const [k, s] of shapes)
      if (s.join() !== s0.join())
        throw new NirError(`${where}: parameter '${k}' has shape ${fmt(s)} but '${k0}' has ${fmt(s0)}; all must match`);
    if (s0.length === 0) throw new NirError(`${where}: parameter '${k0}' is a scalar; NIR gives one value per neuron (shape [n, ...])`);
    return { inShape: [...s0], outShape: [...s0] };
  };
  switch (node.type) {
    case 'Input':
    case 'Output': {
      const s = shapeParam(node.params.shape, `${where}: 'shape'`);
      return { inShape: s, outShape: s };
    }
    case 'Affine':
    case 'Linear': {
      const w = arr(node, 'weight', name);
      if (w.shape.length !== 2) throw new NirError(`${where}: 'weight' must be a matrix (out x in), got shape ${fmt(w.shape)}`);
      if (node.type === 'Affine') {
        const b = arr(node, 'bias', name);
        if (b.shape.join() !== String(w.shape[0]))
          throw new NirError(`${where}: 'bias' must have shape [${w.shape[0]}] (weight is ${fmt(w.shape)}), got ${fmt(b.shape)}`);
      }
      return { inShape: [w.shape[1]], outShape: [w.shape[0]] };
    }
    case 'Scale':
      return same(['scale']);
    case 'Threshold':
      return same(['threshold']);
    case 'Delay': {
      const bad = Array.from(arr(node, 'delay', name).values).find((d) => !(d >= 0 && Number.isFinite(d)));
      if (bad !== undefined) throw new NirError(`${where}: delays must be finite and >= 0 seconds, got ${bad}`);
      return same(['delay']);
    }
    case 'I':
    case 'LI':
    case 'IF':
    case 'LIF':
    case 'CubaLI':
    case 'CubaLIF':
      return same([...NODE_PARAMS[node.type].required, ...NODE_PARAMS[node.type].optional]);
    case 'Flatten': {
      if (node.params.input_type === undefined) return { inShape: null, outShape: null };
      const s = shapeParam(node.params.input_type, `${where}: 'input_type'`);
      return { inShape: s, outShape: flattenShape(s, node, name) };
    }
    case 'Conv1d':
    case 'Conv2d': {
      const g = convGeometry(node, name);
      if (node.params.input_shape === undefined) return { inShape: null, outShape: null };
      const spatial = shapeParam(node.params.input_shape, `${where}: 'input_shape'`);
      const s = [g.channelsIn, ...spatial];
      return { inShape: s, outShape: derivedOutShape(s, node, name) };
    }
    case 'SumPool2d':
    case 'AvgPool2d':
      poolGeometry(node, name);
      return { inShape: null, outShape: null };
    default:
      throw new NirError(
        `${where}: this node type is not supported by the importer yet (supported: Input, Output, Affine, Linear, Scale, Flatten, Threshold, I, LI, IF, LIF, CubaLI, CubaLIF, Delay, Conv1d, Conv2d, SumPool2d, AvgPool2d, NIRGraph)`,
      );
  }
}

/** Flatten's output shape, as the NIR reference computes it on the node's input type (no batch axis). */
function flattenShape(inShape: readonly number[], node: NirLeafNode, name: string): number[] {
  const where = `nir: node '${name}' (Flatten)`;
  const n = inShape.length;
  const norm = (d: number): number => (d < 0 ? d + n : d);
  const start = norm(intParam(node.params.start_dim, `${where}: 'start_dim'`));
  const end = norm(intParam(node.params.end_dim, `${where}: 'end_dim'`));
  if (!(start >= 0 && end < n && start <= end))
    throw new NirError(`${where}: start_dim/end_dim select axes ${start}..${end} of an input of shape ${fmt(inShape)}`);
  return [...inShape.slice(0, start), sizeOfShape(inShape.slice(start, end + 1)), ...inShape.slice(end + 1)];
}

/** Integers per spatial axis from a scalar or a list parameter (NIR and PyTorch accept both). */
function perAxisInts(v: NirValue | undefined, rank: number, where: string, min: number): number[] {
  if (v === undefined || typeof v === 'string')
    throw new NirError(`${where}: expected an integer or ${rank} integers, got ${v === undefined ? 'nothing' : `'${v}'`}`);
  const list = Array.from(v.values);
  const out = list.length === 1 ? new Array<number>(rank).fill(list[0]) : list;
  if (out.length !== rank || out.some((d) => !Number.isInteger(d) || d < min))
    throw new NirError(`${where}: expected an integer >= ${min} or ${rank} of them, got ${fmt(list)}`);
  return out;
}

/** A convolution node's static geometry (NIR/PyTorch conventions, weight (c_out, c_in / groups, ...kernel)). */
interface ConvGeometry {
  readonly rank: number;
  readonly kernel: number[];
  readonly channelsIn: number;
  readonly channelsOut: number;
  readonly stride: number[];
  readonly dilation: number[];
  readonly groups: number;
  /** Explicit [low, high] padding per axis, or 'same' (resolved once the input size is known). */
  readonly padding: [number, number][] | 'same';
}

function convGeometry(node: NirLeafNode, name: string): ConvGeometry {
  const where = `nir: node '${name}' (${node.type})`;
  const rank = node.type === 'Conv1d' ? 1 : 2;
  const w = arr(node, 'weight', name);
  if (w.shape.length !== rank + 2)
    throw new NirError(
      `${where}: 'weight' must have ${rank + 2} axes (c_out, c_in / groups, ${rank === 1 ? 'k' : 'kh, kw'}), got ${fmt(w.shape)}`,
    );
  const groups = intParam(node.params.groups, `${where}: 'groups'`);
  const [channelsOut, perGroup, ...kernel] = w.shape;
  if (groups < 1 || channelsOut % groups !== 0)
    throw new NirError(`${where}: groups must be a positive divisor of c_out = ${channelsOut}, got ${groups}`);
  const b = arr(node, 'bias', name);
  if (!(b.values.length === channelsOut && b.shape.length <= 1) && !(b.values.length === 1 && b.shape.length === 0))
    throw new NirError(`${where}: 'bias' must have shape [${channelsOut}] (one per output channel), got ${fmt(b.shape)}`);
  const stride = perAxisInts(node.params.stride, rank, `${where}: 'stride'`, 1);
  const dilation = perAxisInts(node.params.dilation, rank, `${where}: 'dilation'`, 1);
  const pad = node.params.padding;
  let padding: ConvGeometry['padding'];
  if (pad === 'same') {
    if (stride.some((s) => s !== 1)) throw new NirError(`${where}: padding 'same' needs stride 1 (as in PyTorch), got ${fmt(stride)}`);
    padding = 'same';
  } else if (pad === 'valid') padding = kernel.map(() => [0, 0]);
  else padding = perAxisInts(pad, rank, `${where}: 'padding'`, 0).map((p) => [p, p]);
  return { rank, kernel, channelsIn: perGroup * groups, channelsOut, stride, dilation, groups, padding };
}

/** PyTorch's 'same': total padding dilation (k - 1), the odd element after. */
function resolvedPadding(g: ConvGeometry): [number, number][] {
  if (g.padding !== 'same') return g.padding;
  return g.kernel.map((k, i) => {
    const total = g.dilation[i] * (k - 1);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  });
}

interface PoolGeometry {
  readonly kernel: number[];
  readonly stride: number[];
  readonly padding: number[];
}

function poolGeometry(node: NirLeafNode, name: string): PoolGeometry {
  const where = `nir: node '${name}' (${node.type})`;
  const kernel = perAxisInts(node.params.kernel_size, 2, `${where}: 'kernel_size'`, 1);
  const stride = perAxisInts(node.params.stride, 2, `${where}: 'stride'`, 1);
  const padding = perAxisInts(node.params.padding, 2, `${where}: 'padding'`, 0);
  return { kernel, stride, padding };
}

/** PyTorch's output size of one axis: floor((n + low + high - dilation (k - 1) - 1) / stride) + 1. */
const outSize = (n: number, k: number, s: number, d: number, low: number, high: number): number =>
  Math.floor((n + low + high - d * (k - 1) - 1) / s) + 1;

/** The output shape of a node whose shape follows from its input (Flatten, convolutions, pooling). */
function derivedOutShape(inShape: readonly number[], node: NirLeafNode, name: string): number[] {
  const where = `nir: node '${name}' (${node.type})`;
  if (node.type === 'Flatten') return flattenShape(inShape, node, name);
  if (node.type === 'Conv1d' || node.type === 'Conv2d') {
    const g = convGeometry(node, name);
    if (inShape.length !== g.rank + 1 || inShape[0] !== g.channelsIn)
      throw new NirError(
        `${where}: expects input (c_in = ${g.channelsIn}, ${g.rank === 1 ? 'length' : 'height, width'}) per step, got ${fmt(inShape)}`,
      );
    const pad = resolvedPadding(g);
    const spatial = inShape.slice(1).map((n, i) => outSize(n, g.kernel[i], g.stride[i], g.dilation[i], pad[i][0], pad[i][1]));
    if (spatial.some((d) => d < 1))
      throw new NirError(
        `${where}: the kernel ${fmt(g.kernel)} (dilation ${fmt(g.dilation)}) does not fit the input ${fmt(inShape)} with its padding`,
      );
    return [g.channelsOut, ...spatial];
  }
  if (node.type === 'SumPool2d' || node.type === 'AvgPool2d') {
    const g = poolGeometry(node, name);
    if (inShape.length !== 3) throw new NirError(`${where}: expects input (channels, height, width) per step, got ${fmt(inShape)}`);
    const spatial = inShape.slice(1).map((n, i) => outSize(n, g.kernel[i], g.stride[i], 1, g.padding[i], g.padding[i]));
    if (spatial.some((d) => d < 1))
      throw new NirError(`${where}: the window ${fmt(g.kernel)} does not fit the input ${fmt(inShape)} with padding ${fmt(g.padding)}`);
    return [inShape[0], ...spatial];
  }
  throw new NirError(`${where}: its output shape does not follow from its input`);
}

/** Inlines nested graphs, checks shapes along every edge and orders the nodes for one time step. */
export function flattenGraph(graph: NirGraph, dt: number): FlatGraph {
  const nodes = new Map<string, { path: string[]; node: NirLeafNode }>();
  const edges: [string, string][] = [];
  // Ports of a (nested) graph: the node an edge into it enters and the node an edge out of it leaves.
  const ports = (g: NirGraph, prefix: string, label: string): { entry: string; exit: string } => {
    const names = Object.keys(g.nodes);
    const ins = names.filter((k) => g.nodes[k].type === 'Input');
    const outs = names.filter((k) => g.nodes[k].type === 'Output');
    if (ins.length !== 1 || outs.length !== 1) {
      throw new NirError(
        `nir: graph ${label} has ${ins.length} Input and ${outs.length} Output nodes (${[...ins, ...outs].join(', ') || 'none'}); the importer runs graphs with exactly one of each`,
      );
    }
    return { entry: prefix + ins[0], exit: prefix + outs[0] };
  };
  const visit = (g: NirGraph, prefix: string, path: string[], label: string): void => {
    const resolve = (name: string, side: 'entry' | 'exit', edge: string): string => {
      const n: NirNode | undefined = g.nodes[name];
      if (n === undefined) {
        const dot = name.indexOf('.');
        const outer = dot > 0 ? g.nodes[name.slice(0, dot)] : undefined;
        if (
          outer?.type === 'NIRGraph' &&
          outer.nodes[name.slice(dot + 1)] !== undefined &&
          outer.nodes[name.slice(dot + 1)].type !== 'NIRGraph'
        )
          return prefix + name;
        throw new NirError(
          `nir: graph ${label}: edge ${edge} names '${name}', which is not a node of that graph (nodes: ${Object.keys(g.nodes).join(', ')})`,
        );
      }
      return n.type === 'NIRGraph' ? ports(n, `${prefix}${name}.`, `'${prefix}${name}'`)[side] : prefix + name;
    };
    for (const [k, n] of Object.entries(g.nodes)) {
      if (k.includes('.'))
        throw new NirError(`nir: graph ${label}: node name '${k}' contains '.', which the importer uses to name nodes of nested graphs`);
      if (n.type === 'NIRGraph') visit(n, `${prefix}${k}.`, [...path, k], `'${prefix}${k}'`);
      else nodes.set(prefix + k, { path: [...path, k], node: withDefaults(n) });
    }
    for (const [a, b] of g.edges) {
      const edge = `('${a}', '${b}')`;
      edges.push([resolve(a, 'exit', edge), resolve(b, 'entry', edge)]);
    }
  };
  visit(graph, '', [], 'at the root');
  const { entry: input, exit: output } = ports(graph, '', 'at the root');

  // Shapes: declared by parameters, or (Flatten without input_type) taken from the node's input.
  const shapes = new Map<string, { inShape: number[] | null; outShape: number[] | null }>();
  for (const [name, { node }] of nodes) shapes.set(name, intrinsicShapes(node, name));
  const incoming = new Map<string, string[]>([...nodes.keys()].map((n) => [n, []]));
  for (const [a, b] of edges) incoming.get(b)!.push(a);
  for (let changed = true; changed;) {
    changed = false;
    for (const [name, s] of shapes) {
      if (s.inShape !== null) continue;
      const from = incoming
        .get(name)!
        .map((a) => shapes.get(a)!.outShape)
        .find((o) => o !== null);
      if (from) {
        const node = nodes.get(name)!.node;
        shapes.set(name, { inShape: from, outShape: derivedOutShape(from, node, name) });
        changed = true;
      }
    }
  }
  for (const [name, s] of shapes)
    if (s.inShape === null)
      throw new NirError(`nir: node '${name}' (${nodes.get(name)!.node.type}): its input shape is not given and no input edge brings one`);
  for (const [a, b] of edges) {
    const out = shapes.get(a)!.outShape!;
    const want = shapes.get(b)!.inShape!;
    if (out.join() === want.join()) continue;
    // Ports written by older exporters carry extra size-1 axes (Rockpool's Output [1, 1, 1] after a
    // LIF of shape [1]): the same values, so they are accepted.
    const port = ['Input', 'Output'].includes(nodes.get(a)!.node.type) || ['Input', 'Output'].includes(nodes.get(b)!.node.type);
    if (port && squeezed(out) === squeezed(want)) continue;
    throw new NirError(
      `nir: shape mismatch on the edge '${a}' -> '${b}': '${a}' (${nodes.get(a)!.node.type}) gives ${fmt(out)}, '${b}' (${nodes.get(b)!.node.type}) expects ${fmt(want)}`,
    );
  }
  if (incoming.get(input)!.length > 0)
    throw new NirError(`nir: the Input node '${input}' has incoming edges (from ${incoming.get(input)!.join(', ')})`);

  const stateful = (name: string): boolean => {
    const n = nodes.get(name)!.node;
    if (NEURONS.has(n.type)) return true;
    return n.type === 'Delay' && Math.min(...arr(n, 'delay', name).values) / dt >= 0.5;
  };
  const recurrent = cycleEdges(nodes.keys(), edges, stateful);
  const flatEdges: FlatEdge[] = edges.map(([from, to], i) => ({ from, to, recurrent: recurrent.has(i) }));
  const order = topologicalOrder([...nodes.keys()], flatEdges);
  const flatNodes = new Map<string, FlatNode>();
  for (const [name, { path, node }] of nodes) {
    const s = shapes.get(name)!;
    flatNodes.set(name, { name, path, type: node.type, node, inShape: s.inShape!, outShape: s.outShape! });
  }
  return { nodes: flatNodes, edges: flatEdges, order, input, output };
}

/** Indices of the edges that enter a stateful node from its own strongly connected component. */
function cycleEdges(names: Iterable<string>, edges: readonly [string, string][], stateful: (n: string) => boolean): Set<number> {
  // Tarjan's strongly connected components.
  const adj = new Map<string, string[]>();
  for (const n of names) adj.set(n, []);
  for (const [a, b] of edges) adj.get(a)!.push(b);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const comp = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  let counter = 0;
  let comps = 0;
  const strong = (v: string): void => {
    // Iterative, so deep chains do not overflow the call stack.
    const work: [string, number][] = [[v, 0]];
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const [u, i] = top;
      const next = adj.get(u)!;
      if (i < next.length) {
        top[1]++;
        const w = next[i];
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) low.set(u, Math.min(low.get(u)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent)!, low.get(u)!));
      }
      if (low.get(u) === index.get(u)) {
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.set(w, comps);
        } while (w !== u);
        comps++;
      }
    }
  };
  for (const n of adj.keys()) if (!index.has(n)) strong(n);
  const out = new Set<number>();
  edges.forEach(([a, b], i) => {
    if (comp.get(a) === comp.get(b) && stateful(b)) out.add(i);
  });
  return out;
}

function topologicalOrder(names: string[], edges: readonly FlatEdge[]): string[] {
  const indegree = new Map(names.map((n) => [n, 0]));
  const next = new Map<string, string[]>(names.map((n) => [n, []]));
  for (const e of edges) {
    if (e.recurrent) continue;
    indegree.set(e.to, indegree.get(e.to)! + 1);
    next.get(e.from)!.push(e.to);
  }
  const ready = names.filter((n) => indegree.get(n) === 0);
  const order: string[] = [];
  while (ready.length > 0) {
    const n = ready.shift()!;
    order.push(n);
    for (const m of next.get(n)!) {
      indegree.set(m, indegree.get(m)! - 1);
      if (indegree.get(m) === 0) ready.push(m);
    }
  }
  if (order.length < names.length) {
    const left = new Set(names.filter((n) => !order.includes(n)));
    const cycle = findCycle(left, edges);
    throw new NirError(
      `nir: a cycle without state: ${cycle.join(' -> ')}; every cycle must pass through a neuron (I, LI, IF, LIF, CubaLI, CubaLIF) or a Delay of at least one step, whose input edge then reads the previous step`,
    );
  }
  return order;
}

function findCycle(left: Set<string>, edges: readonly FlatEdge[]): string[] {
  // Nodes downstream of a cycle are left too: drop sinks until every node has a way forward.
  for (let dropped = true; dropped;) {
    dropped = false;
    for (const n of left) {
      if (!edges.some((e) => !e.recurrent && e.from === n && left.has(e.to))) {
        left.delete(n);
        dropped = true;
      }
    }
  }
  const start = [...left][0];
  const path = [start];
  const seen = new Map([[start, 0]]);
  for (let cur = start; ;) {
    const e = edges.find((x) => !x.recurrent && x.from === cur && left.has(x.to));
    if (e === undefined) return path;
    if (seen.has(e.to)) return [...path.slice(seen.get(e.to)!), e.to];
    seen.set(e.to, path.length);
    path.push(e.to);
    cur = e.to;
  }
}

/** The numeric parameters of a graph that become tensors of the model's params (nested by graph path). */
const TENSOR_PARAMS: Partial<Record<NirLeafType, readonly string[]>> = {
  Affine: ['weight', 'bias'],
  Linear: ['weight'],
  Scale: ['scale'],
  Threshold: ['threshold'],
  Conv1d: ['weight', 'bias'],
  Conv2d: ['weight', 'bias'],
  I: ['r'],
  LI: ['tau', 'r', 'v_leak'],
  IF: ['r', 'v_threshold', 'v_reset'],
  LIF: ['tau', 'r', 'v_leak', 'v_threshold', 'v_reset'],
  CubaLI: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'w_in'],
  CubaLIF: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'v_threshold', 'v_reset', 'w_in'],
};

/** The params of a model loaded from NIR: float32 tensors of every numeric node parameter, nested by graph path. */
export type NirParams = { readonly [k: string]: NirParams | Tensor };

/** The model's params: float32 tensors of every numeric node parameter, nested by graph path. */
export function paramsOf(flat: FlatGraph): NirParams {
  const root: Record<string, unknown> = {};
  for (const n of flat.nodes.values()) {
    const keys = TENSOR_PARAMS[n.type];
    if (!keys) continue;
    let at = root;
    for (const p of n.path.slice(0, -1)) at = (at[p] ??= {}) as Record<string, unknown>;
    const rec: Record<string, Tensor> = {};
    for (const k of keys) {
      const a = arr(n.node, k, n.name);
      rec[k] = fromTyped(Float32Array.from(a.values), a.shape, 'float32');
    }
    at[n.path[n.path.length - 1]] = rec;
  }
  return root as NirParams;
}

function nodeParams(params: NirParams, node: FlatNode): Record<string, Tensor> {
  let at: NirParams | Tensor = params;
  for (const p of node.path) {
    at = (at as NirParams)[p];
    if (at === undefined)
      throw new NirError(`nir: the params hold nothing for node '${node.name}' (the variables do not belong to this model?)`);
  }
  return at as unknown as Record<string, Tensor>;
}

interface StepPlan {
  readonly state: (batch: number, dtype: Tensor['dtype']) => Tensor[];
  readonly step: (x: Tensor, state: Tensor[]) => [Tensor, Tensor[]];
}

/** Coefficients computed once per call (outside the scan), and the node's step function. */
function planNode(node: FlatNode, p: Record<string, Tensor>, dt: Tensor, discretisation: Discretisation, dtSeconds: number): StepPlan {
  const shape = node.outShape;
  const none: Tensor[] = [];
  const zerosFor = (count: number) => (batch: number, dtype: Tensor['dtype']) =>
    Array.from({ length: count }, () => zeros([batch, ...shape], dtype));
  const stateless = (f: (x: Tensor) => Tensor): StepPlan => ({ state: () => none, step: (x) => [f(x), none] });
  const spike = (v: Tensor): [Tensor, Tensor] => {
    const z = greater(v, p.v_threshold);
    return [cast(z, v.dtype), where(z, p.v_reset, v)];
  };
  switch (node.type) {
    case 'Input':
    case 'Output':
      return stateless((x) => (x.shape.slice(1).join() === shape.join() ? x : reshape(x, [x.shape[0], ...shape])));
    case 'Affine': {
      const wt = transpose(p.weight, [1, 0]);
      return stateless((x) => add(matmul(x, wt), p.bias));
    }
    case 'Linear': {
      const wt = transpose(p.weight, [1, 0]);
      return stateless((x) => matmul(x, wt));
    }
    case 'Scale':
      return stateless((x) => mul(x, p.scale));
    case 'Threshold':
      return stateless((x) => cast(greater(x, p.threshold), x.dtype));
    case 'Flatten':
      return stateless((x) => reshape(x, [x.shape[0], ...shape]));
    case 'Conv1d':
    case 'Conv2d': {
      const g = convGeometry(node.node, node.name);
      // NIR's (c_out, c_in / groups, ...k) to the core's [...k, c_in / groups, c_out].
      const kernel = transpose(p.weight, g.rank === 1 ? [2, 1, 0] : [2, 3, 1, 0]);
      const bias = reshape(p.bias, [p.bias.ndim === 0 ? 1 : g.channelsOut, ...g.kernel.map(() => 1)]);
      const options = {
        strides: g.stride,
        dilation: g.dilation,
        groups: g.groups,
        padding: resolvedPadding(g),
        dataFormat: 'channelsFirst' as const,
      };
      return stateless((x) => add(convGeneral(x, kernel, options), bias));
    }
    case 'SumPool2d':
    case 'AvgPool2d': {
      const g = poolGeometry(node.node, node.name);
      const options = {
        strides: g.stride,
        padding: g.padding.map((q) => [q, q] as [number, number]),
        dataFormat: 'channelsFirst' as const,
      };
      // PyTorch's AvgPool2d counts padded positions (count_include_pad): the window sum over its size.
      const size = g.kernel[0] * g.kernel[1];
      if (node.type === 'SumPool2d') return stateless((x) => sumPool(x, g.kernel, options));
      return stateless((x) => div(sumPool(x, g.kernel, options), size));
    }
    case 'I':
    case 'IF': {
      const gain = mul(dt, p.r);
      return {
        state: zerosFor(1),
        step: (x, [v]) => {
          const next = add(v, mul(gain, x));
          if (node.type === 'I') return [next, [next]];
          const [z, after] = spike(next);
          return [z, [after]];
        },
      };
    }
    case 'LI':
    case 'LIF': {
      const update = leak(p.tau, p.r, p.v_leak, dt, discretisation);
      return {
        state: zerosFor(1),
        step: (x, [v]) => {
          const next = update(v, x);
          if (node.type === 'LI') return [next, [next]];
          const [z, after] = spike(next);
          return [z, [after]];
        },
      };
    }
    case 'CubaLI':
    case 'CubaLIF': {
      const update = cuba(p, dt, discretisation);
      return {
        state: zerosFor(2),
        step: (x, [i, v]) => {
          const [iNext, vNext] = update(i, v, x);
          if (node.type === 'CubaLI') return [vNext, [iNext, vNext]];
          const [z, after] = spike(vNext);
          return [z, [iNext, after]];
        },
      };
    }
    case 'Delay': {
      const steps = Array.from(arr(node.node, 'delay', node.name).values, (d) => Math.round(d / dtSeconds));
      const depth = Math.max(...steps);
      if (depth > 100_000)
        throw new NirError(
          `nir: node '${node.name}' (Delay): a delay of ${depth} steps at dt = ${dtSeconds} s is more than this importer buffers (100000)`,
        );
      const stepsT = fromTyped(Int32Array.from(steps), shape, 'int32');
      if (depth === 0) return stateless((x) => x);
      return {
        state: (batch, dtype) => [zeros([depth, batch, ...shape], dtype)],
        step: (x, [buf]) => {
          // buf[k] holds x_{t-1-k}; element i reads x_{t - steps_i}.
          let y = where(equal(stepsT, 0), x, zeros(x.shape, x.dtype));
          for (let k = 1; k <= depth; k++) y = add(y, where(equal(stepsT, k), indexAxis(buf, 0, k - 1), zeros(x.shape, x.dtype)));
          const now = reshape(x, [1, ...x.shape]);
          const shifted = depth === 1 ? now : concatenate([now, slice(buf, [0], [depth - 1])], 0);
          return [y, [shifted]];
        },
      };
    }
    default:
      throw new NirError(`nir: node '${node.name}' (${node.type}) cannot be simulated yet`);
  }
}

/** The membrane update of LI/LIF: v' from v and the input x. */
function leak(tau: Tensor, r: Tensor, vLeak: Tensor, dt: Tensor, discretisation: Discretisation): (v: Tensor, x: Tensor) => Tensor {
  // v' = d v + (1 - d) v_leak + ((1 - d) r) x with d = 1 - dt/tau (Euler) or exp(-dt / max(tau, 1e-8))
  // (exact): the operations of the lowpass filter and of the continuous-time neurons, in their
  // order, so that those layers export and come back bit for bit.
  const d = discretisation === 'euler' ? sub(1, div(dt, tau)) : exp(neg(div(dt, maximum(tau, 1e-8))));
  const oneMinusD = sub(1, d);
  const leakTerm = mul(oneMinusD, vLeak);
  const gain = mul(oneMinusD, r);
  return (v, x) => add(add(mul(v, d), leakTerm), mul(x, gain));
}

/** The synaptic current and membrane updates of CubaLI/CubaLIF. */
function cuba(
  p: Record<string, Tensor>,
  dt: Tensor,
  discretisation: Discretisation,
): (i: Tensor, v: Tensor, x: Tensor) => [Tensor, Tensor] {
  if (discretisation === 'euler') {
    const ks = div(dt, p.tau_syn);
    const km = div(dt, p.tau_mem);
    return (i, v, x) => {
      const iNext = add(i, mul(ks, sub(mul(p.w_in, x), i)));
      return [iNext, add(v, mul(km, add(sub(p.v_leak, v), mul(p.r, iNext))))];
    };
  }
  // Zero-order hold of tau_s I' = -I + w x, tau_m v' = (v_leak - v) + r I over one step:
  // I(dt) = ds I + (1 - ds) w x; v(dt) = v_leak + dm (v - v_leak) + r ((1 - dm) w x + (I - w x) c),
  // c = tau_s (ds - dm) / (tau_s - tau_m), whose limit for tau_s = tau_m is (dt / tau_m) dm.
  const ds = exp(neg(div(dt, p.tau_syn)));
  const dm = exp(neg(div(dt, p.tau_mem)));
  const gap = sub(p.tau_syn, p.tau_mem);
  const near = less(abs(gap), mul(1e-6, p.tau_mem));
  const c = where(near, mul(div(dt, p.tau_mem), dm), div(mul(p.tau_syn, sub(ds, dm)), where(near, 1, gap)));
  const oneMinusDs = sub(1, ds);
  const oneMinusDm = sub(1, dm);
  return (i, v, x) => {
    const wx = mul(p.w_in, x);
    const iNext = add(mul(ds, i), mul(oneMinusDs, wx));
    const drive = add(mul(oneMinusDm, wx), mul(sub(i, wx), c));
    return [iNext, add(add(p.v_leak, mul(dm, sub(v, p.v_leak))), mul(p.r, drive))];
  };
}

/** Options of runGraph. */
export interface RunOptions {
  /** Nodes whose per-step output and state to return (names as in the graph, `outer.inner` for nested ones). */
  readonly record?: readonly string[];
}
/** A recorded node's output and state at every step (runGraph's `record` option). */
export interface NodeTrace {
  /** The node's output at every step, (batch, time, ...shape). */
  readonly output: Tensor;
  /** Its state after every step: [v] for I/LI/IF/LIF, [I, v] for CubaLI/CubaLIF, none for stateless nodes. */
  readonly state: readonly Tensor[];
}

/** Runs the graph over x (batch, time, ...input shape): one scan over time. */
export function runGraph(
  flat: FlatGraph,
  params: NirParams,
  x: Tensor,
  dtSeconds: number,
  discretisation: Discretisation,
  options: RunOptions = {},
): { y: Tensor; traces: Record<string, NodeTrace> } {
  const inNode = flat.nodes.get(flat.input)!;
  const want = inNode.outShape;
  if (x.ndim < 3 || !(x.shape.slice(2).join() === want.join() || squeezed(x.shape.slice(2)) === squeezed(want))) {
    throw new NirError(`nir model: expected input (batch, time, ${want.join(', ')}), got shape ${fmt(x.shape)}`);
  }
  const record = options.record ?? [];
  for (const r of record)
    if (!flat.nodes.has(r))
      throw new NirError(`nir model: cannot record '${r}': no such node (nodes: ${[...flat.nodes.keys()].join(', ')})`);
  const batch = x.shape[0];
  const dtype = x.dtype;
  const dt = scalar(dtSeconds, dtype);
  const plans = new Map<string, StepPlan>();
  for (const name of flat.order) {
    const node = flat.nodes.get(name)!;
    const raw = TENSOR_PARAMS[node.type] ? nodeParams(params, node) : {};
    const p: Record<string, Tensor> = {};
    // Nodes run in the input's precision (float64 inputs give float64 simulations).
    for (const [k, v] of Object.entries(raw)) p[k] = v.dtype === dtype ? v : cast(v, dtype);
    plans.set(name, planNode(node, p, dt, discretisation, dtSeconds));
  }
  const incoming = new Map<string, FlatEdge[]>([...flat.nodes.keys()].map((n) => [n, []]));
  for (const e of flat.edges) incoming.get(e.to)!.push(e);
  const delayedSources = [...new Set(flat.edges.filter((e) => e.recurrent).map((e) => e.from))];

  type Carry = { states: Record<string, Tensor[]>; previous: Record<string, Tensor> };
  const init: Carry = { states: {}, previous: {} };
  for (const name of flat.order) init.states[name] = plans.get(name)!.state(batch, dtype);
  for (const name of delayedSources) init.previous[name] = zeros([batch, ...flat.nodes.get(name)!.outShape], dtype);

  const timeMajor = transpose(x, [1, 0, ...x.shape.slice(2).map((_, i) => i + 2)]);
  const [, ys] = scan(
    (carry: Carry, xt: Tensor) => {
      const outs = new Map<string, Tensor>();
      const states: Record<string, Tensor[]> = {};
      for (const name of flat.order) {
        const node = flat.nodes.get(name)!;
        let u: Tensor | null = name === flat.input ? xt : null;
        for (const e of incoming.get(name)!) {
          let v = e.recurrent ? carry.previous[e.from] : outs.get(e.from)!;
          if (v.shape.slice(1).join() !== node.inShape.join()) v = reshape(v, [batch, ...node.inShape]);
          u = u === null ? v : add(u, v);
        }
        u ??= zeros([batch, ...node.inShape], dtype);
        const [y, s] = plans.get(name)!.step(u, carry.states[name]);
        outs.set(name, y);
        states[name] = s;
      }
      const previous: Record<string, Tensor> = {};
      for (const name of delayedSources) previous[name] = outs.get(name)!;
      const recorded: Record<string, Tensor[]> = {};
      for (const r of record) recorded[r] = [outs.get(r)!, ...states[r]];
      return [
        { states, previous },
        { y: outs.get(flat.output)!, recorded },
      ] as [Carry, Tree];
    },
    init,
    timeMajor,
  );
  const { y, recorded } = ys as { y: Tensor; recorded: Record<string, Tensor[]> };
  const batchMajor = (t: Tensor): Tensor => transpose(t, [1, 0, ...t.shape.slice(2).map((_, i) => i + 2)]);
  const traces: Record<string, NodeTrace> = {};
  for (const r of record) traces[r] = { output: batchMajor(recorded[r][0]), state: recorded[r].slice(1).map(batchMajor) };
  return { y: batchMajor(y), traces };
}

/** What a model imported from NIR (or built from a graph) carries besides the layer protocol. */
export interface NirModelInfo {
  readonly graph: NirGraph;
  readonly flat: FlatGraph;
  readonly dt: number;
  readonly discretisation: Discretisation;
}

/** A spiketrace model running a NIR graph: (batch, time, ...input) -> (batch, time, ...output). */
export interface NirModel extends Layer<NirParams, Record<string, never>, Record<string, never>> {
  readonly nir: NirModelInfo;
  /** Runs the model and returns the output with the per-step traces of the nodes named in `record`. */
  run(params: NirParams, x: Tensor, options?: RunOptions): { y: Tensor; traces: Record<string, NodeTrace> };
}

/** A model running `graph` with time step `dt` (seconds); its initial params are the graph's. */
export function modelFromGraph(
  graph: NirGraph,
  options: { dt: number; discretisation?: Discretisation; name?: string },
): { model: NirModel; variables: { params: NirParams; state: Record<string, never> } } {
  const dt = options.dt;
  if (!(typeof dt === 'number' && dt > 0 && Number.isFinite(dt)))
    throw new NirError(`nir.load: dt must be a positive number of seconds, got ${dt}`);
  const discretisation = options.discretisation ?? 'euler';
  if (discretisation !== 'euler' && discretisation !== 'exact')
    throw new NirError(`nir.load: discretisation must be 'euler' or 'exact', got '${String(discretisation)}'`);
  const flat = flattenGraph(graph, dt);
  const initial = paramsOf(flat);
  const name = uniqueName('nir_graph', options.name);
  const inShape = flat.nodes.get(flat.input)!.outShape;
  const outShape = flat.nodes.get(flat.output)!.outShape;
  const model: NirModel = {
    kind: 'NIRGraph',
    name,
    config: { dt, discretisation, nodes: flat.order.length, edges: flat.edges.length, inputShape: inShape, outputShape: outShape },
    nir: { graph, flat, dt, discretisation },
    init(_key, inputShape: LayerShape) {
      const given = inputShape.slice(1);
      if (inputShape.length < 2 || (given.join() !== inShape.join() && squeezed(given as number[]) !== squeezed(inShape))) {
        throw new NirError(
          `nir model '${name}': expected input shape (batch, time, ${inShape.join(', ')}), got (None, ${inputShape.map((d) => d ?? 'None').join(', ')})`,
        );
      }
      return { params: initial, state: {}, outputShape: [inputShape[0], ...outShape] };
    },
    apply(params, x, _ctx, state) {
      return { y: runGraph(flat, params, x, dt, discretisation).y, state, losses: [] };
    },
    run: (params, x, runOptions) => runGraph(flat, params, x, dt, discretisation, runOptions),
    with: () => model,
  };
  return { model, variables: { params: initial, state: {} } };
}
