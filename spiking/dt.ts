/**
 * dt: the simulation time step. Layers read the global default when they are created (so a
 * change affects only layers made afterwards); a layer's current dt lives in its state, so a
 * DtScheduler can change it between batches without recompiling the training step.
 */
import { scalar, type Tensor, type Tree } from '../core/index.js';
import type { Layer } from '../nn/index.js';

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

/** Layer kinds whose state carries a `dt`. */
export const DT_LAYERS = new Set(['SpikingActivation', 'Lowpass', 'Alpha']);

/**
 * Returns `state` with the dt of every dt-carrying layer of `model` set to `dt` (or only those
 * whose name passes `filter`). Used by dtScheduler and to evaluate a trained model at another dt.
 */
export function setDt(model: Layer, state: Tree, dt: number, filter: (layerName: string) => boolean = () => true): Tree {
  checkDt('setDt', dt);
  const visit = (layer: Layer, s: Tree): Tree => {
    if (DT_LAYERS.has(layer.kind) && filter(layer.name)) return { ...(s as Record<string, Tree>), dt: scalar(dt) };
    if (layer.kind === 'Sequential' && layer.children) {
      const rec = { ...(s as Record<string, Tree>) };
      for (const c of layer.children) rec[c.name] = visit(c, rec[c.name]);
      return rec;
    }
    if (layer.kind === 'TimeDistributed' && layer.children) return visit(layer.children[0], s);
    return s;
  };
  return visit(model, state);
}

/** Reads the dt of the first dt-carrying layer in `state` (for statistics). */
export function readDt(model: Layer, state: Tree): number | undefined {
  const visit = (layer: Layer, s: Tree): number | undefined => {
    if (DT_LAYERS.has(layer.kind)) return ((s as Record<string, Tensor>).dt as Tensor).item();
    if (layer.children) {
      for (const c of layer.children) {
        const r = visit(c, layer.kind === 'Sequential' ? (s as Record<string, Tree>)[c.name] : s);
        if (r !== undefined) return r;
      }
    }
    return undefined;
  };
  return visit(model, state);
}
