/**
 * Whether this environment lets code build functions from strings. A page whose
 * Content-Security-Policy lacks 'unsafe-eval' forbids `new Function`; the CPU backend then runs its
 * fused loops through an interpreter, and gpu.js (which transpiles kernels with it) cannot start.
 */
let allowed: boolean | undefined;

export function evalAllowed(): boolean {
  if (allowed === undefined) {
    try {
      allowed = (new Function('return 1') as () => number)() === 1;
    } catch {
      allowed = false;
    }
  }
  return allowed;
}

/** Records that eval is forbidden (true) or allowed (false), or detects again (undefined). */
export function forceEvalForbidden(forbidden: boolean | undefined): void {
  allowed = forbidden === undefined ? undefined : !forbidden;
}
