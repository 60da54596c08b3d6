// typescript-eslint over the library, tests, benchmarks and examples (flat config). Formatting is
// prettier's job (`prettier --check` in `npm run lint`), so no stylistic rules here. Not type-aware:
// on this 2-core machine the type-aware pass would more than double `npm run lint`, and tsc
// already runs in `npm test`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // Build output, test and coverage output, and generated reference data.
  { ignores: ['dist/', 'coverage/', '.tap/', 'out/', 'node_modules/', 'bench/results*', 'test/prng/fixtures/jax-reference.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      // A leading underscore marks a parameter kept for its position (rule tables, callbacks).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `any` is banned everywhere (the public API must not have it; nothing else needs it).
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    // Polynomial coefficients are quoted with all the digits of their published source.
    files: ['core/prng/erfinv.ts'],
    rules: { 'no-loss-of-precision': 'off' },
  },
);
