import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RelaySocket } from '../relay/handle-io.js';
import type { AuthResult } from '../auth/route-auth.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import { reject, rejectError } from '../handshake/reject.js';
import { repeatedField, type UpgradeRequest } from '../handshake/request-head.js';
import { toOriginForm } from '../handshake/request-target.js';
import { looksLikeUpgrade, validateUpgrade } from '../handshake/validate-upgrade.js';
import type { ListenerHandlers } from '../listener/listener.js';
import { peerAddress } from '../listener/peer-address.js';
import type { Gatekeeper } from '../policy/gatekeeper.js';
import type { Admission } from '../cluster/shared-state.js';
import type { RouteConfig } from '../config/types.js';
import type { Snapshot } from '../snapshot.js';
import { fail, passThrough } from './http-passthrough.js';
import type { SessionHost } from './session-host.js';
import { Session } from './upgrade.js';
import { traceOf } from '../observability/trace-context.js';
import { outcomeOf, type GatewayMetrics } from '../observability/metrics.js';

/** What the front door needs from the gateway besides what sessions need. */
export interface FrontDoorHost extends SessionHost {
  /** The configuration new requests are served with. */
  readonly snapshot: Snapshot;
}

/**
 * Where every request enters once a listener has read its head. A WebSocket
 * upgrade is validated, routed and admitted (policy, per-address and
 * capacity limits, cheapest first; docs/security.md) and becomes a Session;
 * a plain request goes through the same route checks to HTTP passthrough; a
 * head that cannot be read is answered here. It counts the open sessions,
 * overall and per route, for maxConnections.
 */
export class FrontDoor implements ListenerHandlers {
  readonly sessions = new Set<Session>();
  readonly #host: FrontDoorHost;
  readonly #gate: Gatekeeper;

  constructor(host: FrontDoorHost, gate: Gatekeeper) {
    this.#host = host;
    this.#gate = gate;
  }

  get log(): FrontDoorHost['log'] {
    return this.#host.log;
  }

  /** A session has ended: its place, per-address count included, is free. */
  ended(session: Session): void {
    this.sessions.delete(session);
    const ticket = session.admission.ticket;
    if (ticket !== undefined) this.#gate.release(ticket);
  }

  accept = (socket: RelaySocket): boolean => {
    if (this.#gate.acceptSocket(socket, this.#host.snapshot)) return true;
    this.#host.metrics?.handshake('', 'rate_limited');
    return false;
  };

  /** The listener closed a connection before reading a request (its IP lists, a bad PROXY header). */
  refused = (code: ErrorCode): void => this.#host.metrics?.handshake('', outcomeOf(code));

  upgrade = (req: UpgradeRequest, socket: RelaySocket, head: Buffer, secure: boolean): void => {
    // Node's HTTP server drops its own error listener on upgrade; the head reader drops its own too.
    socket.on('error', destroySocket);
    const headAt = performance.now();
    const host = this.#host;
    const snap = host.snapshot;
    if (host.draining) return this.#reject(req, socket, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    const invalid = validateUpgrade(req);
    if (invalid !== undefined) return this.#reject(req, socket, invalid);
    const path = pathOf(req.url);
    const route = snap.routes.match(req.headers.host, path, req.headers);
    if (route === undefined) return this.#reject(req, socket, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${path}`));
    const guard = snap.guards.get(route);
    const client = snap.trusted.clientAddress(peerAddress(socket), req);
    const admitted = this.#gate.admitHandshake(guard, route, req, client, snap.limits.maxConnections);
    if (!(admitted instanceof Promise)) return this.#admitted(admitted, req, socket, head, secure, snap, route, client, headAt);
    // The limits live in another process (cluster primary, Redis): the socket stays paused meanwhile.
    admitted.then(
      (a) => {
        if (a instanceof GatewayError || (!socket.destroyed && !host.draining))
          return this.#admitted(a, req, socket, head, secure, snap, route, client, headAt);
        this.#gate.release(a);
        if (socket.destroyed) return;
        this.#reject(req, socket, new GatewayError('SHUTTING_DOWN', 'gateway is draining'), client, route.name);
      },
      (err: unknown) => this.#reject(req, socket, new GatewayError('SHARED_STATE_UNAVAILABLE', String(err)), client, route.name),
    );
  };

  /** An HTTP/2 extended CONNECT that breaks RFC 8441 (src/http2/): counted, logged and answered as any refused handshake. */
  refuseUpgrade = (req: UpgradeRequest, socket: RelaySocket, err: GatewayError): void => this.#reject(req, socket, err);

  #admitted(
    admitted: Admission,
    req: UpgradeRequest,
    socket: RelaySocket,
    head: Buffer,
    secure: boolean,
    snap: Snapshot,
    route: RouteConfig,
    client: string,
    headAt: number,
  ): void {
    if (admitted instanceof GatewayError) return this.#reject(req, socket, admitted, client, route.name);
    const admission = { client, ticket: admitted, auth: snap.guards.get(route).auth, headAt };
    const session = new Session(this.#host, snap, route, snap.pools.get(route.upstream)!, req, socket, head, secure, admission);
    this.sessions.add(session);
    session.watchClient();
    session.begin();
  }

  /** Logs (at most 100 lines a second, with a count of those left out) and answers a refused handshake. */
  #reject(req: UpgradeRequest, socket: RelaySocket, err: GatewayError, client = peerAddress(socket), route = ''): void {
    this.#host.metrics?.handshake(route, outcomeOf(err.code));
    const trace = traceOf(req);
    this.#gate.logRejected({
      client,
      path: pathOf(req.url),
      status: err.status,
      code: err.code,
      reason: err.message,
      trace: trace.traceId,
      requestId: trace.requestId,
    });
    if (err.code === 'VERSION_UNSUPPORTED') reject(socket, err.spec.httpStatus, err.spec.text, ['Sec-WebSocket-Version: 13']);
    else rejectError(socket, err);
  }

  request = (req: IncomingMessage, res: ServerResponse, secure: boolean): void => {
    const host = this.#host;
    const snap = host.snapshot;
    if (looksLikeUpgrade(req)) {
      // An upgrade attempt the HTTP parser did not treat as one (no Connection: upgrade).
      const err = validateUpgrade(req) ?? new GatewayError('HANDSHAKE_MALFORMED', 'not a valid upgrade request');
      host.metrics?.handshake('', outcomeOf(err.code));
      return this.#failRequest(res, err);
    }
    // Before routing and auth read a Host or Authorization the backend may not read (see repeatedField).
    const repeated = repeatedField(req);
    if (repeated !== undefined) {
      if (host.metrics !== undefined) countRequest(host.metrics, '', res);
      return this.#failRequest(res, new GatewayError('HANDSHAKE_MALFORMED', `repeated ${repeated} header`));
    }
    const target = toOriginForm(req);
    if (target !== undefined) {
      if (host.metrics !== undefined) countRequest(host.metrics, '', res);
      return this.#failRequest(res, new GatewayError('HANDSHAKE_MALFORMED', target));
    }
    const path = pathOf(req.url);
    const route = host.draining ? undefined : snap.routes.match(req.headers.host, path, req.headers);
    if (host.metrics !== undefined) countRequest(host.metrics, route?.name ?? '', res);
    if (host.draining) return this.#failRequest(res, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    if (route === undefined) return this.#failRequest(res, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${path}`));
    // Plain requests pass the route's IP lists and authentication too: a route's backend is never reachable around them.
    const client = snap.trusted.clientAddress(peerAddress(req.socket), req);
    this.#gate.admitRequest(
      snap.guards.get(route),
      req,
      res,
      { client, secure },
      (granted: AuthResult | undefined) => {
        passThrough(host.log, snap, route, snap.pools.get(route.upstream)!, req, res, secure, granted).catch((err: unknown) => {
          host.log.error({ err }, 'http passthrough failed');
          res.destroy();
        });
      },
      (err: GatewayError) => this.#failRequest(res, err),
    );
  };

  #failRequest(res: ServerResponse, err: GatewayError): void {
    if (err.code === 'VERSION_UNSUPPORTED') res.setHeader('Sec-WebSocket-Version', '13');
    fail(this.#host.log, res, err);
  }

  clientError = (err: NodeJS.ErrnoException, socket: RelaySocket): void => {
    socket.on('error', destroySocket);
    const code: ErrorCode | undefined =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'HANDSHAKE_TIMEOUT'
          : err.code === 'ECONNRESET' || err.code === 'EPIPE'
            ? undefined
            : 'HANDSHAKE_MALFORMED';
    if (code === undefined) {
      socket.destroy();
      return;
    }
    const spec = new GatewayError(code, err.message).spec;
    this.#host.metrics?.handshake('', outcomeOf(code));
    this.#host.log.info({ client: peerAddress(socket), status: spec.httpStatus, code, reason: err.code ?? err.message }, 'request rejected');
    reject(socket, spec.httpStatus, spec.text);
  };
}

/** wsgate_http_requests_total and its duration, once the answer is over (or the client gone). */
function countRequest(metrics: GatewayMetrics, route: string, res: ServerResponse): void {
  const at = performance.now();
  // 499 (nginx's code): the client left before an answer began.
  res.once('close', () => metrics.httpRequest(route, res.headersSent ? res.statusCode : 499, performance.now() - at));
}

function destroySocket(this: RelaySocket): void {
  this.destroy();
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
