import type { Pool as HttpPool } from 'undici';
import type { TargetConfig, UpstreamConfig } from '../config/types.js';
import { createBalancer, type Balancer, type BalancerTarget } from '../balancer/balancer.js';

/** One backend address of an upstream, with its live state. */
export class Target implements BalancerTarget {
  readonly id: string;
  readonly weight: number;
  readonly config: TargetConfig;
  /** Sessions on this target, including handshakes in flight. */
  active = 0;
  available = true;
  /** Keep-alive pool for HTTP passthrough, made on first use. */
  http: HttpPool | undefined;

  constructor(upstream: string, config: TargetConfig) {
    this.id = `${upstream}/${config.url}`;
    this.weight = config.weight;
    this.config = config;
  }
}

/** A named pool of targets and the balancer that picks among them. */
export class UpstreamPool {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly targets: readonly Target[];
  readonly #balancer: Balancer;

  constructor(config: UpstreamConfig) {
    this.name = config.name;
    this.config = config;
    this.targets = config.targets.map((t) => new Target(config.name, t));
    this.#balancer = createBalancer(config.balance, this.targets);
  }

  pick(key: string | undefined, exclude: ReadonlySet<Target> | undefined): Target | undefined {
    return this.#balancer.pick(key, exclude) as Target | undefined;
  }

  async close(): Promise<void> {
    await Promise.all(this.targets.map((t) => t.http?.close()));
  }
}
