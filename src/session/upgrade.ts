import type { RelaySocket } from '../relay/handle-io.js';
import { BareConn, type CloseWatcher } from '../relay/bare-conn.js';
import type { RouteConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { rejectError } from '../handshake/reject.js';
import { answerOf } from '../handshake/client-answer.js';
import { buildUpstreamHandshake } from '../handshake/forward.js';
import { acceptKey } from '../handshake/accept-key.js';
import type { UpgradeRequest } from '../handshake/request-head.js';
import type { AuthResult, RouteAuth } from '../auth/route-auth.js';
import type { Ticket } from '../cluster/shared-state.js';
import { peerAddress, peerPort } from '../listener/peer-address.js';
import { encodeProxyV2 } from '../upstream/proxy-header.js';
import { upstreamPath } from '../routing/route-table.js';
import { hashKeyOf } from '../balancer/hash-key.js';
import { dialUpstream, discardAnswer, type Dial, type DialResult } from '../upstream/connect.js';
import { clientAnswerHead, clientSwitchingHead } from '../upstream/response-head.js';
import type { Target, UpstreamPool } from '../upstream/pool.js';
import type { RelayEnd } from '../relay/tunnel.js';
import { createRelay, takesBareUpstream, takesCoreUpstream, type Relay } from '../relay/relay.js';
import { relayLimitsFor } from './relay-limits.js';
import type { Snapshot } from '../snapshot.js';
import { dialFailed, dialSucceeded } from '../health/outlier.js';
import type { SessionHost } from './session-host.js';
import { traceOf, type TraceContext } from '../observability/trace-context.js';
import { outcomeOf } from '../observability/metrics.js';

/** What the gateway settled at admission; the session carries it to its end. */
export interface Admission {
  /** The client address (PROXY protocol or trusted forwarding applied) used for limits, hashing and logs. */
  readonly client: string;
  /** Its place in the gateway-wide limits; the gateway releases it in sessionEnded(). */
  readonly ticket: Ticket | undefined;
  /** The route's authentication, run before any upstream is contacted. */
  readonly auth: RouteAuth | undefined;
  /** performance.now() when the request head was complete: the handshake's duration starts there. */
  readonly headAt: number;
}

/**
 * One WebSocket session from the upgrade request to the close, in phases:
 * validate → route → admit → pick a target → dial (retrying on other targets
 * until the 101 is sent) → relay → end. Ends exactly once, in #finish.
 */
/** Sessions watching a client that is not a BareConn, by its socket (onWatchedClose's `this`). */
const watched = new WeakMap<object, Session>();

function onWatchedClose(this: object): void {
  watched.get(this)?.closed();
}

export class Session implements CloseWatcher {
  readonly id: number;
  readonly startedAt = Date.now();
  readonly client: string;
  readonly route: RouteConfig;
  readonly admission: Admission;
  /** Its trace id and request id: the same on every upstream attempt and in every log line. */
  readonly trace: TraceContext;
  readonly #host: SessionHost;
  readonly #snap: Snapshot;
  readonly #pool: UpstreamPool;
  /** Held only until the upstream answers: an idle session must not keep the request alive. */
  #req: UpgradeRequest | undefined;
  /** Until the relay has it: an idle session must not keep the client's connection object alive. */
  #socket: RelaySocket | undefined;
  /** How the client came, once #socket is gone. */
  #protocol = 'http/1.1';
  #early: Buffer | undefined;
  readonly #secure: boolean;
  #target: Target | undefined;
  #dial: Dial | undefined;
  #tried: Set<Target> | undefined;
  #attemptsLeft: number;
  #lastError: GatewayError | undefined;
  /** What authentication added for the upstream request. */
  #granted: AuthResult | undefined;
  /** Aborts forward auth when the client leaves during it. */
  #authAbort: AbortController | undefined;
  #tunnel: Relay | undefined;
  /** performance.now() when the current dial began. */
  #dialAt = 0;
  /** Date.now() at the 101. */
  #relayedAt = 0;
  #subprotocol: string | undefined;
  /** This session counts in #target.active. */
  #holding = false;
  #done = false;
  /** watchClient() is in force: the client's close ends the session. */
  #watching = false;

  constructor(
    host: SessionHost,
    snap: Snapshot,
    route: RouteConfig,
    pool: UpstreamPool,
    req: UpgradeRequest,
    socket: RelaySocket,
    early: Buffer,
    secure: boolean,
    admission?: Admission,
  ) {
    this.id = host.nextId();
    this.#host = host;
    this.#snap = snap;
    this.route = route;
    this.#pool = pool;
    this.#req = req;
    this.#socket = socket;
    this.#early = early;
    this.#secure = secure;
    this.admission = admission ?? {
      client: snap.trusted.clientAddress(peerAddress(socket), req),
      ticket: undefined,
      auth: undefined,
      headAt: performance.now(),
    };
    this.client = this.admission.client;
    this.trace = traceOf(req);
    this.#attemptsLeft = 1 + pool.config.retries;
  }

  get target(): Target | undefined {
    return this.#target;
  }

  /** Past the 101: the relay and its counters. */
  get relay(): Relay | undefined {
    return this.#tunnel;
  }

  get relayedAt(): number {
    return this.#relayedAt;
  }

  get subprotocol(): string | undefined {
    return this.#subprotocol;
  }

  get relayMode(): 'tunnel' | 'inspect' {
    return this.#snap.relay.mode;
  }

  /** How the client came: "http/1.1", or "h2" for a WebSocket over an HTTP/2 stream (RFC 8441). */
  get protocol(): string {
    const socket = this.#socket;
    return socket === undefined ? this.#protocol : (answerOf(socket)?.protocol ?? 'http/1.1');
  }

  /**
   * Authenticates (when the route says so), then connects. Nothing reaches
   * an upstream before every check has passed. Without auth this is just
   * connect(); with checks that need no I/O, no promise is made.
   */
  begin(): void {
    const auth = this.admission.auth;
    if (auth === undefined) {
      this.connect();
      return;
    }
    if (auth.needsSignal) this.#authAbort = new AbortController();
    let result: AuthResult | Promise<AuthResult>;
    try {
      result = auth.run({ req: this.#req!, client: this.client, secure: this.#secure, signal: this.#authAbort?.signal });
    } catch (err) {
      this.#authFailed(err);
      return;
    }
    // Closures only on the asynchronous path: a session without auth allocates none.
    if (result instanceof Promise)
      void result.then(
        (r) => this.#authPassed(r),
        (err: unknown) => this.#authFailed(err),
      );
    else this.#authPassed(result);
  }

  #authPassed(result: AuthResult): void {
    this.#authAbort = undefined;
    if (this.#done) return;
    this.#granted = result;
    this.connect();
  }

  #authFailed(err: unknown): void {
    this.#authAbort = undefined;
    if (this.#done) return;
    const e = err instanceof GatewayError ? err : new GatewayError('AUTH_UNAVAILABLE', String(err));
    const fields = {
      session: this.id,
      client: this.client,
      route: this.route.name,
      status: e.status,
      code: e.code,
      reason: e.message,
      trace: this.trace.traceId,
      requestId: this.trace.requestId,
    };
    if (this.#host.logRejected !== undefined) this.#host.logRejected(fields);
    else this.#host.log.info(fields, 'handshake rejected');
    this.#fail(e);
  }

  /** Picks a target and dials it; on a retryable failure, the next target. */
  connect(): void {
    const hashSpec = this.#pool.config.hash;
    const req = this.#req!;
    const granted = this.#granted;
    const key = hashSpec === undefined ? undefined : hashKeyOf(hashSpec, { headers: req.headers, url: req.url ?? '/' }, this.client, granted?.claims);
    const target = this.#pool.pick(key, this.#tried);
    if (target === undefined) {
      // Every target was tried: the client hears why the last attempt failed.
      this.#fail(this.#lastError ?? new GatewayError('NO_TARGET', `upstream ${this.#pool.name}: no available target`));
      return;
    }
    this.#target = target;
    this.#holding = true;
    target.active++;
    const key64 = req.headers['sec-websocket-key'] as string;
    const socket = this.#socket!;
    const peer = peerAddress(socket);
    this.#dialAt = performance.now();
    this.#dial = dialUpstream(
      {
        target: target.config,
        request: buildUpstreamHandshake(req, {
          path: target.config.basePath + upstreamPath(this.route, req.url ?? '/'),
          peer,
          trusted: this.#snap.trusted.trusts(peer),
          secure: this.#secure,
          extra: granted?.headers,
          protocol: granted?.protocol,
          trace: this.trace,
        }),
        accept: acceptKey(key64),
        timeout: this.#pool.config.connectTimeout,
        maxHeadBytes: this.#snap.limits.maxHeaderBytes,
        tls: this.#pool.config.tls,
        proxyHeader: this.#pool.config.proxyProtocol
          ? encodeProxyV2(
              { address: this.client, port: this.client === peer ? peerPort(socket) : 0 },
              { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
            )
          : undefined,
      },
      (err, result) => this.#onDialed(err, result),
      takesBareUpstream(this.#snap.relay.mode),
      // A core takes sessions of plain TCP clients only (not TLS, not HTTP/2 streams).
      !this.#secure && answerOf(socket) === undefined && takesCoreUpstream(this.#snap.relay.mode),
    );
  }

  #onDialed(err: GatewayError | undefined, result: DialResult | undefined): void {
    this.#dial = undefined;
    if (this.#done) {
      if (result !== undefined) discardAnswer(result);
      return;
    }
    const target = this.#target!;
    if (err !== undefined) {
      // Failures to reach or handshake with the target count towards its passive ejection.
      if (err.spec.source === 'upstream') dialFailed(target.state);
      this.#release();
      this.#host.log.warn({ session: this.id, target: target.id, code: err.code, err: err.message, trace: this.trace.traceId }, 'upstream attempt failed');
      if (err.spec.retryable && --this.#attemptsLeft > 0 && !this.#host.draining) {
        (this.#tried ??= new Set()).add(target);
        this.#lastError = err;
        this.#target = undefined;
        this.connect();
        return;
      }
      this.#fail(err);
      return;
    }
    dialSucceeded(target.state);
    if ((target.state.drained || target.state.removed) && result!.kind === 'upgraded' && !this.#host.draining) {
      // Drained (or removed) while we dialed: nothing is committed yet, so try another target.
      discardAnswer(result!);
      this.#release();
      (this.#tried ??= new Set()).add(target);
      this.#target = undefined;
      this.connect();
      return;
    }
    // Bytes the client sent behind its request head go through the relay,
    // so inspect mode checks them like every later frame.
    const early = this.#early;
    this.#req = undefined;
    this.#early = undefined;
    if (result!.kind === 'answered') this.#passAnswer(result!);
    else this.#upgrade(result!, early);
  }

  #upgrade(result: DialResult, early: Buffer | undefined): void {
    const down = this.#socket!;
    // An HTTP/2 stream (RFC 8441) is answered with frames: :status 200.
    const answer = answerOf(down);
    if (answer === undefined) down.write(clientSwitchingHead(result.head), 'latin1');
    else {
      answer.accept(down, result.head);
      this.#protocol = answer.protocol;
    }
    const metrics = this.#host.metrics;
    const target = this.#target!;
    metrics?.accepted(this.route.name, this.#pool.name, target.config.url, this.admission.headAt, this.#dialAt);
    if (answer !== undefined) metrics?.http2WebSocket(this.route.name);
    this.#relayedAt = Date.now();
    this.#subprotocol = result.head.get('sec-websocket-protocol');
    const relayConfig = this.#snap.relay;
    const deflate = /permessage-deflate/i.test(result.head.get('sec-websocket-extensions') ?? '');
    const limits = relayLimitsFor(this.route, relayConfig, metrics === undefined ? null : metrics.tally, deflate);
    const tunnel = createRelay(relayConfig.mode, down, result, limits, this.#onRelayEnd);
    this.#tunnel = tunnel;
    target.state.sessions.add(this);
    this.#unwatchClient(down);
    this.#host.sweeper.add(tunnel);
    tunnel.start(result.rest, early);
    // The relay holds the client's connection as long as it needs it (the native cores not at all).
    this.#socket = undefined;
  }

  /** The upstream said no (say 403): the client gets the same answer, body included. */
  #passAnswer(result: DialResult): void {
    const down = this.#socket!;
    const up = result.socket;
    const answer = answerOf(down);
    if (answer !== undefined) {
      this.#host.metrics?.handshake(this.route.name, 'upstream_rejected');
      const status = result.head.status;
      answer.pass(down, result.head, up, result.rest, this.route.limits.idleTimeout, () =>
        this.#finish({ closedBy: 'upstream', reason: `upstream answered ${status}` }, status),
      );
      return;
    }
    down.write(clientAnswerHead(result.head), 'latin1');
    this.#host.metrics?.handshake(this.route.name, 'upstream_rejected');
    const length = Number(result.head.get('content-length') ?? NaN);
    // 204 and 304 have no body, whatever their headers say (RFC 9112 §6.3): waiting for one would hold both sides.
    const bodiless = result.head.status === 204 || result.head.status === 304;
    let left = bodiless ? 0 : Number.isFinite(length) ? length : Infinity;
    const chunked = /chunked/i.test(result.head.get('transfer-encoding') ?? '');
    const finish = (): void => {
      up.destroy();
      down.end();
      this.#finish({ closedBy: 'upstream', reason: `upstream answered ${result.head.status}` }, result.head.status);
    };
    const write = (chunk: Buffer): void => {
      const piece = chunk.length > left ? chunk.subarray(0, left) : chunk;
      down.write(piece);
      left -= piece.length;
      if (left <= 0 || (chunked && endsWithLastChunk(piece))) finish();
    };
    up.on('data', write);
    up.on('end', finish);
    up.on('close', finish);
    up.on('error', noop);
    // The client left before the answer's end: the upstream connection must not outlive it.
    down.once('close', () => up.destroy());
    // A body without a length ends when the upstream closes; one silent for idleTimeout is cut, as in HTTP passthrough.
    const idle = this.route.limits.idleTimeout;
    if (idle > 0) {
      up.setTimeout(idle);
      up.on('timeout', finish);
    }
    if (result.rest !== undefined) write(result.rest);
    else if (left === 0) finish();
    if (!this.#done) up.resume();
  }

  #onRelayEnd = (tunnel: Relay, end: RelayEnd): void => {
    this.#host.sweeper.delete(tunnel);
    this.#finish(end, 101);
  };

  /** @internal Before the 101: the client vanished while we were dialing (heard only while watched). */
  closed(): void {
    if (this.#done) return;
    this.#dial?.abort();
    this.#authAbort?.abort();
    this.#finish({ closedBy: 'client', reason: 'closed during handshake' }, 0);
  }

  /** Watches the client during the handshake; called once by the gateway. */
  watchClient(): void {
    const socket = this.#socket!;
    this.#watching = true;
    // A BareConn tells its watcher itself: no listener to add and take off again on every handshake.
    if (socket instanceof BareConn) socket.watcher = this;
    else {
      watched.set(socket, this);
      socket.on('close', onWatchedClose);
    }
  }

  #unwatchClient(socket: RelaySocket): void {
    if (!this.#watching) return;
    this.#watching = false;
    if (socket instanceof BareConn) {
      if (socket.watcher === this) socket.watcher = undefined;
    } else {
      socket.off('close', onWatchedClose);
      watched.delete(socket);
    }
  }

  #fail(err: GatewayError): void {
    this.#host.metrics?.handshake(this.route.name, outcomeOf(err.code));
    rejectError(this.#socket!, err);
    this.#finish({ closedBy: 'gateway', reason: err.message }, err.status, err);
  }

  /** Gateway-initiated end: shutdown (1001, the default) or target drain (1012). Tunnel mode cuts. */
  close(reason: string, code?: number): void {
    if (this.#tunnel !== undefined) this.#tunnel.close(reason, code);
    else if (!this.#done) this.#fail(new GatewayError('SHUTTING_DOWN', reason));
  }

  #release(): void {
    if (this.#holding) this.#target!.active--;
    this.#holding = false;
  }

  /** The single exit: accounting, target release and the access log. */
  #finish(end: RelayEnd, status: number, err?: GatewayError): void {
    if (this.#done) return;
    this.#done = true;
    // Shutdown or a lost client while forward auth is still thinking: stop the call.
    this.#authAbort?.abort();
    this.#release();
    this.#target?.state.sessions.delete(this);
    if (this.#socket !== undefined) this.#unwatchClient(this.#socket);
    this.#host.sessionEnded(this);
    const t = this.#tunnel;
    if (t !== undefined) this.#host.metrics?.ended(this.route.name, t, end, Date.now() - this.#relayedAt);
    if (!this.#host.accessLog) return;
    this.#host.log.info(
      {
        session: this.id,
        client: this.client,
        route: this.route.name,
        target: this.#target?.config.url,
        status,
        durationMs: Date.now() - this.startedAt,
        bytesIn: t?.bytesFromClient ?? 0,
        bytesOut: t?.bytesFromUpstream ?? 0,
        messagesIn: t?.messagesFromClient,
        messagesOut: t?.messagesFromUpstream,
        closedBy: end.closedBy,
        reason: end.reason,
        code: err?.code,
        protocol: this.protocol,
        trace: this.trace.traceId,
        requestId: this.trace.requestId,
      },
      'session closed',
    );
  }
}

function endsWithLastChunk(chunk: Buffer): boolean {
  return chunk.length >= 5 && chunk.toString('latin1', chunk.length - 5) === '0\r\n\r\n';
}

function noop(): void {}
