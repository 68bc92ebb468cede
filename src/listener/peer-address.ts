import type { Socket } from 'node:net';
import type { RelaySocket } from '../relay/handle-io.js';

/** Where a PROXY protocol header said a connection came from. */
export interface Peer {
  readonly address: string;
  readonly port: number;
}

const kPeer = Symbol('wsgate.peer');

type WithPeer = RelaySocket & { [kPeer]?: Peer; _parent?: WithPeer | null };

/** Records the source a PROXY protocol header gave for this connection. */
export function setPeer(socket: Socket, peer: Peer): void {
  (socket as WithPeer)[kPeer] = peer;
}

/**
 * The address the connection comes from, as the gateway uses it everywhere
 * (IP lists, limits, logs, X-Forwarded-For): the PROXY protocol source when
 * the listener reads one, else the socket's peer. A TLS socket looks at the
 * TCP socket it wraps, where the PROXY header was read.
 */
export function peerAddress(socket: RelaySocket): string {
  const peer = (socket as WithPeer)[kPeer] ?? (socket as WithPeer)._parent?.[kPeer];
  return peer !== undefined ? peer.address : (socket.remoteAddress ?? '');
}

export function peerPort(socket: RelaySocket): number {
  const peer = (socket as WithPeer)[kPeer] ?? (socket as WithPeer)._parent?.[kPeer];
  return peer !== undefined ? peer.port : (socket.remotePort ?? 0);
}
