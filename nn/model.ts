/** Whole-model helpers: summary tables and rebuilding with changed layer options. */
import { random, treeLeaves, type Tree } from '../core/index.js';
import { layerShapeString, type Layer, type LayerShape } from './layer.js';
import { sequential } from './layers.js';

/**
 * A Keras-style summary: each layer's name and kind, output shape and parameter count.
 *
 * @example
 * console.log(summary(model, [28, 28]));
 */
export function summary(model: Layer, inputShape: LayerShape): string {
  const rows: [string, string, string][] = [];
  let total = 0;
  const layers = model.kind === 'Sequential' && model.children ? model.children : [model];
  let shape = inputShape;
  const keys = random.split(random.key(0), Math.max(1, layers.length));
  layers.forEach((l, i) => {
    const r = l.init(keys[i], shape);
    const count = treeLeaves(r.params).reduce((a, p) => a + p.size, 0);
    total += count;
    shape = r.outputShape;
    const inner = l.kind === 'TimeDistributed' && l.children ? `(${l.children[0].kind})` : '';
    rows.push([`${l.name} (${l.kind}${inner})`, layerShapeString(r.outputShape), String(count)]);
  });
  const w = [Math.max(28, ...rows.map((r) => r[0].length)) + 2, Math.max(20, ...rows.map((r) => r[1].length)) + 2, 10];
  const line = (c: string[]): string => c.map((s, i) => s.padEnd(w[i])).join('');
  const rule = '_'.repeat(w[0] + w[1] + w[2]);
  const out = [`Model: "${model.name}"`, rule, line(['Layer (type)', 'Output Shape', 'Param #']), '='.repeat(rule.length)];
  rows.forEach((r, i) => {
    out.push(line(r));
    if (i < rows.length - 1) out.push('');
  });
  out.push('='.repeat(rule.length), `Total params: ${total.toLocaleString('en-US')}`, rule);
  return out.join('\n');
}

/**
 * Rebuilds a sequential model layer by layer: `fn` returns the layer to keep (itself, or
 * `layer.with({...})` with changed options), or null to drop it. Names are kept, so trained
 * parameters and state of the kept layers still fit the new model.
 *
 * @example
 * // The full time series, as the seed's check_output shows it. dt lives in the state, so a new
 * // dt goes there (spiking's setDt), not into with().
 * const probe = mapLayers(model, (l) => l.kind === 'GlobalAveragePooling1D' ? null
 *   : l.kind === 'SpikingActivation' ? l.with({ returnSequences: true }) : l);
 * const state = setDt(probe, vars.state, 0.01);
 */
export function mapLayers(model: Layer, fn: (layer: Layer) => Layer | null): Layer {
  if (model.kind !== 'Sequential' || !model.children) {
    const r = fn(model);
    if (r === null) throw new RangeError('mapLayers: cannot drop the only layer of a model');
    return r;
  }
  const kept = model.children.map(fn).filter((l): l is Layer => l !== null);
  return sequential(kept, { name: model.name });
}

/** Keeps only the entries of a params/state record whose layers remain in `model`. */
export function selectLayers(model: Layer, record: Tree): Tree {
  if (model.kind !== 'Sequential' || !model.children) return record;
  const src = record as Record<string, Tree>;
  const out: Record<string, Tree> = {};
  for (const l of model.children) out[l.name] = src[l.name];
  return out;
}

/**
 * Visits every layer of `model` with its part of `state`, depth first, containers before their
 * children: a 'byName' container (sequential) hands each child its record entry, a 'shared'
 * one (timeDistributed) its own state. Stops early when `fn` returns true.
 *
 * @example
 * forEachLayerState(model, vars.state, (layer, s) => { if (layer.carriesDt) console.log(layer.name); });
 */
export function forEachLayerState(model: Layer, state: Tree, fn: (layer: Layer, state: Tree) => boolean | void): void {
  const visit = (layer: Layer, s: Tree): boolean => {
    if (fn(layer, s) === true) return true;
    if (!layer.children) return false;
    for (const c of layer.children) {
      const cs = layer.childStates === 'byName' ? (s as Record<string, Tree> | null | undefined)?.[c.name] : s;
      if (visit(c, cs ?? null)) return true;
    }
    return false;
  };
  visit(model, state);
}

/**
 * Returns `state` with `fn` applied to the state of every layer (depth first; a container's
 * children see the state `fn` returned for the container). `fn` returns the layer's new state.
 */
export function mapLayerState(model: Layer, state: Tree, fn: (layer: Layer, state: Tree) => Tree): Tree {
  const visit = (layer: Layer, s: Tree): Tree => {
    const mine = fn(layer, s);
    if (!layer.children) return mine;
    if (layer.childStates === 'byName') {
      const rec = { ...(mine as Record<string, Tree>) };
      for (const c of layer.children) rec[c.name] = visit(c, rec[c.name]);
      return rec;
    }
    if (layer.childStates === 'shared') return layer.children.reduce((acc, c) => visit(c, acc), mine);
    return mine;
  };
  return visit(model, state);
}
