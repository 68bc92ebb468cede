import type { RelayDone, RelayLimits } from './relay.js';
import { Flow, FLOW_IO, type FlowOwner } from './inspect-flow.js';
import { failureReason, InspectSession } from './inspect-session.js';
import { Port, type RelaySocket } from './handle-io.js';

// Inspect mode in JavaScript: the relay follows the frames both ways
// (inspect-flow.ts) so it can enforce RFC 6455 §5 and the message limits,
// answer for the gateway with Close frames of its own, ping quiet clients,
// and end a session with a close handshake on both connections instead of a
// cut. What it decides, and the close codes, are inspect-session.ts's,
// shared with the native core (native-inspect.ts), which runs inspect
// sessions on plain TCP; this relay runs the rest (TLS on either side,
// streams) and every session with WSGATE_INSPECT_CORE=js.

export { CLOSE_TIMEOUT_MS } from './inspect-session.js';

const kRelay = Symbol('wsgate.inspect');

type RelaySide = RelaySocket & {
  [kRelay]: InspectRelay;
};

export class InspectRelay extends InspectSession implements FlowOwner {
  readonly down: RelaySide;
  readonly up: RelaySide;
  active = true;
  readonly #c2u: Flow;
  readonly #u2c: Flow;

  constructor(down: RelaySocket, up: RelaySocket, limits: RelayLimits, done: RelayDone) {
    super(limits, done);
    this.down = down as RelaySide;
    this.up = up as RelaySide;
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
    this.startTimers();
  }

  // --- FlowOwner: what the flows report -----------------------------------

  closeWritten(flow: Flow): void {
    this.wroteClose(flow.dst === this.down);
  }

  closeReceived(flow: Flow, code: number): void {
    this.heardClose(flow.fromClient, code);
  }

  violation(flow: Flow, code: number, rule: string): void {
    this.brokeRule(flow.fromClient, code, rule, flow.tracker.errorCode);
  }

  // --- the sockets ---------------------------------------------------------

  /** @internal FIN from `side`. */
  sideEnded(side: RelaySide): void {
    this.peerEnded(side === this.down);
  }

  /** @internal */
  sideFailed(side: RelaySide, err: NodeJS.ErrnoException): void {
    this.peerFailed(side === this.down, failureReason(err.code, err.message));
    side.destroy();
  }

  /** @internal */
  sideClosed(side: RelaySide): void {
    this.peerClosed(side === this.down);
  }

  // --- InspectSession: the data path's operations ----------------------------

  protected inject(toClient: boolean, frame: Buffer, isClose: boolean): boolean {
    return this.#toward(toClient).inject(frame, isClose);
  }

  protected canClose(toClient: boolean): boolean {
    return this.#toward(toClient).canClose;
  }

  protected shut(toClient: boolean): void {
    this.#toward(toClient).shut();
  }

  protected pingWaiting(): boolean {
    return this.#u2c.pending;
  }

  protected clientHeard(): boolean {
    const f = this.#c2u;
    if (!f.heard && !f.srcPort.paused) return false;
    f.heard = false;
    return true;
  }

  protected endClient(saidClose: boolean): void {
    endSide(this.down, saidClose);
  }

  protected destroyBoth(): void {
    this.down.destroy();
    this.up.destroy();
  }

  protected released(): void {
    this.#c2u.release();
    this.#u2c.release();
  }

  /** The flow writing toward the client (true) or the upstream (false). */
  #toward(client: boolean): Flow {
    return client ? this.#u2c : this.#c2u;
  }
}

/** `done`: the peer said Close, so nothing it sends is waited for (a bare connection is closed at once). */
function endSide(side: RelaySocket, done = false): void {
  if (side.writableEnded || side.destroyed) return;
  if (done && 'hangUp' in side) side.hangUp();
  else side.end();
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
