/**
 * grad and valueAndGrad keep the first argument's type, and optimizer updates the gradients'
 * type: the assignments below compile without casts (tsc checks this file; the @ts-expect-error
 * lines must be errors), and the values equal closed forms.
 */
import t from 'tap';
import { add, array, grad, mul, sum, valueAndGrad, type Tensor } from '../../core/index.js';
import * as nn from '../../nn/index.js';

type Params = { w: Tensor; b: Tensor };
const params: Params = { w: array([1, 2]), b: array([0.5]) };
const x = array([3, 4]);
// loss = sum(w * x) + 2 b  =>  dL/dw = x, dL/db = 2
const loss = (p: Params, v: Tensor): Tensor => add(sum(mul(p.w, v)), mul(sum(p.b), 2));

t.test('grad and valueAndGrad return the parameter type', async (t) => {
  const g: Params = grad(loss)(params, x);
  t.same(g.w.toNested(), [3, 4]);
  t.same(g.b.toNested(), [2]);
  // @ts-expect-error: the gradient has the parameters' keys only
  t.equal(g.bias, undefined);
  const [value, g2] = valueAndGrad(loss)(params, x);
  const typed: [Tensor, Params] = [value, g2];
  t.equal(typed[0].item(), 3 + 8 + 1);
  const [[v, aux], g3] = valueAndGrad((p: Params) => [loss(p, x), { twice: mul(p.b, 2) }] as const, { hasAux: true })(params);
  const auxTyped: { twice: Tensor } = aux;
  t.equal(v.item(), 12);
  t.same(auxTyped.twice.toNested(), [1]);
  t.same(g3.w.toNested(), [3, 4]);
});

t.test('optimizer updates and applyUpdates keep the parameter type', async (t) => {
  const opt = nn.sgd(0.5);
  let state = opt.init(params);
  const [updates, next] = opt.update(grad(loss)(params, x), state, params);
  state = next;
  const stepped: Params = nn.applyUpdates(params, updates);
  t.same(stepped.w.toNested(), [1 - 1.5, 2 - 2]);
  t.same(stepped.b.toNested(), [0.5 - 1]);
});
