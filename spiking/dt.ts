/**
 * dt: the simulation time step. Layers read the global default when they are created (so a
 * change affects only layers made afterwards); a layer's current dt lives in its state, so a
 * DtScheduler can change it between batches without recompiling the training step.
 */
import { scalar, type Tensor, type Tree } from '../core/index.js';
import { forEachLayerState, mapLayerState, type Layer } from '../nn/index.js';

let defaultDt = 0.001;

/** The global default dt (0.001 unless changed). */
export function getDefaultDt(): number {
  return defaultDt;
}
/** Sets the global default dt for layers created from now on. */
export function setDefaultDt(dt: number): void {
  checkDt('setDefaultDt', dt);
  defaultDt = dt;
}

/** The precision a layer keeps dt (and its filter parameters) in. */
export type LayerDtype = 'float32' | 'float64';

/**
 * dt must be a positive finite number that stays one in the layer's dtype: 1e-50 rounds to 0 and
 * 1e39 to Infinity in float32, which would make every output NaN.
 */
export function checkDt(where: string, dt: number, dtype: LayerDtype = 'float32'): void {
  if (!(typeof dt === 'number' && Number.isFinite(dt) && dt > 0))
    throw new RangeError(`${where}: dt must be a positive finite number, got ${dt}`);
  const stored = dtype === 'float32' ? Math.fround(dt) : dt;
  if (!(stored > 0 && Number.isFinite(stored)))
    throw new RangeError(
      `${where}: dt = ${dt} is ${stored} in ${dtype}; dt must stay positive and finite in the layer's dtype (float32 holds about 1.4e-45 to 3.4e38)`,
    );
}

export function checkLayerDtype(where: string, dtype: unknown): LayerDtype {
  if (dtype === undefined) return 'float32';
  if (dtype !== 'float32' && dtype !== 'float64')
    throw new TypeError(`${where}: dtype must be 'float32' or 'float64', got ${String(dtype)}`);
  return dtype;
}

/**
 * Returns `state` with the dt of every dt-carrying layer of `model` (those that declare
 * `carriesDt`) set to `dt`, or only those whose name passes `filter`. Used by dtScheduler and to
 * evaluate a trained model at another dt.
 */
export function setDt(model: Layer, state: Tree, dt: number, filter: (layerName: string) => boolean = () => true): Tree {
  checkDt('setDt', dt, 'float64');
  return mapLayerState(model, state, (layer, s) => {
    if (!(layer.carriesDt && filter(layer.name))) return s;
    // The new dt keeps the precision the layer's state holds it in.
    const dtype = (s as Record<string, Tensor>).dt?.dtype === 'float64' ? 'float64' : 'float32';
    checkDt(`setDt (layer '${layer.name}')`, dt, dtype);
    return { ...(s as Record<string, Tree>), dt: scalar(dt, dtype) };
  });
}

/** Reads the dt of the first dt-carrying layer in `state` (for statistics). */
export function readDt(model: Layer, state: Tree): number | undefined {
  let dt: number | undefined;
  forEachLayerState(model, state, (layer, s) => {
    if (!layer.carriesDt) return false;
    dt = ((s as Record<string, Tensor>).dt as Tensor).item();
    return true;
  });
  return dt;
}
