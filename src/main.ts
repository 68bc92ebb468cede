#!/usr/bin/env node
import { keepYoungGenerationSmall } from './cli/young-generation.js';

// Before anything else is loaded: loading the gateway's modules alone would
// grow the young generation to its maximum. The gateway, and the load tools
// whose own pauses would show in what they measure.
if (['start', 'bench', 'echo'].includes(process.argv[2] ?? '')) keepYoungGenerationSmall();
const { run } = await import('./cli/index.js');

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
