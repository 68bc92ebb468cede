import type { BalanceAlgorithm } from '../config/types.js';
import { HashBalancer } from './hash.js';
import { LeastConnectionsBalancer } from './least-connections.js';
import { PowerOfTwoBalancer } from './power-of-two.js';
import { RoundRobinBalancer } from './round-robin.js';

export interface BalancerTarget {
  readonly id: string; // stable id, e.g. "chat/ws://10.0.0.11:3000"
  readonly weight: number; // positive integer
  active: number; // live connections, maintained by the caller
  available: boolean; // false when ejected/drained/unhealthy; never pick it
}

export interface Balancer {
  /** A target, or undefined when none is available outside `exclude`. `key` is used by hash only. */
  pick(key: string | undefined, exclude?: ReadonlySet<BalancerTarget>): BalancerTarget | undefined;
}

/** A target list a balancer cannot work with; config validation should make this unreachable. */
export class InvalidBalancerTargetsError extends Error {
  readonly code = 'ERR_BALANCER_TARGETS';

  constructor(message: string) {
    super(message);
    this.name = 'InvalidBalancerTargetsError';
  }
}

export function createBalancer(algorithm: BalanceAlgorithm, targets: readonly BalancerTarget[]): Balancer {
  // Checked once here so that pick() can trust every weight and id without re-checking.
  const ids = new Set<string>();
  for (const target of targets) {
    if (!Number.isSafeInteger(target.weight) || target.weight < 1) {
      throw new InvalidBalancerTargetsError(`target ${target.id}: weight must be a positive integer, got ${target.weight}`);
    }
    if (ids.has(target.id)) {
      throw new InvalidBalancerTargetsError(`target ${target.id}: duplicate id`);
    }
    ids.add(target.id);
  }
  // A private copy: the balancer indexes per-target state by position, so the list must not change under it.
  const fixed = Object.freeze(targets.slice());
  switch (algorithm) {
    case 'round-robin':
      return new RoundRobinBalancer(fixed);
    case 'least-connections':
      return new LeastConnectionsBalancer(fixed);
    case 'power-of-two':
      return new PowerOfTwoBalancer(fixed);
    case 'hash':
      return new HashBalancer(fixed);
  }
}
