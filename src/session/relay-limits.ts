import type { RelayConfig, RouteConfig } from '../config/types.js';
import type { RelayLimits } from '../relay/relay.js';
import type { RelayTally } from '../relay/relay-tally.js';

// What a relay is told about its session depends on the route, the relay
// settings and the metrics only (and on whether permessage-deflate was
// agreed), so sessions of one route share one frozen object, not one each:
// an idle session keeps its relay's limits for as long as it lives.

interface Shared {
  readonly relay: RelayConfig;
  readonly tally: RelayTally | null;
  /** rsv1Allowed false, true. */
  readonly limits: readonly [RelayLimits, RelayLimits];
}

// Keyed by the route object: a reload builds new routes, and the old entries go with them.
const shared = new WeakMap<RouteConfig, Shared>();

export function relayLimitsFor(route: RouteConfig, relay: RelayConfig, tally: RelayTally | null, rsv1Allowed: boolean): RelayLimits {
  let s = shared.get(route);
  if (s === undefined || s.relay !== relay || s.tally !== tally) {
    s = { relay, tally, limits: [build(route, relay, tally, false), build(route, relay, tally, true)] };
    shared.set(route, s);
  }
  return s.limits[rsv1Allowed ? 1 : 0];
}

function build(route: RouteConfig, relay: RelayConfig, tally: RelayTally | null, rsv1Allowed: boolean): RelayLimits {
  const limits = route.limits;
  return Object.freeze({
    maxBufferedBytes: limits.maxBufferedBytes,
    idleMs: limits.idleTimeout,
    maxMessageBytes: limits.maxMessageBytes,
    messageRate: limits.messageRate.perSecond,
    upstreamMessageRate: limits.upstreamMessageRate.perSecond,
    maxLifetime: limits.maxLifetime,
    pingInterval: relay.pingInterval,
    pongTimeout: relay.pongTimeout,
    validateUtf8: relay.validateUtf8,
    rsv1Allowed,
    tally,
  });
}
