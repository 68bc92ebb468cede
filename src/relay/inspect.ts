import type { Relay, RelayDone, RelayLimits } from './relay.js';
import type { Party, RelayEnd } from './tunnel.js';
import { CloseCode, encodeClose } from './frames.js';
import { Flow, FLOW_IO, type FlowOwner } from './inspect-flow.js';
import { gatewayPing } from './keepalive.js';
import { Port, type RelaySocket } from './handle-io.js';

// Inspect mode: the relay follows the frames both ways (inspect-flow.ts) so
// it can enforce RFC 6455 §5 and the message limits, answer for the gateway
// with Close frames of its own, ping quiet clients, and end a session with
// a close handshake on both connections instead of a cut.
//
// Close codes (docs/configuration.md lists them):
// - The peer that broke a rule gets the code for it (1002 protocol, 1008
//   message rate, 1009 message too big) and its connection is ended right
//   after: it is not trusted to answer. The other, innocent peer gets a Close
//   too: 1001 Going Away when it is the upstream (the client is leaving),
//   1011 when it is the client (the server side failed it). Sending 1002 to
//   an innocent peer would tell it that it broke the protocol.
// - Limits hold both ways: an upstream that sends a message over
//   maxMessageBytes or above messageRate gets 1009 / 1008, its client 1011.
// - validateUtf8: a client's text message that is not UTF-8 → 1007. Only
//   uncompressed messages can be checked (permessage-deflate would need an
//   inflater per connection); upstreams are trusted to send UTF-8.
// - The gateway's own ends (shutdown, idle, lifetime, target drain) send the
//   same code (1001, or 1012) both ways and wait for both answers.
// - An upstream lost without a Close frame (reset, or EOF) → 1011 to the
//   client; a client lost that way → 1001 to the upstream. A Close frame from
//   either side is forwarded as received.
// - Keepalive: a client silent for pingInterval is pinged; silent for
//   pongTimeout more, it gets 1001 and is cut, and the upstream gets 1001
//   with a close handshake. Any bytes from the client count as an answer.
//   Pongs to the gateway's pings are dropped, and do not count as traffic
//   for idleTimeout (which means "no data either way").
// Whatever happens, the session ends at most CLOSE_TIMEOUT_MS after the first
// Close frame or lost connection: a peer that never answers is cut.

/** How long a close handshake may take before both connections are cut. */
export const CLOSE_TIMEOUT_MS = 2_000;

/** setTimeout's largest delay; longer lifetimes are waited for in steps. */
const MAX_TIMER_MS = 0x7fffffff;

const kRelay = Symbol('wsgate.inspect');

type RelaySide = RelaySocket & {
  [kRelay]: InspectRelay;
};

const LABEL: Record<number, string> = {
  [CloseCode.PROTOCOL_ERROR]: 'protocol error',
  [CloseCode.INVALID_PAYLOAD]: 'invalid UTF-8',
  [CloseCode.POLICY]: 'message rate exceeded',
  [CloseCode.TOO_BIG]: 'message too big',
};

export class InspectRelay implements Relay, FlowOwner {
  readonly down: RelaySide;
  readonly up: RelaySide;
  /** Set on traffic (but not on pongs to the gateway's pings); the idle sweeper clears it. */
  active = true;
  quietMs = 0;
  readonly idleMs: number;
  readonly #limits: RelayLimits;
  readonly #onEnd: RelayDone;
  readonly #c2u: Flow;
  readonly #u2c: Flow;
  #end: RelayEnd | undefined;
  #open = 2;
  // The close handshake, per connection: a Close frame was sent to it /
  // received from it (or there is nothing more to wait for).
  #sentClient = false;
  #recvClient = false;
  #sentUpstream = false;
  #recvUpstream = false;
  /** The client's own Close frame came: it sends nothing more. */
  #clientSaidClose = false;
  /** close() has run. */
  #closing = false;
  #closeTimer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #awaitingPong = false;
  #pings = 0;
  #lifetime: NodeJS.Timeout | undefined;
  #lifetimeEnd = 0;

  constructor(down: RelaySocket, up: RelaySocket, limits: RelayLimits, done: RelayDone) {
    this.down = down as RelaySide;
    this.up = up as RelaySide;
    this.idleMs = limits.idleMs;
    this.#limits = limits;
    this.#onEnd = done;
    // The limits protect backends from clients; what upstreams send is
    // trusted (no size limit, no UTF-8 check) unless upstreamMessageRate is set.
    // Plain literals, no spread: V8 clones a spread object in its runtime,
    // which made up most of a session's setup cost.
    const downPort = new Port(down, FLOW_IO);
    const upPort = new Port(up, FLOW_IO);
    this.#c2u = new Flow(this, downPort, upPort, {
      fromClient: true,
      rsv1Allowed: limits.rsv1Allowed,
      maxBufferedBytes: limits.maxBufferedBytes,
      maxMessageBytes: limits.maxMessageBytes,
      messageRate: limits.messageRate,
      validateUtf8: limits.validateUtf8,
      sizes: limits.tally === null ? null : limits.tally.upstreamSizes,
    });
    this.#u2c = new Flow(this, upPort, downPort, {
      fromClient: false,
      rsv1Allowed: limits.rsv1Allowed,
      maxBufferedBytes: limits.maxBufferedBytes,
      maxMessageBytes: 0,
      messageRate: limits.upstreamMessageRate,
      validateUtf8: false,
      sizes: limits.tally === null ? null : limits.tally.downstreamSizes,
    });
    for (const side of [this.down, this.up]) {
      side[kRelay] = this;
      side.on('error', onError);
      side.on('end', onEnd);
      side.on('close', onClose);
    }
  }

  get bytesFromClient(): number {
    return this.#c2u.bytes;
  }

  get bytesFromUpstream(): number {
    return this.#u2c.bytes;
  }

  get messagesFromClient(): number {
    return this.#c2u.messages;
  }

  get messagesFromUpstream(): number {
    return this.#u2c.messages;
  }

  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    this.#u2c.srcPort.start(toClient);
    this.#c2u.srcPort.start(toUpstream);
    const { pingInterval, maxLifetime } = this.#limits;
    if (pingInterval > 0 && this.#open === 2) this.#keepalive = later(onKeepalive, pingInterval, this);
    if (maxLifetime > 0 && this.#open === 2) {
      const ms = Math.round(maxLifetime * (0.9 + 0.2 * Math.random()));
      this.#lifetimeEnd = Date.now() + ms;
      this.#lifetime = later(onLifetime, Math.min(ms, MAX_TIMER_MS), this);
    }
  }

  /** Close frames with `code` both ways, then the TCP connections end once answered (or after CLOSE_TIMEOUT_MS). */
  close(reason: string, code: number = CloseCode.GOING_AWAY): void {
    if (this.#closing || this.#open === 0) return;
    this.#closing = true;
    this.#record('gateway', reason, code);
    this.#sendClose(this.#u2c, code, reason);
    this.#sendClose(this.#c2u, code, reason);
    this.#armCloseTimer();
    this.#settle();
  }

  onIdle(): void {
    this.close('idle timeout');
  }

  // --- FlowOwner: what the flows report -----------------------------------

  closeWritten(flow: Flow): void {
    if (flow.dst === this.down) this.#sentClient = true;
    else this.#sentUpstream = true;
    this.#armCloseTimer();
    this.#settle();
  }

  closeReceived(flow: Flow, code: number): void {
    if (flow.fromClient) this.#recvClient = this.#clientSaidClose = true;
    else this.#recvUpstream = true;
    this.#record(flow.fromClient ? 'client' : 'upstream', `close ${code}`, code);
    this.#armCloseTimer();
    this.#settle();
  }

  violation(flow: Flow, code: number, rule: string): void {
    const party = flow.fromClient ? 'client' : 'upstream';
    const label = LABEL[code] ?? 'error';
    const errorCode = flow.tracker.errorCode;
    this.#record(party, `${label} ${code}${errorCode === null ? '' : ` (${errorCode})`}: ${rule}`, code);
    this.#dropPeer(flow.fromClient, code, rule, `${party} ${label}`);
  }

  // --- keepalive and lifetime ----------------------------------------------

  /** @internal */
  keepalive(): void {
    this.#keepalive = undefined;
    if (this.#closeTimer !== undefined || this.#open < 2) return;
    const f = this.#c2u;
    let next = this.#limits.pingInterval;
    if (f.heard || f.srcPort.paused) {
      // Heard from (or we are not reading it: backpressure): alive.
      f.heard = false;
      if (this.#awaitingPong && this.#limits.tally !== null) this.#limits.tally.pingsAnswered++;
      this.#awaitingPong = false;
    } else if (this.#awaitingPong) {
      // A ping still waiting for a boundary in a long upstream frame has not been sent: wait on.
      if (!this.#u2c.pending) {
        if (this.#limits.tally !== null) this.#limits.tally.pingsTimedOut++;
        this.#record('gateway', `no pong within ${this.#limits.pongTimeout}ms`, CloseCode.GOING_AWAY);
        this.#dropPeer(true, CloseCode.GOING_AWAY, 'pong timeout', 'client did not answer ping');
        return;
      }
      next = this.#limits.pongTimeout;
    } else {
      this.#u2c.inject(gatewayPing(++this.#pings), false);
      if (this.#limits.tally !== null) this.#limits.tally.pingsSent++;
      this.#awaitingPong = true;
      next = this.#limits.pongTimeout;
    }
    this.#keepalive = later(onKeepalive, next, this);
  }

  /** @internal */
  lifetime(): void {
    const left = this.#lifetimeEnd - Date.now();
    if (left > 0) this.#lifetime = later(onLifetime, Math.min(left, MAX_TIMER_MS), this);
    else {
      this.#lifetime = undefined;
      this.close('max lifetime');
    }
  }

  // --- the sockets ---------------------------------------------------------

  /** @internal FIN from `side`. */
  sideEnded(side: RelaySide): void {
    this.#hungUp(side === this.down, 'end without close frame');
  }

  /** `isClient`'s side is gone (FIN or closed): a loss, unless it said Close first. */
  #hungUp(isClient: boolean, lost: string): void {
    if (!(isClient ? this.#recvClient : this.#recvUpstream)) {
      this.#lost(isClient, lost);
      return;
    }
    // It said Close and hung up: nothing more can be sent to it.
    if (isClient) this.#sentClient = true;
    else this.#sentUpstream = true;
    this.#toward(isClient).shut();
    this.#armCloseTimer();
    this.#settle();
  }

  /** @internal */
  sideFailed(side: RelaySide, err: NodeJS.ErrnoException): void {
    const isClient = side === this.down;
    this.#record(isClient ? 'client' : 'upstream', err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error: ${err.message}`);
    this.#toward(isClient).shut();
    side.destroy();
  }

  /** @internal */
  sideClosed(side: RelaySide): void {
    if (--this.#open === 0) {
      this.#finish(side);
      return;
    }
    this.#hungUp(side === this.down, 'reset');
  }

  /** @internal The close handshake took too long. */
  cut(): void {
    this.#record('gateway', 'close handshake timed out');
    this.down.destroy();
    this.up.destroy();
  }

  // --- internals -----------------------------------------------------------

  /** The flow writing toward the client (true) or the upstream (false). */
  #toward(client: boolean): Flow {
    return client ? this.#u2c : this.#c2u;
  }

  /**
   * The client (true) or the upstream broke a rule, or is dead: it gets
   * `code` and its connection is ended once that Close is out, without
   * waiting for an answer. The other peer gets a Close and a handshake.
   */
  #dropPeer(client: boolean, code: number, reason: string, innocentReason: string): void {
    if (client) this.#recvClient = true;
    else this.#recvUpstream = true;
    this.#sendClose(this.#toward(client), code, reason);
    this.#sendClose(this.#toward(!client), client ? CloseCode.GOING_AWAY : CloseCode.INTERNAL, innocentReason);
    this.#armCloseTimer();
    this.#settle();
  }

  /** The client (true) or the upstream went away without a Close frame. */
  #lost(client: boolean, reason: string): void {
    this.#record(client ? 'client' : 'upstream', reason);
    if (client) this.#sentClient = this.#recvClient = true;
    else this.#sentUpstream = this.#recvUpstream = true;
    this.#toward(client).shut();
    this.#sendClose(this.#toward(!client), client ? CloseCode.GOING_AWAY : CloseCode.INTERNAL, client ? 'client went away' : 'upstream went away');
    this.#armCloseTimer();
    this.#settle();
  }

  #sendClose(flow: Flow, code: number, reason: string): void {
    if (!flow.canClose) return;
    if (flow.inject(encodeClose(code, reason, flow.dst === this.up), true)) return;
    // Left inside a frame: no Close frame can be placed, so the TCP connection is ended instead.
    if (flow.dst === this.down) this.#sentClient = this.#recvClient = true;
    else this.#sentUpstream = this.#recvUpstream = true;
    flow.shut();
  }

  /** Ends each connection whose close handshake is over. */
  #settle(): void {
    // RFC 6455 §7.1.1: the server closes the TCP connection first, so that it,
    // not the client, holds TIME_WAIT. Toward the client the gateway is the
    // server and ends at once; toward the upstream it is the client and waits
    // for the upstream's FIN (the close timer cuts an upstream that never
    // sends one). Ending upstream connections first would pile TIME_WAIT
    // sockets onto the gateway's ephemeral ports toward each backend.
    if (this.#sentClient && this.#recvClient) endSide(this.down, this.#clientSaidClose);
  }

  #armCloseTimer(): void {
    this.#closeTimer ??= setTimeout(onCloseTimeout, CLOSE_TIMEOUT_MS, this);
    if (this.#keepalive !== undefined) {
      clearTimeout(this.#keepalive);
      this.#keepalive = undefined;
    }
  }

  #record(by: Party, reason: string, code?: number): void {
    this.#end ??= code === undefined ? { closedBy: by, reason } : { closedBy: by, reason, code };
  }

  #finish(last: RelaySide): void {
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#keepalive);
    clearTimeout(this.#lifetime);
    this.#closeTimer = this.#keepalive = this.#lifetime = undefined;
    this.#c2u.release();
    this.#u2c.release();
    this.#onEnd(this, this.#end ?? { closedBy: last === this.down ? 'client' : 'upstream', reason: 'reset' });
  }
}

function later(fn: (r: InspectRelay) => void, ms: number, r: InspectRelay): NodeJS.Timeout {
  const t = setTimeout(fn, ms, r);
  t.unref();
  return t;
}

/** `done`: the peer said Close, so nothing it sends is waited for (a bare connection is closed at once). */
function endSide(side: RelaySocket, done = false): void {
  if (side.writableEnded || side.destroyed) return;
  if (done && 'hangUp' in side) side.hangUp();
  else side.end();
}

function onKeepalive(r: InspectRelay): void {
  r.keepalive();
}

function onLifetime(r: InspectRelay): void {
  r.lifetime();
}

function onCloseTimeout(r: InspectRelay): void {
  r.cut();
}

function onEnd(this: RelaySide): void {
  this[kRelay].sideEnded(this);
}

function onError(this: RelaySide, err: NodeJS.ErrnoException): void {
  this[kRelay].sideFailed(this, err);
}

function onClose(this: RelaySide): void {
  this[kRelay].sideClosed(this);
}
