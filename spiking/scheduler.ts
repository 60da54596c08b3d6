/** DtScheduler: sets dt before every training batch from a schedule of the global step. */
import type { Callback } from '../nn/index.js';
import { setDt } from './dt.js';

/**
 * dt := schedule(epoch * stepsPerEpoch + batch) before each batch, for every dt-carrying layer
 * (or those whose names pass `filter`). The last value persists in the returned state.
 *
 * @example
 * fit(model, vars, x, y, { ..., callbacks: [dtScheduler((step) => Math.max(0.001, 0.1 * 0.99 ** step))] })
 */
export function dtScheduler(
  schedule: (step: number) => number,
  options: { filter?: (layerName: string) => boolean } = {},
): Callback & { readonly values: number[] } {
  const values: number[] = [];
  return {
    values,
    onBatchBegin(batch, ctl) {
      const dt = schedule(ctl.epoch * ctl.stepsPerEpoch + batch);
      values.push(dt);
      ctl.state = setDt(ctl.model, ctl.state, dt, options.filter);
    },
  };
}
