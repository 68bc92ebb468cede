// What every scale scenario takes and gives back.
import type { RelayMode, ScaleEnv, SchedPolicy } from './processes.js';

export interface ScaleSettings {
  /** policy, grow: measured load of each run; c50k: how long the connections are held. */
  readonly durationMs: number;
  /** policy, grow: unmeasured load before it. */
  readonly warmupMs: number;
  /** policy, grow: rounds, alternating what is compared. */
  readonly rounds: number;
  /** policy: idle connections whose spread is read; c50k: connections held. */
  readonly connections: number;
  /** c50k: gateway workers. */
  readonly workers: number;
  /** c50k: load processes. */
  readonly loaders: number;
  /** c50k: echo backend processes (targets of the upstream). */
  readonly backends: number;
  /** c50k: new connections per second, in total. */
  readonly ramp: number;
  readonly mode: RelayMode;
  /** grow, c50k, instances: the cluster scheduling policy (policy compares both). */
  readonly policy: SchedPolicy;
  /** instances: the topologies run ("1x1", "3x1", "3x2": instances × workers each); others leave it out. */
  readonly topologies?: readonly string[];
  /** instances: the placements run ("pinned", "shared"); others leave it out. */
  readonly placements?: readonly string[];
}

export interface ScenarioReport {
  /** One line saying what was run. */
  readonly summary: string;
  readonly table: string;
  /** Caveats and readings, one per line, printed under the table. */
  readonly notes: readonly string[];
  /** Every figure of every round, for the JSON line. */
  readonly data: unknown;
  /** Errors counted in the whole run (c50k requires none). */
  readonly errors: number;
}

/** A scenario asked for something this machine cannot do (reported without a stack; exit status 2). */
export class ScaleUsageError extends Error {}

export type Progress = (line: string) => void;

export type Scenario = (env: ScaleEnv, s: ScaleSettings, progress: Progress) => Promise<ScenarioReport>;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function seconds(ms: number): string {
  return `${+(ms / 1000).toFixed(3)}s`;
}
