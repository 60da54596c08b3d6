/**
 * NIR graphs as plain records, their HDF5 layout and their checks. The layout follows the NIR
 * reference implementation: a root `version` string and a `node` group; every node is a group with
 * a `type` string and one dataset per parameter; a graph node holds `nodes/<name>/...` and `edges`
 * (an (n, 2) string dataset of source and target names). Parameter names are NIR's (v_threshold,
 * tau_syn, ...), so a graph reads like its NIR documentation.
 */
import { NirError, type H5Entry, type H5Group, type H5NumericDType } from './hdf5.js';

/** A numeric parameter: its dtype and shape as stored, values row-major. */
export interface NirArray {
  readonly dtype: H5NumericDType;
  readonly shape: readonly number[];
  readonly values: Float64Array;
}
/** A parameter value: an array, or a string where NIR allows one (a convolution's padding 'same'/'valid'). */
export type NirValue = NirArray | string;

/** The NIR node types spiketrace reads (every type but the nested 'NIRGraph'). */
export const LEAF_NODE_TYPES = [
  'Input',
  'Output',
  'Affine',
  'Linear',
  'Scale',
  'Flatten',
  'Threshold',
  'I',
  'LI',
  'IF',
  'LIF',
  'CubaLI',
  'CubaLIF',
  'Delay',
  'Conv1d',
  'Conv2d',
  'SumPool2d',
  'AvgPool2d',
] as const;
/** One of LEAF_NODE_TYPES. */
export type NirLeafType = (typeof LEAF_NODE_TYPES)[number];
/** A leaf type or a nested graph. */
export type NirNodeType = NirLeafType | 'NIRGraph';

/** A node that is not a graph: its type and its parameters by NIR name. */
export interface NirLeafNode {
  readonly type: NirLeafType;
  readonly params: Readonly<Record<string, NirValue>>;
}
/** A NIR graph as read from or written to a file: named nodes (leaves or nested graphs) and [from, to] edges. */
export interface NirGraph {
  readonly type: 'NIRGraph';
  readonly nodes: Readonly<Record<string, NirNode>>;
  readonly edges: readonly (readonly [string, string])[];
}
/** A node of a NIR graph: a leaf or a nested graph. */
export type NirNode = NirLeafNode | NirGraph;

/** Required and optional parameters per node type (the optional ones get NIR's defaults). */
export const NODE_PARAMS: Record<NirLeafType, { readonly required: readonly string[]; readonly optional: readonly string[] }> = {
  Input: { required: ['shape'], optional: [] },
  Output: { required: ['shape'], optional: [] },
  Affine: { required: ['weight', 'bias'], optional: [] },
  Linear: { required: ['weight'], optional: [] },
  Scale: { required: ['scale'], optional: [] },
  Flatten: { required: ['start_dim', 'end_dim'], optional: ['input_type'] },
  Threshold: { required: ['threshold'], optional: [] },
  I: { required: ['r'], optional: [] },
  LI: { required: ['tau', 'r', 'v_leak'], optional: [] },
  IF: { required: ['r', 'v_threshold'], optional: ['v_reset'] },
  LIF: { required: ['tau', 'r', 'v_leak', 'v_threshold'], optional: ['v_reset'] },
  CubaLI: { required: ['tau_syn', 'tau_mem', 'r', 'v_leak'], optional: ['w_in'] },
  CubaLIF: { required: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'v_threshold'], optional: ['v_reset', 'w_in'] },
  Delay: { required: ['delay'], optional: [] },
  Conv1d: { required: ['weight', 'stride', 'padding', 'dilation', 'groups', 'bias'], optional: ['input_shape'] },
  Conv2d: { required: ['weight', 'stride', 'padding', 'dilation', 'groups', 'bias'], optional: ['input_shape'] },
  SumPool2d: { required: ['kernel_size', 'stride', 'padding'], optional: [] },
  AvgPool2d: { required: ['kernel_size', 'stride', 'padding'], optional: [] },
};

/** The NIR version this library writes. */
export const NIR_VERSION = '1.0.0';

export function nirArray(values: ArrayLike<number>, shape: readonly number[], dtype: H5NumericDType = 'float32'): NirArray {
  const size = shape.reduce((a, b) => a * b, 1);
  if (values.length !== size) throw new NirError(`nirArray: ${values.length} values for shape [${shape.join(', ')}]`);
  return { dtype, shape: [...shape], values: Float64Array.from(values) };
}

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** A graph read from the tree of an HDF5 file (`source` names the file in errors). */
export function graphFromHdf5(root: H5Group, source: string): { graph: NirGraph; version: string } {
  const version = root.entries.get('version');
  const versionText = version?.kind === 'string' ? version.values[0] : 'unknown';
  const node = root.entries.get('node');
  if (node === undefined || node.kind !== 'group')
    throw new NirError(
      `nir: ${source}: no 'node' group at the root; this is not a NIR file (root holds: ${[...root.entries.keys()].join(', ') || 'nothing'})`,
    );
  const graph = nodeFromGroup(node, source, '<root>');
  if (graph.type !== 'NIRGraph') throw new NirError(`nir: ${source}: the root node is a ${graph.type}, expected a NIRGraph`);
  return { graph, version: versionText };
}

function nodeFromGroup(group: H5Group, source: string, name: string): NirNode {
  const typeEntry = group.entries.get('type');
  if (typeEntry === undefined) throw new NirError(`nir: ${source}: node '${name}' has no 'type' dataset`);
  if (typeEntry.kind !== 'string' || typeEntry.values.length !== 1)
    throw new NirError(`nir: ${source}: node '${name}': 'type' must be one string, got ${describe(typeEntry)}`);
  const type = typeEntry.values[0];
  if (type === 'NIRGraph') {
    const nodesEntry = group.entries.get('nodes');
    if (nodesEntry === undefined || nodesEntry.kind !== 'group')
      throw new NirError(`nir: ${source}: graph node '${name}' has no 'nodes' group`);
    const nodes: Record<string, NirNode> = {};
    for (const [k, v] of nodesEntry.entries) {
      const child = name === '<root>' ? k : `${name}.${k}`;
      if (v.kind !== 'group') throw new NirError(`nir: ${source}: node '${child}' is a dataset, expected a group with a 'type'`);
      nodes[k] = nodeFromGroup(v, source, child);
    }
    const edgesEntry = group.entries.get('edges');
    let edges: [string, string][] = [];
    if (edgesEntry !== undefined) {
      if (edgesEntry.kind !== 'string')
        throw new NirError(`nir: ${source}: graph '${name}': 'edges' must hold strings, got ${describe(edgesEntry)}`);
      const n = edgesEntry.values.length;
      const pairs = edgesEntry.shape.length === 2 && edgesEntry.shape[1] === 2;
      if (!(pairs || n === 0))
        throw new NirError(`nir: ${source}: graph '${name}': 'edges' must have shape (n, 2), got ${fmt(edgesEntry.shape)}`);
      edges = [];
      for (let i = 0; i < n; i += 2) edges.push([edgesEntry.values[i], edgesEntry.values[i + 1]]);
    }
    return { type: 'NIRGraph', nodes, edges };
  }
  if (!(LEAF_NODE_TYPES as readonly string[]).includes(type)) {
    throw new NirError(
      `nir: ${source}: node '${name}' has the unknown type '${type}' (known: ${[...LEAF_NODE_TYPES, 'NIRGraph'].join(', ')})`,
    );
  }
  const leafType = type as NirLeafType;
  const spec = NODE_PARAMS[leafType];
  const params: Record<string, NirValue> = {};
  for (const key of [...spec.required, ...spec.optional]) {
    const e = group.entries.get(key);
    if (e === undefined) {
      if (spec.required.includes(key))
        throw new NirError(
          `nir: ${source}: node '${name}' (${type}) is missing the parameter '${key}' (needs ${spec.required.join(', ')})`,
        );
      continue;
    }
    if (e.kind === 'group')
      throw new NirError(`nir: ${source}: node '${name}' (${type}): parameter '${key}' is a group, expected a dataset`);
    if (e.kind === 'string') {
      if (key === 'padding' && e.values.length === 1 && (e.values[0] === 'same' || e.values[0] === 'valid')) params[key] = e.values[0];
      else throw new NirError(`nir: ${source}: node '${name}' (${type}): parameter '${key}' must be numeric, got ${describe(e)}`);
      continue;
    }
    params[key] = { dtype: e.dtype, shape: e.shape, values: e.values };
  }
  return { type: leafType, params };
}

function describe(e: H5Entry): string {
  if (e.kind === 'group') return 'a group';
  if (e.kind === 'string') return `strings of shape ${fmt(e.shape)}${e.values.length === 1 ? ` ('${e.values[0]}')` : ''}`;
  return `${e.dtype} of shape ${fmt(e.shape)}`;
}

/** A graph as the tree of an HDF5 file, laid out as the reference implementation writes it. */
export function graphToHdf5(graph: NirGraph): H5Group {
  return {
    kind: 'group',
    entries: new Map<string, H5Entry>([
      ['version', { kind: 'string', shape: [], values: [NIR_VERSION] }],
      ['node', nodeToGroup(graph)],
    ]),
  };
}

function nodeToGroup(node: NirNode): H5Group {
  const entries = new Map<string, H5Entry>();
  entries.set('type', { kind: 'string', shape: [], values: [node.type] });
  if (node.type === 'NIRGraph') {
    const nodes = new Map<string, H5Entry>();
    for (const [k, v] of Object.entries(node.nodes)) nodes.set(k, nodeToGroup(v));
    entries.set('nodes', { kind: 'group', entries: nodes });
    entries.set('edges', { kind: 'string', shape: [node.edges.length, 2], values: node.edges.flat() });
    return { kind: 'group', entries };
  }
  for (const [k, v] of Object.entries(withDefaults(node).params)) {
    entries.set(
      k,
      typeof v === 'string'
        ? { kind: 'string', shape: [], values: [v] }
        : { kind: 'numeric', dtype: v.dtype, shape: v.shape, values: v.values },
    );
  }
  return { kind: 'group', entries };
}

/** A node with NIR's defaults for its optional parameters filled in (v_reset = 0, w_in = 1). */
export function withDefaults(node: NirLeafNode): NirLeafNode {
  const p = node.params;
  const like = (key: string, value: number): NirArray => {
    const ref = p[key] as NirArray;
    return { dtype: ref.dtype, shape: ref.shape, values: new Float64Array(ref.values.length).fill(value) };
  };
  const extra: Record<string, NirValue> = {};
  if ((node.type === 'IF' || node.type === 'LIF' || node.type === 'CubaLIF') && p.v_reset === undefined)
    extra.v_reset = like('v_threshold', 0);
  if ((node.type === 'CubaLI' || node.type === 'CubaLIF') && p.w_in === undefined) extra.w_in = like('v_leak', 1);
  return Object.keys(extra).length === 0 ? node : { type: node.type, params: { ...p, ...extra } };
}

/** The element count of a shape. */
export const sizeOfShape = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A shape parameter (Input/Output shape, Flatten input_type) as integers, checked. */
export function shapeParam(v: NirValue | undefined, where: string): number[] {
  if (v === undefined || typeof v === 'string')
    throw new NirError(`${where}: expected an integer shape, got ${v === undefined ? 'nothing' : `'${v}'`}`);
  if (v.shape.length > 1) throw new NirError(`${where}: a shape must be a 1-D list of sizes, got an array of shape ${fmt(v.shape)}`);
  const dims = Array.from(v.values);
  if (dims.some((d) => !Number.isInteger(d) || d < 1 || d > 2 ** 31))
    throw new NirError(`${where}: sizes must be positive integers, got ${fmt(dims)}`);
  if (sizeOfShape(dims) > 2 ** 31) throw new NirError(`${where}: shape ${fmt(dims)} has more than 2^31 elements`);
  return dims;
}

/** An integer scalar parameter (Flatten's start_dim, a convolution's groups). */
export function intParam(v: NirValue | undefined, where: string): number {
  if (v === undefined || typeof v === 'string' || v.values.length !== 1 || !Number.isInteger(v.values[0]))
    throw new NirError(
      `${where}: expected one integer, got ${v === undefined ? 'nothing' : typeof v === 'string' ? `'${v}'` : `${v.dtype} ${fmt(v.shape)}`}`,
    );
  return v.values[0];
}
