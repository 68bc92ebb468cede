import type { Config, Limits, RelayConfig } from './config/types.js';
import { RouteTable } from './routing/route-table.js';
import { UpstreamPool } from './upstream/pool.js';
import type { TargetRegistry } from './upstream/target-registry.js';
import { TrustedProxies } from './handshake/forwarded.js';
import { AuthResources } from './auth/auth-resources.js';
import { RouteGuards } from './policy/route-guard.js';
import { upstreamSecureContext } from './upstream/upstream-tls.js';

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
  /** Per-route policy and authentication. */
  readonly guards: RouteGuards;
}

/** The parts of a snapshot that read files (JWT public keys, CA bundles). */
export interface PreparedSnapshot {
  readonly guards: RouteGuards;
}

/**
 * Reads and checks every file the config names for routes and upstreams;
 * throws, naming the file, when one is missing or broken. A reload calls it
 * before changing anything, so a bad file leaves the running config as it is.
 * `auth` holds what survives reloads (forward-auth pools, JWKS caches).
 */
export function prepareSnapshot(config: Config, auth: AuthResources): PreparedSnapshot {
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (!upstream.targets.some((t) => t.secure)) continue;
    try {
      upstreamSecureContext(upstream.tls);
    } catch (err) {
      throw new Error(`upstreams.${name}: ${(err as Error).message}`, { cause: err });
    }
  }
  return { guards: new RouteGuards(config, auth) };
}

/** `registry` (synced with `config` first) supplies the target states shared across snapshots. */
export function buildSnapshot(config: Config, registry?: TargetRegistry, prepared?: PreparedSnapshot): Snapshot {
  const { guards } = prepared ?? prepareSnapshot(config, new AuthResources());
  const pools = new Map<string, UpstreamPool>();
  for (const [name, upstream] of Object.entries(config.upstreams)) pools.set(name, new UpstreamPool(upstream, registry));
  return {
    config,
    routes: new RouteTable(config.routes),
    pools,
    trusted: new TrustedProxies(config.trustedProxies),
    limits: config.limits,
    relay: config.relay,
    guards,
  };
}
