import type { Socket } from 'node:net';
import type { RelayMode } from '../config/types.js';
import type { Sweepable } from './idle-sweeper.js';
import { Tunnel, type RelayEnd } from './tunnel.js';
import { InspectRelay } from './inspect.js';
import { NATIVE_RELAY, NativeTunnel } from './native-tunnel.js';
import { NATIVE_INSPECT, NativeInspect } from './native-inspect.js';
import { BARE_TCP, type BareHandle, type RelaySocket } from './handle-io.js';
import { BareConn } from './bare-conn.js';
import type { RelayTally } from './relay-tally.js';
import type { CoreDialRef } from '../upstream/core-dial.js';

/** Everything a relay is told about its session; it never reads config itself. */
export interface RelayLimits {
  /** Pending writes on one side above which reading from the other side pauses. */
  readonly maxBufferedBytes: number;
  /** No traffic either way for this long closes the session, ms (0 = never); the IdleSweeper watches it. */
  readonly idleMs: number;
  /** Inspect mode: largest client message, across fragments (0 = unlimited). */
  readonly maxMessageBytes: number;
  /** Inspect mode: client messages per second (0 = unlimited). */
  readonly messageRate: number;
  /** Inspect mode: upstream messages per second (0 = unlimited). */
  readonly upstreamMessageRate: number;
  /** 0 = unlimited. The relay adds its own ±10% jitter. */
  readonly maxLifetime: number;
  readonly pingInterval: number;
  readonly pongTimeout: number;
  readonly validateUtf8: boolean;
  /** permessage-deflate was negotiated: RSV1 is legal on data frames. */
  readonly rsv1Allowed: boolean;
  /** The gateway's pings and message sizes are counted here (metrics), or not at all (null). */
  readonly tally: RelayTally | null;
}

/** A running relay between one client socket and one upstream socket. */
export interface Relay extends Sweepable {
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly messagesFromClient: number;
  readonly messagesFromUpstream: number;
  /** Starts the flow; the buffers are bytes read ahead during the handshake. */
  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void;
  /**
   * The gateway ends the session. Tunnel mode cuts both sides at once;
   * inspect mode sends close frames with `code` (default 1001) both ways and
   * waits briefly for the close handshake.
   */
  close(reason: string, code?: number): void;
}

export type RelayDone = (relay: Relay, end: RelayEnd) => void;

/** The upstream connection, as a dial leaves it. */
export interface UpstreamConnection {
  /** Reading it makes a socket of a bare `handle` (for good). */
  readonly socket: Socket;
  /** A bare TCP handle no socket owns yet (BareDial), for the native core. */
  readonly handle?: BareHandle | undefined;
  /** The native module's dial (CoreDial), for a relay core to take as it is; it calls coreTaken() once it has. */
  readonly core?: CoreDialRef | undefined;
  coreTaken?(): void;
}

/**
 * Sessions in `mode` take bare upstream handles: the native core needs no
 * socket for a tunnel, and an inspect relay runs on a BareConn.
 */
export function takesBareUpstream(mode: RelayMode): boolean {
  return mode === 'tunnel' ? NATIVE_RELAY : BARE_TCP;
}

/** Sessions in `mode` go to a native core, which takes an upstream the native module dialed. */
export function takesCoreUpstream(mode: RelayMode): boolean {
  return mode === 'tunnel' ? NATIVE_RELAY : NATIVE_INSPECT;
}

export function createRelay(mode: RelayMode, down: RelaySocket, up: UpstreamConnection, limits: RelayLimits, done: RelayDone): Relay {
  if (mode === 'inspect') {
    // The native core takes sessions on plain TCP (NativeInspect falls back to InspectRelay for the rest).
    if (NATIVE_INSPECT) return new NativeInspect(down, up, limits, done);
    return new InspectRelay(down, up.handle !== undefined ? new BareConn(up.handle) : up.socket, limits, done);
  }
  return NATIVE_RELAY ? new NativeTunnel(down, up, limits, done) : new Tunnel(down, up.socket, limits, done);
}
