import { getSystemErrorName } from 'node:util';
import type { Relay, RelayDone, RelayLimits, UpstreamConnection } from './relay.js';
import { Tunnel, type RelayEnd } from './tunnel.js';
import {
  bufferedBytes,
  coreClient,
  HANDLE_IO,
  readEnded,
  stopReading,
  takeBuffered,
  tcpHandleOf,
  writeBare,
  type Handle,
  type RelaySocket,
} from './handle-io.js';
import type { CoreDialRef } from '../upstream/core-dial.js';
import { BareConn } from './bare-conn.js';
import { nativeModule } from './native-module.js';

// Tunnel mode on the native relay core (native/relay.c). Once the 101 is
// out, the session's two sockets are handed to the core as duplicated file
// descriptors and Node's own sockets are closed: from then on the bytes are
// relayed on Node's event loop without entering JavaScript per chunk, and
// the session is heard from again when it is over. That puts tunnel mode on
// a par with nginx's CPU per relayed message (bench/README.md) and drops the
// two net.Socket objects a session would otherwise keep.
//
// Where the core cannot take a session (it was not built, a socket is TLS,
// not a TCP handle, or already ended, or a write of the handover did not
// finish at once), the session runs on the JavaScript Tunnel, unchanged.
// WSGATE_RELAY_IO=handle (or =stream) keeps every session in JavaScript.

/** A session inside the core; only ever passed back to it. */
interface CoreSession {
  readonly __coreSession: never;
}

type DoneFn = (owner: NativeTunnel, side: number, kind: number, errno: number, op: number, fromClient: number, fromUpstream: number) => void;

interface Core {
  setDone(fn: DoneFn): void;
  /** The upstream: a descriptor to duplicate, or a dial of the native module, taken as it is. */
  /** The client: a descriptor to duplicate, or a connection the native module accepted, taken as it is. */
  open(owner: NativeTunnel, client: number | object, upstream: number | CoreDialRef, readSize: number): CoreSession;
  close(session: CoreSession): void;
  active(session: CoreSession, clear: boolean): boolean;
  bytes(session: CoreSession, side: 0 | 1): number;
  openSessions(): number;
}

// How a session ended, as native/relay.c reports it.
const END_EOF = 1;
const END_ERROR = 2;
const END_GATEWAY = 3;
/** The core never reads more than this at once; it is also what a direction may hold back. */
const READ_MAX = 65_536;

/** The core, or why there is none (undefined: turned off by WSGATE_RELAY_IO). */
function loadCore(): Core | string | undefined {
  const io = process.env.WSGATE_RELAY_IO;
  if (io === 'handle' || io === 'stream') return undefined;
  if (!HANDLE_IO) return 'this Node.js lacks the socket internals the handover needs';
  const core = nativeModule();
  if (typeof core === 'string') return core;
  (core as Core).setDone(sessionDone);
  return core as Core;
}

const loaded = loadCore();
const core = typeof loaded === 'object' ? loaded : null;
/** Tunnel-mode sessions on plain TCP run in the native core. */
export const NATIVE_RELAY: boolean = core !== null;
/** Why the core is missing when it should be there (for the start log). */
export const NATIVE_RELAY_MISSING: string | undefined = typeof loaded === 'string' ? loaded : undefined;

/** Sessions the core still runs (for tests: they are not Node handles). */
export function coreSessions(): number {
  return core?.openSessions() ?? 0;
}

export class NativeTunnel implements Relay {
  readonly idleMs: number;
  quietMs = 0;
  // Tunnel mode does not see messages.
  readonly messagesFromClient = 0;
  readonly messagesFromUpstream = 0;
  /** Until the handover. */
  #down: RelaySocket | null;
  #up: UpstreamConnection | null;
  readonly #limits: RelayLimits;
  readonly #onEnd: RelayDone;
  #session: CoreSession | null = null;
  /** The JavaScript tunnel, for a session the core could not take. */
  #js: Tunnel | null = null;
  #reason: string | undefined;
  /** Bytes relayed outside the core: the handover's, then the core's final count. */
  #fromClient = 0;
  #fromUpstream = 0;

  constructor(down: RelaySocket, up: UpstreamConnection, limits: RelayLimits, done: RelayDone) {
    this.#down = down;
    this.#up = up;
    this.#limits = limits;
    this.idleMs = limits.idleMs;
    this.#onEnd = done;
  }

  get bytesFromClient(): number {
    return this.#fromClient + (this.#session !== null ? core!.bytes(this.#session, 0) : (this.#js?.bytesFromClient ?? 0));
  }

  get bytesFromUpstream(): number {
    return this.#fromUpstream + (this.#session !== null ? core!.bytes(this.#session, 1) : (this.#js?.bytesFromUpstream ?? 0));
  }

  /** Traffic since the idle sweeper last cleared it. */
  get active(): boolean {
    if (this.#session !== null) return core!.active(this.#session, false);
    return this.#js?.active ?? false;
  }

  set active(value: boolean) {
    if (this.#session !== null) {
      if (!value) core!.active(this.#session, true);
    } else if (this.#js !== null) this.#js.active = value;
  }

  /** The session runs in the core from here, or in JavaScript if the core cannot take it. */
  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    const down = this.#down!;
    const up = this.#up!;
    const downHandle = down instanceof BareConn ? down.handle : tcpHandleOf(down);
    const dialed = up.core;
    // A dial of the native module (src/upstream/core-dial.ts) goes to the core as it is, unless bytes must go to it first.
    if (dialed !== undefined && downHandle !== null && !toUpstream?.length && bufferedBytes(down) === 0 && !readEnded(down) && !down.destroyed) {
      this.#startDialed(down, downHandle, dialed, toClient);
      return;
    }
    // A bare dial (src/upstream/raw-dial.ts) leaves a handle and no socket (a core dial is made one here).
    const bare = up.handle;
    const upSocket = bare === undefined ? up.socket : null;
    const upHandle = bare ?? tcpHandleOf(upSocket!);
    if (downHandle === null || upHandle === null || readEnded(down) || (upSocket !== null && readEnded(upSocket))) {
      this.#runInJs(toClient, toUpstream);
      return;
    }
    // Nothing more is read into the sockets; what they hold goes out now, in order.
    stopReading(downHandle);
    stopReading(upHandle);
    let held = false;
    const toDown = (chunk: Buffer): void => void down.write(chunk);
    const toUp =
      upSocket !== null
        ? (chunk: Buffer): void => void upSocket.write(chunk)
        : (chunk: Buffer): void => {
            // Not at once: libuv holds it, and the JavaScript tunnel carries on behind it.
            if (writeBare(bare!, chunk, noop) !== 0) held = true;
          };
    this.#fromUpstream = handOver(toClient, toDown) + (upSocket === null ? 0 : takeBuffered(upSocket, toDown));
    this.#fromClient = handOver(toUpstream, toUp) + takeBuffered(down, toUp);
    if (held || down.writableLength > 0 || down.destroyed || (upSocket !== null && (upSocket.writableLength > 0 || upSocket.destroyed))) {
      // A write is waiting for the peer: the JavaScript tunnel finishes it and carries on.
      this.#runInJs(undefined, undefined);
      return;
    }
    const readSize = Math.min(READ_MAX, Math.max(1, this.#limits.maxBufferedBytes));
    try {
      this.#session = core!.open(this, coreClient(downHandle), upHandle.fd, readSize);
    } catch {
      // Out of descriptors for the duplicates, say: this session stays in JavaScript.
      this.#runInJs(undefined, undefined);
      return;
    }
    // The core holds duplicates of both descriptors: closing Node's leaves
    // the connections open, and in the core's hands only.
    down.destroy();
    if (bare !== undefined) bare.close();
    else upSocket!.destroy();
    this.#down = this.#up = null;
  }

  #startDialed(down: RelaySocket, downHandle: Handle, dialed: CoreDialRef, toClient: Buffer | undefined): void {
    stopReading(downHandle);
    if (down instanceof BareConn) down.release();
    this.#fromUpstream = handOver(toClient, (chunk) => void down.write(chunk));
    if (down.writableLength > 0 || down.destroyed) {
      this.#runInJs(undefined, undefined);
      return;
    }
    const readSize = Math.min(READ_MAX, Math.max(1, this.#limits.maxBufferedBytes));
    try {
      this.#session = core!.open(this, coreClient(downHandle), dialed, readSize);
    } catch {
      this.#runInJs(undefined, undefined);
      return;
    }
    this.#up!.coreTaken!();
    down.destroy();
    this.#down = this.#up = null;
  }

  /** The gateway ends the session (idle, shutdown, drain): both sides are cut now. */
  close(reason: string): void {
    if (this.#js !== null) this.#js.close(reason);
    else if (this.#session !== null) {
      this.#reason ??= reason;
      core!.close(this.#session);
    }
  }

  onIdle(): void {
    this.close('idle timeout');
  }

  #runInJs(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    this.#js = new Tunnel(this.#down!, this.#up!.socket, this.#limits, (_, end) => this.#onEnd(this, end));
    this.#down = this.#up = null;
    this.#js.start(toClient, toUpstream);
  }

  /** @internal the core reports the end of the session */
  coreDone(side: number, kind: number, errno: number, op: number, fromClient: number, fromUpstream: number): void {
    this.#session = null;
    this.#fromClient += fromClient;
    this.#fromUpstream += fromUpstream;
    let end: RelayEnd;
    if (kind === END_GATEWAY) end = { closedBy: 'gateway', reason: this.#reason ?? 'closed' };
    else {
      const closedBy = side === 0 ? 'client' : 'upstream';
      if (kind === END_EOF) end = { closedBy, reason: 'end' };
      else if (kind === END_ERROR) end = { closedBy, reason: errorReason(errno, op) };
      else end = { closedBy, reason: 'reset' };
    }
    this.#onEnd(this, end);
  }
}

function sessionDone(owner: NativeTunnel, side: number, kind: number, errno: number, op: number, fromClient: number, fromUpstream: number): void {
  owner.coreDone(side, kind, errno, op, fromClient, fromUpstream);
}

/** As the JavaScript tunnel words it: resets are "reset", the rest "error: read ETIMEDOUT". */
function errorReason(errno: number, op: number): string {
  let name: string;
  try {
    name = getSystemErrorName(-errno);
  } catch {
    name = `errno ${errno}`;
  }
  if (name === 'ECONNRESET' || name === 'EPIPE') return 'reset';
  return `error: ${op === 0 ? 'read' : 'write'} ${name}`;
}

/** Writes bytes read ahead during the handshake; returns their count. */
function handOver(bytes: Buffer | undefined, send: (chunk: Buffer) => void): number {
  if (bytes === undefined || bytes.length === 0) return 0;
  send(bytes);
  return bytes.length;
}

function noop(): void {}
