/**
 * NIR (the Neuromorphic Intermediate Representation) files: read and write graphs, run them as
 * spiketrace models, and export spiketrace models as graphs. `spiketrace/nir` is this module.
 *
 * @example
 * import * as nir from 'spiketrace/nir';
 * const { model, variables } = await nir.load('snn.nir', { dt: 1e-3 });
 * const y = model.apply(variables.params, x, { training: false }, variables.state).y; // x: (batch, time, ...)
 * await nir.save('back.nir', model, variables, { dt: 1e-3 });
 */
import { readFileBytes, readHdf5, writeFileAtomic, writeHdf5 } from './hdf5.js';
import { graphFromHdf5, graphToHdf5, type NirGraph } from './graph.js';
import { modelFromGraph, type Discretisation, type NirModel, type NirParams } from './simulate.js';
import { graphFromModel, type ExportOptions } from './export.js';
import type { Layer } from '../../nn/index.js';
import type { Tree } from '../../core/index.js';

export { NirError, MAX_DATASET_ELEMENTS } from './hdf5.js';
export {
  NIR_VERSION,
  LEAF_NODE_TYPES,
  NODE_PARAMS,
  nirArray,
  type NirArray,
  type NirValue,
  type NirGraph,
  type NirNode,
  type NirLeafNode,
  type NirLeafType,
  type NirNodeType,
} from './graph.js';
export {
  modelFromGraph,
  type Discretisation,
  type NirModel,
  type NirModelInfo,
  type NirParams,
  type NodeTrace,
  type RunOptions,
  type FlatGraph,
  type FlatNode,
  type FlatEdge,
} from './simulate.js';
export { graphFromModel, type ExportOptions } from './export.js';

/** A file path (Node) or the file's bytes (Node and browsers). */
export type NirSource = string | Uint8Array;

/** Reads a NIR file as a graph record (no simulation). */
export async function read(source: NirSource): Promise<{ graph: NirGraph; version: string }> {
  const bytes = typeof source === 'string' ? await readFileBytes(source, 'nir.read') : source;
  const name = typeof source === 'string' ? source : '<bytes>';
  return graphFromHdf5(await readHdf5(bytes, name), name);
}

/** A graph as the bytes of a NIR file (HDF5), as the reference implementation lays it out. */
export async function toBytes(graph: NirGraph): Promise<Uint8Array> {
  return writeHdf5(graphToHdf5(graph));
}

/** Writes a graph to a NIR file, atomically. */
export async function write(path: string, graph: NirGraph): Promise<void> {
  await writeFileAtomic(path, await toBytes(graph), 'nir.write');
}

export interface LoadOptions {
  /** Simulation time step in seconds. */
  readonly dt: number;
  /** 'euler' (default, what most frameworks do) or 'exact' (zero-order hold of the linear dynamics). */
  readonly discretisation?: Discretisation;
  readonly name?: string;
}

/**
 * Loads a NIR file as a spiketrace model: `model` maps (batch, time, ...input shape) to (batch,
 * time, ...output shape) as one scan over time; `variables.params` holds every numeric node
 * parameter as a float32 tensor, nested by node name.
 */
export async function load(
  source: NirSource,
  options: LoadOptions,
): Promise<{ model: NirModel; variables: { params: NirParams; state: Record<string, never> }; graph: NirGraph; version: string }> {
  const { graph, version } = await read(source);
  const { model, variables } = modelFromGraph(graph, options);
  return { model, variables, graph, version };
}

/**
 * Exports a model with its variables as a NIR file (atomically). Models loaded from NIR are
 * written back with the params in `variables`; sequential spiketrace models layer by layer (see
 * {@link graphFromModel} for the layers that have a NIR counterpart).
 */
export async function save(path: string, model: Layer, variables: { params: Tree; state?: Tree }, options: ExportOptions): Promise<void> {
  await write(path, graphFromModel(model, variables, options));
}

/** The bytes {@link save} would write. */
export async function saveToBytes(model: Layer, variables: { params: Tree; state?: Tree }, options: ExportOptions): Promise<Uint8Array> {
  return toBytes(graphFromModel(model, variables, options));
}
