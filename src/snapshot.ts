import type { Config, Limits, RelayConfig } from './config/types.js';
import { RouteTable } from './routing/route-table.js';
import { UpstreamPool } from './upstream/pool.js';
import { TrustedProxies } from './handshake/forwarded.js';

/**
 * Everything a new session needs from the configuration, built once per
 * (re)load and never mutated: a reload swaps the whole snapshot, and sessions
 * already open keep the one they started with.
 */
export interface Snapshot {
  readonly config: Config;
  readonly routes: RouteTable;
  readonly pools: ReadonlyMap<string, UpstreamPool>;
  readonly trusted: TrustedProxies;
  readonly limits: Limits;
  readonly relay: RelayConfig;
}

export function buildSnapshot(config: Config): Snapshot {
  const pools = new Map<string, UpstreamPool>();
  for (const [name, upstream] of Object.entries(config.upstreams)) pools.set(name, new UpstreamPool(upstream));
  return {
    config,
    routes: new RouteTable(config.routes),
    pools,
    trusted: new TrustedProxies(config.trustedProxies),
    limits: config.limits,
    relay: config.relay,
  };
}
