import type { Pool as HttpPool } from 'undici';
import type { TargetConfig, UpstreamConfig } from '../config/types.js';
import { createBalancer, type Balancer, type BalancerTarget } from '../balancer/balancer.js';
import { TargetState } from './target-state.js';
import { targetId, type TargetRegistry } from './target-registry.js';

/**
 * One backend address of an upstream, as one config snapshot sees it. Its
 * live state (connections, health, ejection, drain) is the TargetState kept
 * by the registry under the same id, shared with every other snapshot.
 */
export class Target implements BalancerTarget {
  readonly id: string;
  readonly weight: number;
  readonly config: TargetConfig;
  readonly state: TargetState;

  constructor(upstream: string, config: TargetConfig, state: TargetState) {
    this.id = targetId(upstream, config.url);
    this.weight = config.weight;
    this.config = config;
    this.state = state;
  }

  /** Sessions on this target, including handshakes in flight. */
  get active(): number {
    return this.state.active;
  }

  set active(n: number) {
    this.state.active = n;
  }

  /** Healthy, not ejected, not drained: balancers pick only these. */
  get available(): boolean {
    return this.state.available;
  }

  /** Keep-alive pool for HTTP passthrough, made on first use. */
  get http(): HttpPool | undefined {
    return this.state.http;
  }

  set http(pool: HttpPool | undefined) {
    this.state.http = pool;
  }
}

/** A named pool of targets and the balancer that picks among them. */
export class UpstreamPool {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly targets: readonly Target[];
  readonly #balancer: Balancer;

  /** Without a registry (tests, tools) the pool keeps target states of its own. */
  constructor(config: UpstreamConfig, registry?: TargetRegistry) {
    this.name = config.name;
    this.config = config;
    const group = { name: config.name, config, members: [] as TargetState[] };
    this.targets = config.targets.map((t) => {
      const id = targetId(config.name, t.url);
      const state = registry?.get(id) ?? new TargetState(id, group);
      if (state.group === group) group.members.push(state);
      return new Target(config.name, t, state);
    });
    this.#balancer = createBalancer(config.balance, this.targets);
  }

  /**
   * A target for a new session. A slow-starting target is passed over with a
   * probability that shrinks as it warms up; then another is picked if there
   * is one.
   */
  pick(key: string | undefined, exclude: ReadonlySet<Target> | undefined): Target | undefined {
    const target = this.#balancer.pick(key, exclude) as Target | undefined;
    if (target === undefined || target.state.warmUntil === 0) return target;
    const share = target.state.warmShare(Date.now());
    if (share >= 1 || Math.random() < share) return target;
    const skip = new Set<Target>(exclude);
    skip.add(target);
    return (this.#balancer.pick(key, skip) as Target | undefined) ?? target;
  }

  async close(): Promise<void> {
    await Promise.all(this.targets.map((t) => t.http?.close()));
  }
}
