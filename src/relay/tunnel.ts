import type { Relay, RelayDone, RelayLimits } from './relay.js';
import { Port, type PortHandlers, type RelaySocket } from './handle-io.js';

// Tunnel mode: bytes both ways, untouched. This is the hot path, so the
// listeners are module-level functions, a chunk read from one side's Port
// (handle-io.ts: beneath Node's streams where it can) is written to the
// other's exactly as it was read: no copy, no allocation, and the socket
// events that end a session find the tunnel under a symbol on the socket.

const kRelay = Symbol('wsgate.relay');

type Side = RelaySocket & {
  [kRelay]: Tunnel;
};

export type Party = 'client' | 'upstream' | 'gateway';

export interface RelayEnd {
  readonly closedBy: Party;
  /** "end" (clean FIN), "reset", "error: …", or the gateway's own reason. */
  readonly reason: string;
  /** Inspect mode: the first Close frame's code (either peer's, or the gateway's own); absent when there was none. */
  readonly code?: number;
}

/** How long a half-closed pair may linger before both sides are cut. */
export const LINGER_MS = 1_000;

export class Tunnel implements Relay {
  readonly down: Side;
  readonly up: Side;
  readonly downPort: Port<Tunnel>;
  readonly upPort: Port<Tunnel>;
  bytesFromClient = 0;
  bytesFromUpstream = 0;
  // Tunnel mode does not see messages.
  readonly messagesFromClient = 0;
  readonly messagesFromUpstream = 0;
  /** Set on every chunk; the idle sweeper clears it. Cheaper than a timer refresh per chunk. */
  active = true;
  quietMs = 0;
  readonly idleMs: number;
  readonly maxBuffered: number;
  readonly #onEnd: RelayDone;
  #end: RelayEnd | undefined;
  #open = 2;
  #linger: NodeJS.Timeout | undefined;

  constructor(down: RelaySocket, up: RelaySocket, limits: RelayLimits, done: RelayDone) {
    this.down = down as Side;
    this.up = up as Side;
    this.downPort = new Port(down, IO);
    this.upPort = new Port(up, IO);
    this.downPort.owner = this.upPort.owner = this;
    this.maxBuffered = limits.maxBufferedBytes;
    this.idleMs = limits.idleMs;
    this.#onEnd = done;
    for (const side of [this.down, this.up]) {
      side[kRelay] = this;
      side.on('error', onError);
      side.on('end', onEnd);
      side.on('close', onClose);
    }
  }

  /** Starts the flow; `toClient`/`toUpstream` are bytes read ahead during the handshake. */
  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    this.upPort.start(toClient);
    this.downPort.start(toUpstream);
  }

  /** The gateway ends the session (idle, shutdown, drain): both sides are cut now. */
  close(reason: string): void {
    this.#record('gateway', reason);
    this.down.destroy();
    this.up.destroy();
  }

  onIdle(): void {
    this.close('idle timeout');
  }

  /** Whoever acts first decides how the session is reported. */
  #record(by: Party, reason: string): void {
    this.#end ??= { closedBy: by, reason };
  }

  /** @internal called by the listeners below */
  sideEnded(side: Side): void {
    this.#record(side === this.down ? 'client' : 'upstream', 'end');
    const peer = side === this.down ? this.up : this.down;
    if (!peer.writableEnded) peer.end();
    this.#lingerThenCut();
  }

  /** @internal */
  sideFailed(side: Side, err: NodeJS.ErrnoException): void {
    const by = side === this.down ? 'client' : 'upstream';
    this.#record(by, err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error: ${err.message}`);
    side.destroy();
    (side === this.down ? this.up : this.down).destroy();
  }

  /** @internal */
  sideClosed(side: Side): void {
    if (--this.#open === 0) {
      clearTimeout(this.#linger);
      this.#onEnd(this, this.#end ?? { closedBy: side === this.down ? 'client' : 'upstream', reason: 'reset' });
      return;
    }
    this.#record(side === this.down ? 'client' : 'upstream', 'reset');
    const peer = side === this.down ? this.up : this.down;
    // Let a peer that is flushing its final bytes (say, a close frame) finish, briefly.
    if (peer.writableEnded && (side === this.down ? this.upPort : this.downPort).buffered > 0) this.#lingerThenCut();
    else peer.destroy();
  }

  #lingerThenCut(): void {
    this.#linger ??= setTimeout(cutBoth, LINGER_MS, this);
  }
}

function cutBoth(t: Tunnel): void {
  t.down.destroy();
  t.up.destroy();
}

function relay(from: Port<Tunnel>, chunk: Buffer): void {
  const t = from.owner;
  let to: Port<Tunnel>;
  if (from === t.downPort) {
    t.bytesFromClient += chunk.length;
    to = t.upPort;
  } else {
    t.bytesFromUpstream += chunk.length;
    to = t.downPort;
  }
  t.active = true;
  // Pause once the configured budget is used; resume on drain.
  if (to.send(chunk) >= t.maxBuffered) from.pause();
}

const IO: PortHandlers<Tunnel> = {
  chunk: relay,
  drain(port: Port<Tunnel>): void {
    // `port` can take more: resume the side that writes into it.
    const t = port.owner;
    const from = port === t.downPort ? t.upPort : t.downPort;
    if (from.paused) from.resume();
  },
};

function onEnd(this: Side): void {
  this[kRelay].sideEnded(this);
}

function onError(this: Side, err: NodeJS.ErrnoException): void {
  this[kRelay].sideFailed(this, err);
}

function onClose(this: Side): void {
  this[kRelay].sideClosed(this);
}
