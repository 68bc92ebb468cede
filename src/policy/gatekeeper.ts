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
import type { IpEntry } from './per-ip-table.js';
import type { RouteGuard } from './route-guard.js';

/**
 * The gateway's policy state that outlives config reloads — per-address
 * counts and buckets, the rejection-log throttle — and the checks that use
 * it. The per-route rules themselves (RouteGuard) live in the snapshot.
 */
export class Gatekeeper {
  readonly #log: Logger;
  readonly #perIp = new PerIpLimiter();
  /** A flood of refused handshakes must not become a flood of log lines. */
  readonly #rejections = new LogThrottle(100);

  constructor(log: Logger) {
    this.#log = log;
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
    socket.once('close', () => this.#perIp.release(entry));
    return true;
  }

  /**
   * A WebSocket handshake on `guard`'s route: IP lists and Origin, then the
   * per-address rate and session count. On success the session holds the
   * returned entry until release().
   */
  admitHandshake(guard: RouteGuard, req: UpgradeRequest, client: string): IpEntry | GatewayError {
    const denied = guard.check(req, client, true);
    if (denied !== undefined) return denied;
    return this.#perIp.admit(guard.scope, client, guard.perIp, Date.now());
  }

  release(entry: IpEntry): void {
    this.#perIp.release(entry);
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
