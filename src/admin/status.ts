import type { BalanceAlgorithm } from '../config/types.js';
import type { Target, UpstreamPool } from '../upstream/pool.js';
import type { TargetState, TargetStateStatus } from '../upstream/target-state.js';

/** One target as the admin API shows it. */
export interface TargetStatus extends TargetStateStatus {
  /** Position in the upstream's `targets` list: the INDEX of the drain endpoints. */
  readonly index: number;
  readonly url: string;
  readonly weight: number;
}

export interface UpstreamStatus {
  readonly name: string;
  readonly balance: BalanceAlgorithm;
  readonly healthCheck: string | undefined;
  /** Targets a new connection may go to now. */
  readonly available: number;
  readonly targets: readonly TargetStatus[];
  /** Targets a reload removed that still have connections being drained. */
  readonly removed: readonly TargetStateStatus[];
}

export function targetStatus(target: Target, index: number, now = Date.now()): TargetStatus {
  return { index, url: target.config.url, weight: target.weight, ...target.state.status(now) };
}

export function upstreamStatus(pool: UpstreamPool, removed: readonly TargetState[], now = Date.now()): UpstreamStatus {
  return {
    name: pool.name,
    balance: pool.config.balance,
    healthCheck: pool.config.healthCheck?.type,
    available: pool.targets.reduce((n, t) => n + (t.available ? 1 : 0), 0),
    targets: pool.targets.map((t, i) => targetStatus(t, i, now)),
    removed: removed.map((s) => s.status(now)),
  };
}
