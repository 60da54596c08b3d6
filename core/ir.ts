/** The IR: jaxprs in A-normal form, and their printer. */
import { SHORT_NAME, type DType } from './dtype.js';
import type { PrimParams, Primitive } from './primitives.js';
import type { Tensor } from './tensor.js';

/** Shape and dtype of a value: what tracing knows about it. */
export interface Aval {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export class Var {
  private static counter = 0;
  readonly id = Var.counter++;
  constructor(readonly aval: Aval) {}
}

/** A scalar constant inlined into an equation. */
export class Literal {
  constructor(
    readonly value: number,
    readonly dtype: DType,
  ) {}
  get aval(): Aval {
    return { shape: [], dtype: this.dtype };
  }
}

export type Atom = Var | Literal;

export interface Eqn<P extends Primitive = Primitive> {
  readonly prim: P;
  readonly inputs: readonly Atom[];
  readonly params: PrimParams[P];
  readonly outputs: readonly Var[];
}

export interface Jaxpr {
  readonly constvars: readonly Var[];
  readonly invars: readonly Var[];
  readonly eqns: readonly Eqn[];
  readonly outvars: readonly Atom[];
}

/** A jaxpr with the values of its constvars (closed-over arrays or outer tracers). */
export interface ClosedJaxpr {
  readonly jaxpr: Jaxpr;
  readonly consts: readonly Tensor[];
}

export function avalString(aval: Aval): string {
  return `${SHORT_NAME[aval.dtype]}[${aval.shape.join(',')}]`;
}

/** Prints a jaxpr in JAX's textual form, naming variables a, b, ..., z, ba, bb, ... */
export function printJaxpr(jaxpr: Jaxpr, indent = ''): string {
  const names = new Map<Var, string>();
  const nameOf = (v: Var): string => {
    let n = names.get(v);
    if (n === undefined) {
      let k = names.size;
      n = '';
      do {
        n = String.fromCharCode(97 + (k % 26)) + n;
        k = Math.floor(k / 26) - 1;
      } while (k >= 0);
      names.set(v, n);
    }
    return n;
  };
  const atom = (a: Atom): string => (a instanceof Literal ? `${a.value}:${SHORT_NAME[a.dtype]}` : nameOf(a));
  const binder = (v: Var): string => `${nameOf(v)}:${avalString(v.aval)}`;
  const lines: string[] = [];
  const head = `{ lambda ${jaxpr.constvars.map(binder).join(' ')}${jaxpr.constvars.length ? ' ' : ''}; ${jaxpr.invars.map(binder).join(' ')}. let`;
  lines.push(indent + head);
  for (const eqn of jaxpr.eqns) {
    const params = formatParams(eqn.params as Record<string, unknown>, indent + '    ');
    lines.push(`${indent}    ${eqn.outputs.map(binder).join(' ')} = ${eqn.prim}${params} ${eqn.inputs.map(atom).join(' ')}`);
  }
  lines.push(`${indent}  in ( ${jaxpr.outvars.map(atom).join(' ')} ) }`);
  return lines.join('\n');
}

function isJaxpr(v: unknown): v is Jaxpr {
  return typeof v === 'object' && v !== null && 'eqns' in v && 'invars' in v;
}

function formatParams(params: Record<string, unknown>, indent: string): string {
  const entries = Object.entries(params).filter(([, v]) => typeof v !== 'function');
  if (entries.length === 0) return '';
  const parts = entries.map(([k, v]) => (isJaxpr(v) ? `${k}=\n${printJaxpr(v, indent + '  ')}\n${indent}` : `${k}=${JSON.stringify(v)}`));
  return `[${parts.join(' ')}]`;
}

/**
 * A number as JS source text and cache-key text: like String(v), but keeps -0 (String(-0) is
 * "0", which would turn a -0 literal into +0 in generated code and confuse cache keys).
 */
export function numberText(v: number): string {
  return Object.is(v, -0) ? '-0' : String(v);
}

/** JSON for cache keys that keeps -0, NaN and the infinities apart (JSON writes them as 0 / null). */
export function keyJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' ? numberText(v) : v));
}
