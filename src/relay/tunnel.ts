import type { Socket } from 'node:net';
import type { Relay, RelayDone, RelayLimits } from './relay.js';
import { buffered, pauseReading, readingPaused, resumeReading, send, startIo, type IoHandlers } from './handle-io.js';

// Tunnel mode: bytes both ways, untouched. This is the hot path, so the
// listeners are module-level functions bound to the socket (`this`), the
// per-socket state lives on the socket under symbols, and a chunk is written
// to the other side exactly as it was read: no copy, no allocation. Reads and
// writes go through handle-io.ts, beneath Node's streams where it can.

const kPeer = Symbol('wsgate.peer');
const kRelay = Symbol('wsgate.relay');

interface Side extends Socket {
  [kPeer]: Side;
  [kRelay]: Tunnel;
}

export type Party = 'client' | 'upstream' | 'gateway';


export interface RelayEnd {
  readonly closedBy: Party;
  /** "end" (clean FIN), "reset", "error: …", or the gateway's own reason. */
  readonly reason: string;
}

/** How long a half-closed pair may linger before both sides are cut. */
export const LINGER_MS = 1_000;

export class Tunnel implements Relay {
  readonly down: Side;
  readonly up: Side;
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

  constructor(down: Socket, up: Socket, limits: RelayLimits, done: RelayDone) {
    this.down = down as Side;
    this.up = up as Side;
    this.maxBuffered = limits.maxBufferedBytes;
    this.idleMs = limits.idleMs;
    this.#onEnd = done;
    for (const [side, peer] of [
      [this.down, this.up],
      [this.up, this.down],
    ] as const) {
      side[kPeer] = peer;
      side[kRelay] = this;
      side.on('error', onError);
      side.on('end', onEnd);
      side.on('close', onClose);
    }
  }

  /** Starts the flow; `toClient`/`toUpstream` are bytes read ahead during the handshake. */
  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    startIo(this.up, IO, toClient);
    startIo(this.down, IO, toUpstream);
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
    const peer = side[kPeer];
    if (!peer.writableEnded) peer.end();
    this.#lingerThenCut();
  }

  /** @internal */
  sideFailed(side: Side, err: NodeJS.ErrnoException): void {
    const by = side === this.down ? 'client' : 'upstream';
    this.#record(by, err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error: ${err.message}`);
    side.destroy();
    side[kPeer].destroy();
  }

  /** @internal */
  sideClosed(side: Side): void {
    if (--this.#open === 0) {
      clearTimeout(this.#linger);
      this.#onEnd(this, this.#end ?? { closedBy: side === this.down ? 'client' : 'upstream', reason: 'reset' });
      return;
    }
    this.#record(side === this.down ? 'client' : 'upstream', 'reset');
    const peer = side[kPeer];
    // Let a peer that is flushing its final bytes (say, a close frame) finish, briefly.
    if (peer.writableEnded && buffered(peer) > 0) this.#lingerThenCut();
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

function relay(from: Side, chunk: Buffer): void {
  const peer = from[kPeer];
  const t = from[kRelay];
  if (from === t.down) t.bytesFromClient += chunk.length;
  else t.bytesFromUpstream += chunk.length;
  t.active = true;
  // Pause once the configured budget is used; resume on drain.
  if (send(peer, chunk) >= t.maxBuffered) pauseReading(from);
}

const IO: IoHandlers = {
  chunk: relay as IoHandlers['chunk'],
  drain(this: Socket): void {
    const peer = (this as Side)[kPeer];
    if (readingPaused(peer)) resumeReading(peer);
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
