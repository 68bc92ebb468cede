import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RelaySocket } from '../relay/handle-io.js';
import type { AuthResult } from '../auth/route-auth.js';
import { GatewayError } from '../errors.js';
import type { UpgradeRequest } from '../handshake/request-head.js';
import { peerAddress } from '../listener/peer-address.js';
import type { Logger } from '../observability/logger.js';
import type { Snapshot } from '../snapshot.js';
import { LogThrottle } from './log-throttle.js';
import { PerIpLimiter } from './per-ip-limiter.js';
import { limitKey } from './per-ip-table.js';
import type { RouteGuard } from './route-guard.js';
import type { RouteConfig } from '../config/types.js';
import { LocalState } from '../cluster/local-state.js';
import type { Admission, SharedState, Ticket } from '../cluster/shared-state.js';

/**
 * The gateway's policy state that outlives config reloads — per-address
 * counts and buckets, the rejection-log throttle — and the checks that use
 * it. The per-route rules themselves (RouteGuard) live in the snapshot.
 * The limits that must hold for the whole gateway (per-address sessions and
 * handshake rate, route and gateway caps) are kept by a SharedState: this
 * process's own, the cluster primary's, or Redis.
 */
export class Gatekeeper {
  readonly #log: Logger;
  /** The accept-time socket cap: a slowloris guard, kept per process. */
  readonly #perIp = new PerIpLimiter();
  readonly #shared: SharedState;
  /** A flood of refused handshakes must not become a flood of log lines. */
  readonly #rejections: LogThrottle;

  constructor(log: Logger, shared: SharedState = new LocalState()) {
    this.#log = log;
    this.#shared = shared;
    this.#rejections = new LogThrottle(100, (suppressed) => log.info({ suppressed }, 'handshake rejected'));
  }

  /** Ends the rejection log's pending count (the gateway is stopping); the shared state is closed by its owner. */
  close(): void {
    this.#rejections.close();
  }

  get shared(): SharedState {
    return this.#shared;
  }

  /** "handshake rejected", at most 100 lines a second; the next line written counts those left out. */
  logRejected(fields: Record<string, unknown>): void {
    const dropped = this.#rejections.take(Date.now());
    if (dropped < 0) return;
    this.#log.info(dropped === 0 ? fields : { ...fields, suppressed: dropped }, 'handshake rejected');
  }

  /**
   * Accept time: one address may hold at most RouteGuards.socketCap open
   * sockets, handshake or not. Trusted proxies are exempt: their
   * clients are counted one by one at the handshake.
   */
  acceptSocket(socket: RelaySocket, snap: Snapshot): boolean {
    const address = peerAddress(socket);
    if (snap.trusted.trusts(address)) return true;
    const entry = this.#perIp.admitSocket(address, snap.guards.socketCap);
    if (entry === undefined) {
      const dropped = this.#rejections.take(Date.now());
      if (dropped >= 0) {
        this.#log.info(
          { client: address, code: 'PER_IP_CONNECTIONS', suppressed: dropped || undefined },
          'connection refused: too many open connections from this address',
        );
      }
      return false;
    }
    // on, not once: a socket closes once, and once() wraps each listener in two more objects.
    socket.on('close', () => this.#perIp.release(entry));
    return true;
  }

  /**
   * A WebSocket handshake on `route`: IP lists and Origin, then the
   * per-address rate and session count, the route's and the gateway's caps.
   * On success the session holds the returned ticket until release().
   * Synchronous unless the limits live in another process.
   */
  admitHandshake(guard: RouteGuard, route: RouteConfig, req: UpgradeRequest, client: string, globalMax: number): Admission | Promise<Admission> {
    const denied = guard.check(req, client, true);
    if (denied !== undefined) return denied;
    return this.#shared.admit({
      scope: guard.scope,
      key: limitKey(client),
      perIp: guard.perIp,
      route: route.name,
      routeMax: route.limits.maxConnections,
      globalMax,
    });
  }

  release(ticket: Ticket): void {
    this.#shared.release(ticket);
  }

  /**
   * A plain HTTP request on `guard`'s route: IP lists, then authentication.
   * Calls `pass` with what auth adds for the upstream, or `refuse`.
   */
  admitRequest(
    guard: RouteGuard,
    req: IncomingMessage,
    res: ServerResponse,
    context: { readonly client: string; readonly secure: boolean },
    pass: (granted: AuthResult | undefined) => void,
    refuse: (err: GatewayError) => void,
  ): void {
    const denied = guard.check(req, context.client, false);
    if (denied !== undefined) return refuse(denied);
    const auth = guard.auth;
    if (auth === undefined) return pass(undefined);
    const fail = (err: unknown): void => refuse(err instanceof GatewayError ? err : new GatewayError('AUTH_UNAVAILABLE', String(err)));
    let signal: AbortSignal | undefined;
    if (auth.needsSignal) {
      const abort = new AbortController();
      res.once('close', () => abort.abort());
      signal = abort.signal;
    }
    try {
      const result = auth.run({ req, client: context.client, secure: context.secure, signal });
      if (result instanceof Promise) void result.then(pass, fail);
      else pass(result);
    } catch (err) {
      fail(err);
    }
  }
}
