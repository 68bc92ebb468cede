// Messages between c50k and its load processes (hold-worker.ts), one step at a time.
import type { HoldCounts, HoldSpec } from './holder.js';

export type HoldStep = 'open' | 'echo' | 'cut';

/** Parent → load process. */
export type ToHolder =
  { readonly t: 'init'; readonly spec: HoldSpec } | { readonly t: 'open' } | { readonly t: 'echo'; readonly timeoutMs: number } | { readonly t: 'cut' };

/** Load process → parent: a reply per step, and counts every second meanwhile. */
export type FromHolder =
  | { readonly t: 'ready' }
  | { readonly t: 'progress'; readonly counts: HoldCounts }
  | { readonly t: 'done'; readonly step: HoldStep; readonly counts: HoldCounts }
  | { readonly t: 'fatal'; readonly message: string };
