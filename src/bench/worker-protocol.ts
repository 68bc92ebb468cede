import type { RunnerCounters, RunnerResult, RunnerSlice } from './runner.js';

/** Parent → worker, one phase at a time. */
export type ToWorker =
  | { readonly t: 'init'; readonly slice: RunnerSlice; readonly progressMs: number }
  | { readonly t: 'connect' }
  | { readonly t: 'warmup' }
  | { readonly t: 'run' }
  | { readonly t: 'close' };

/** Worker → parent: a reply per phase, plus periodic progress. */
export type FromWorker =
  | { readonly t: 'ready' }
  | { readonly t: 'connected' }
  | { readonly t: 'warmed' }
  | { readonly t: 'ran' }
  | { readonly t: 'result'; readonly result: RunnerResult }
  | { readonly t: 'progress'; readonly counters: RunnerCounters; readonly rtt: string }
  | { readonly t: 'fatal'; readonly message: string };
