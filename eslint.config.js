import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'demo/**', '.tmp/**', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The dashboard: plain browser JavaScript, no build step and no type information.
    files: ['src/admin/dashboard/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      sourceType: 'module',
      parserOptions: { projectService: false, program: null },
      globals: Object.fromEntries(
        [
          'document',
          'sessionStorage',
          'fetch',
          'Headers',
          'TextDecoderStream',
          'AbortController',
          'ResizeObserver',
          'setTimeout',
          'clearTimeout',
          'console',
        ].map((name) => [name, 'readonly']),
      ),
    },
    rules: { ...tseslint.configs.disableTypeChecked.rules, 'no-undef': 'error' },
  },
  {
    // Build scripts run by Node, outside the TypeScript project.
    files: ['scripts/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The examples: plain JavaScript run as it is (node examples/…, or a browser), outside the TypeScript project.
    files: ['examples/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The per-connection path. V8 allocates a function literal assigned to a
    // property, and the accessors of an object literal, in the old generation:
    // once dead, they keep what they captured (a session) alive through every
    // young collection until the next full one. Use a module function with
    // the state in a field, or a class.
    files: ['src/{handshake,listener,policy,relay,session,upstream}/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "AssignmentExpression[left.type='MemberExpression'][right.type=/^(ArrowFunctionExpression|FunctionExpression)$/]",
          message:
            'A function literal assigned to a property is allocated in the old generation and keeps what it captures alive until a full GC: assign a module function and keep the state in a field.',
        },
        {
          selector: 'ObjectExpression > Property[kind=/^(get|set)$/]',
          message: "An object literal's accessors are allocated in the old generation and keep what they capture alive until a full GC: use a class.",
        },
      ],
    },
  },
);
