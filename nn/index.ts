/** spiketrace/nn: layers as init/apply records, losses, metrics, optimizers, the training loop. */
export * from './layer.js';
export * from './activations.js';
export * from './initializers.js';
export * from './layers.js';
export * from './layers/conv.js';
export * from './layers/normalization.js';
export * from './losses.js';
export * from './optimizers.js';
export * from './train.js';
export * from './model.js';
export * from './serialize.js';
