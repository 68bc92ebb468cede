#!/usr/bin/env node
import { run } from './cli/index.js';

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Anything left open (a stuck client, a pending timer) must not keep a stopped gateway alive.
    if (process.argv[2] === 'start') setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
