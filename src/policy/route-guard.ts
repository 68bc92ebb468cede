import type { UpgradeRequest } from '../handshake/request-head.js';
import type { Config, PerIpLimits, RouteConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import type { AuthResources } from '../auth/auth-resources.js';
import { RouteAuth } from '../auth/route-auth.js';
import { IpFilter } from './ip-filter.js';
import { OriginPolicy } from './origin-check.js';

/**
 * One route's policy, compiled once per config snapshot: IP lists, the
 * Origin check, which per-IP state its limits use, and its authentication.
 * A route with none of these costs the handshake two undefined checks.
 */
export class RouteGuard {
  readonly ipFilter: IpFilter | undefined;
  readonly origins: OriginPolicy | undefined;
  /** "" when the route shares the top-level per-IP state; the route's name when it overrides perIp. */
  readonly scope: string;
  readonly perIp: PerIpLimits;
  readonly auth: RouteAuth | undefined;

  constructor(route: RouteConfig, top: PerIpLimits, resources: AuthResources) {
    this.ipFilter = IpFilter.from(route.ipAllow, route.ipDeny);
    this.origins = route.allowedOrigins === undefined ? undefined : new OriginPolicy(route.allowedOrigins, route.allowMissingOrigin);
    this.perIp = route.limits.perIp;
    this.scope = samePerIp(route.limits.perIp, top) ? '' : route.name;
    this.auth = route.auth === undefined ? undefined : new RouteAuth(route.auth, resources);
  }

  /** The stateless checks: the client's address, then (for WebSocket handshakes) its Origin. */
  check(req: UpgradeRequest, client: string, websocket: boolean): GatewayError | undefined {
    if (this.ipFilter !== undefined && !this.ipFilter.allows(client)) {
      return new GatewayError('IP_FORBIDDEN', `${client} is not allowed on this route`);
    }
    if (websocket && this.origins !== undefined) {
      const origin = req.headers.origin;
      if (!this.origins.allows(origin)) {
        return new GatewayError('ORIGIN_FORBIDDEN', origin === undefined ? 'no Origin header' : `origin ${origin} is not allowed`);
      }
    }
    return undefined;
  }
}

/** Every route's guard, by route name, and the accept-time per-address socket cap. */
export class RouteGuards {
  readonly #byName = new Map<string, RouteGuard>();
  /**
   * Open sockets one address may hold, handshake or not: twice the largest
   * perIp.maxConnections anywhere, plus a few — room for a client at its
   * session limit to still be told 429 (and for sockets still closing),
   * while one address cannot park unbounded half-open connections.
   */
  readonly socketCap: number;

  constructor(config: Config, resources: AuthResources) {
    let cap = config.limits.perIp.maxConnections;
    config.routes.forEach((route, i) => {
      let guard: RouteGuard;
      try {
        guard = new RouteGuard(route, config.limits.perIp, resources);
      } catch (err) {
        throw new Error(`routes[${i}].${(err as Error).message}`, { cause: err });
      }
      this.#byName.set(route.name, guard);
      cap = Math.max(cap, route.limits.perIp.maxConnections);
    });
    this.socketCap = 2 * cap + SOCKET_CAP_SLACK;
  }

  get(route: RouteConfig): RouteGuard {
    return this.#byName.get(route.name)!;
  }
}

const SOCKET_CAP_SLACK = 8;

function samePerIp(a: PerIpLimits, b: PerIpLimits): boolean {
  return a.maxConnections === b.maxConnections && a.handshakeBurst === b.handshakeBurst && a.handshakeRate.perSecond === b.handshakeRate.perSecond;
}
