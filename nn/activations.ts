/** Activation functions by name (Keras's names), all differentiable compositions of core ops. */
import { exp, relu, sigmoid, softmax, softplus, tanh, type Tensor } from '../core/index.js';

export type ActivationFn = (x: Tensor) => Tensor;
export type ActivationName = 'relu' | 'tanh' | 'sigmoid' | 'softplus' | 'linear' | 'exponential' | 'softmax';

export const activations: Record<ActivationName, ActivationFn> = {
  relu: (x) => relu(x),
  tanh: (x) => tanh(x),
  sigmoid: (x) => sigmoid(x),
  softplus: (x) => softplus(x),
  linear: (x) => x,
  exponential: (x) => exp(x),
  softmax: (x) => softmax(x, -1),
};

/** Resolves a name or passes a function through; unknown names list the known ones. */
export function resolveActivation(act: ActivationName | ActivationFn | undefined | null, where: string): ActivationFn {
  if (act === undefined || act === null) return activations.linear;
  if (typeof act === 'function') return act;
  const f = activations[act];
  if (!f) throw new RangeError(`${where}: unknown activation '${act as string}'; known: ${Object.keys(activations).join(', ')}`);
  return f;
}

export function activationName(act: ActivationName | ActivationFn | undefined | null): string {
  if (act === undefined || act === null) return 'linear';
  return typeof act === 'function' ? act.name || 'custom' : act;
}
