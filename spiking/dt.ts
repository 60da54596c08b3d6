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

export function checkDt(where: string, dt: number): void {
  if (!(typeof dt === 'number' && Number.isFinite(dt) && dt > 0)) throw new RangeError(`${where}: dt must be a positive finite number, got ${dt}`);
}

/**
 * Returns `state` with the dt of every dt-carrying layer of `model` (those that declare
 * `carriesDt`) set to `dt`, or only those whose name passes `filter`. Used by dtScheduler and to
 * evaluate a trained model at another dt.
 */
export function setDt(model: Layer, state: Tree, dt: number, filter: (layerName: string) => boolean = () => true): Tree {
  checkDt('setDt', dt);
  return mapLayerState(model, state, (layer, s) => (layer.carriesDt && filter(layer.name) ? { ...(s as Record<string, Tree>), dt: scalar(dt) } : s));
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
