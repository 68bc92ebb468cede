import type { Relay, RelayDone, RelayLimits } from './relay.js';
import type { Party, RelayEnd } from './tunnel.js';
import { CloseCode, encodeClose } from './frames.js';
import { gatewayPing } from './keepalive.js';
import { TimerQueue, TimerQueues } from '../timer-queue.js';

// What an inspect-mode session decides, whoever moves its bytes: the close
// handshake on both connections, keepalive pings, maxLifetime, and the
// verdict the session ends with. Two data paths feed it: the JavaScript one
// (inspect.ts, frames followed by inspect-flow.ts) and the native core
// (native-inspect.ts, native/inspect.c). Both report the same events (a
// Close frame written or received, a rule broken, a connection ended,
// failed or closed) and offer the same operations (a frame of the
// gateway's own at the next frame boundary, nothing more toward a peer, an
// end), so the decisions below are made once, for both.
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

const LABEL: Record<number, string> = {
  [CloseCode.PROTOCOL_ERROR]: 'protocol error',
  [CloseCode.INVALID_PAYLOAD]: 'invalid UTF-8',
  [CloseCode.POLICY]: 'message rate exceeded',
  [CloseCode.TOO_BIG]: 'message too big',
};

/** The access log's words for a connection error: resets are "reset", the rest "error: read ETIMEDOUT". */
export function failureReason(code: string | undefined, message: string): string {
  return code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : `error: ${message}`;
}

export abstract class InspectSession implements Relay {
  /** Set on traffic (but not on pongs to the gateway's pings); the idle sweeper clears it. */
  abstract active: boolean;
  quietMs = 0;
  readonly idleMs: number;
  protected readonly limits: RelayLimits;
  readonly #onEnd: RelayDone;
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
  /** endClient() was called: the client's end is under way. */
  #clientEnded = false;
  /** close() has run. */
  #closing = false;
  /** Tickets in closeTimers and keepalives (-1: none set). */
  #closeTimer = -1;
  #keepalive = -1;
  /** The keepalive queue #keepalive is in. */
  #keepaliveQueue: TimerQueue<InspectSession> | undefined;
  #awaitingPong = false;
  #pings = 0;
  #lifetime: NodeJS.Timeout | undefined;
  #lifetimeEnd = 0;

  constructor(limits: RelayLimits, done: RelayDone) {
    this.idleMs = limits.idleMs;
    this.limits = limits;
    this.#onEnd = done;
  }

  abstract readonly bytesFromClient: number;
  abstract readonly bytesFromUpstream: number;
  abstract readonly messagesFromClient: number;
  abstract readonly messagesFromUpstream: number;
  abstract start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void;

  // --- what the data path does for the session -----------------------------

  /**
   * Sends a frame of the gateway's own toward the client (true) or the
   * upstream: now if that stream is between frames, else at its next frame
   * boundary. A Close that goes out now is reported (wroteClose) before this
   * returns. false: impossible, the stream is stuck inside a frame.
   */
  protected abstract inject(toClient: boolean, frame: Buffer, isClose: boolean): boolean;
  /** A Close frame can still be sent toward that peer (none is out or queued). */
  protected abstract canClose(toClient: boolean): boolean;
  /** Nothing more is written toward that peer. */
  protected abstract shut(toClient: boolean): void;
  /** A frame of the gateway's own is waiting for a boundary toward the client. */
  protected abstract pingWaiting(): boolean;
  /** The client sent something since the last look (or is not being read: backpressure); clears it. */
  protected abstract clientHeard(): boolean;
  /** Ends the client connection; `saidClose`: its Close is in, so nothing it sends is waited for. */
  protected abstract endClient(saidClose: boolean): void;
  /** Cuts both connections now. */
  protected abstract destroyBoth(): void;
  /** The session is over: give back what the data path holds (rate buckets). */
  protected abstract released(): void;

  /** Starts the keepalive and lifetime timers, once the data path runs. */
  protected startTimers(): void {
    const { pingInterval, maxLifetime } = this.limits;
    if (pingInterval > 0 && this.#open === 2) this.#setKeepalive(pingInterval);
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
    this.#sendClose(true, code, reason);
    this.#sendClose(false, code, reason);
    this.#armCloseTimer();
    this.#settle();
  }

  onIdle(): void {
    this.close('idle timeout');
  }

  // --- what the data path reports ------------------------------------------

  /** A Close frame went out toward the client (true) or the upstream. */
  protected wroteClose(toClient: boolean): void {
    if (toClient) this.#sentClient = true;
    else this.#sentUpstream = true;
    this.#armCloseTimer();
    this.#settle();
  }

  /** The client (true) or the upstream sent a Close frame; `code` is 1005 when it carried none. */
  protected heardClose(fromClient: boolean, code: number): void {
    if (fromClient) this.#recvClient = this.#clientSaidClose = true;
    else this.#recvUpstream = true;
    // The first word on how it ended stands (#record): the second Close's words are not built.
    if (this.#end === undefined) this.#record(fromClient ? 'client' : 'upstream', `close ${code}`, code);
    this.#armCloseTimer();
    this.#settle();
  }

  /** The client (true) or the upstream broke a rule; `code` is the close code it deserves. */
  protected brokeRule(fromClient: boolean, code: number, rule: string, errorCode: string | null): void {
    const party = fromClient ? 'client' : 'upstream';
    const label = LABEL[code] ?? 'error';
    this.#record(party, `${label} ${code}${errorCode === null ? '' : ` (${errorCode})`}: ${rule}`, code);
    this.#dropPeer(fromClient, code, rule, `${party} ${label}`);
  }

  /** FIN from the client (true) or the upstream. */
  protected peerEnded(isClient: boolean): void {
    this.#hungUp(isClient, 'end without close frame');
  }

  /** That connection failed (`reason` as failureReason words it); the caller destroys it. */
  protected peerFailed(isClient: boolean, reason: string): void {
    this.#record(isClient ? 'client' : 'upstream', reason);
    this.shut(isClient);
  }

  /** That connection is closed. */
  protected peerClosed(isClient: boolean): void {
    if (--this.#open === 0) {
      this.#finish(isClient);
      return;
    }
    this.#hungUp(isClient, 'reset');
  }

  // --- keepalive and lifetime ----------------------------------------------

  /** @internal */
  keepalive(): void {
    this.#keepalive = -1;
    if (this.#closeTimer !== -1 || this.#open < 2) return;
    const tally = this.limits.tally;
    let next = this.limits.pingInterval;
    if (this.clientHeard()) {
      // Heard from (or we are not reading it: backpressure): alive.
      if (this.#awaitingPong && tally !== null) tally.pingsAnswered++;
      this.#awaitingPong = false;
    } else if (this.#awaitingPong) {
      // A ping still waiting for a boundary in a long upstream frame has not been sent: wait on.
      if (!this.pingWaiting()) {
        if (tally !== null) tally.pingsTimedOut++;
        this.#record('gateway', `no pong within ${this.limits.pongTimeout}ms`, CloseCode.GOING_AWAY);
        this.#dropPeer(true, CloseCode.GOING_AWAY, 'pong timeout', 'client did not answer ping');
        return;
      }
      next = this.limits.pongTimeout;
    } else {
      this.inject(true, gatewayPing(++this.#pings), false);
      if (tally !== null) tally.pingsSent++;
      this.#awaitingPong = true;
      next = this.limits.pongTimeout;
    }
    this.#setKeepalive(next);
  }

  #setKeepalive(ms: number): void {
    const queue = (this.#keepaliveQueue = keepalives.of(ms));
    this.#keepalive = queue.set(this);
  }

  #clearKeepalive(): void {
    if (this.#keepalive === -1) return;
    this.#keepaliveQueue!.clear(this.#keepalive);
    this.#keepalive = -1;
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

  /** @internal The close handshake took too long. */
  cut(): void {
    this.#record('gateway', 'close handshake timed out');
    this.destroyBoth();
  }

  // --- internals -----------------------------------------------------------

  /** `isClient`'s side is gone (FIN or closed): a loss, unless it said Close first. */
  #hungUp(isClient: boolean, lost: string): void {
    if (!(isClient ? this.#recvClient : this.#recvUpstream)) {
      this.#lost(isClient, lost);
      return;
    }
    // It said Close and hung up: nothing more can be sent to it.
    if (isClient) this.#sentClient = true;
    else this.#sentUpstream = true;
    this.shut(isClient);
    this.#armCloseTimer();
    this.#settle();
  }

  /**
   * The client (true) or the upstream broke a rule, or is dead: it gets
   * `code` and its connection is ended once that Close is out, without
   * waiting for an answer. The other peer gets a Close and a handshake.
   */
  #dropPeer(client: boolean, code: number, reason: string, innocentReason: string): void {
    if (client) this.#recvClient = true;
    else this.#recvUpstream = true;
    this.#sendClose(client, code, reason);
    this.#sendClose(!client, client ? CloseCode.GOING_AWAY : CloseCode.INTERNAL, innocentReason);
    this.#armCloseTimer();
    this.#settle();
  }

  /** The client (true) or the upstream went away without a Close frame. */
  #lost(client: boolean, reason: string): void {
    this.#record(client ? 'client' : 'upstream', reason);
    if (client) this.#sentClient = this.#recvClient = true;
    else this.#sentUpstream = this.#recvUpstream = true;
    this.shut(client);
    this.#sendClose(!client, client ? CloseCode.GOING_AWAY : CloseCode.INTERNAL, client ? 'client went away' : 'upstream went away');
    this.#armCloseTimer();
    this.#settle();
  }

  /** A Close toward the client (true) or the upstream. */
  #sendClose(toClient: boolean, code: number, reason: string): void {
    if (!this.canClose(toClient)) return;
    if (this.inject(toClient, encodeClose(code, reason, !toClient), true)) return;
    // Left inside a frame: no Close frame can be placed, so the TCP connection is ended instead.
    if (toClient) this.#sentClient = this.#recvClient = true;
    else this.#sentUpstream = this.#recvUpstream = true;
    this.shut(toClient);
  }

  /** Ends each connection whose close handshake is over. */
  #settle(): void {
    // RFC 6455 §7.1.1: the server closes the TCP connection first, so that it,
    // not the client, holds TIME_WAIT. Toward the client the gateway is the
    // server and ends at once; toward the upstream it is the client and waits
    // for the upstream's FIN (the close timer cuts an upstream that never
    // sends one). Ending upstream connections first would pile TIME_WAIT
    // sockets onto the gateway's ephemeral ports toward each backend.
    // Once: every later call would find the client's end under way (both relays' endClient).
    if (this.#sentClient && this.#recvClient && !this.#clientEnded) {
      this.#clientEnded = true;
      this.endClient(this.#clientSaidClose);
    }
  }

  #armCloseTimer(): void {
    if (this.#closeTimer === -1) this.#closeTimer = closeTimers.set(this);
    this.#clearKeepalive();
  }

  #record(by: Party, reason: string, code?: number): void {
    this.#end ??= code === undefined ? { closedBy: by, reason } : { closedBy: by, reason, code };
  }

  #finish(lastIsClient: boolean): void {
    if (this.#closeTimer !== -1) closeTimers.clear(this.#closeTimer);
    this.#closeTimer = -1;
    this.#clearKeepalive();
    clearTimeout(this.#lifetime);
    this.#lifetime = undefined;
    this.released();
    this.#onEnd(this, this.#end ?? { closedBy: lastIsClient ? 'client' : 'upstream', reason: 'reset' });
  }
}

function later(fn: (r: InspectSession) => void, ms: number, r: InspectSession): NodeJS.Timeout {
  const t = setTimeout(fn, ms, r);
  t.unref();
  return t;
}

function onLifetime(r: InspectSession): void {
  r.lifetime();
}

// The session's own timers that seldom fire, each a slot in a queue (timer-queue.ts).
const closeTimers = new TimerQueue<InspectSession>(CLOSE_TIMEOUT_MS, (r) => r.cut());
const keepalives = new TimerQueues<InspectSession>((r) => r.keepalive());
