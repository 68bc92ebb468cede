// The gateway's own pings to quiet clients, and recognition of the pongs that
// answer them (those are dropped, never forwarded upstream: the upstream did
// not ask). A ping's payload is a fixed "wsgate" tag and a sequence number;
// a pong echoes it (RFC 6455 §5.5.3), so the tag alone tells ours apart.

import { encodePing } from './frames.js';

const TAG = Buffer.from('wsgate', 'latin1');
const PAYLOAD_SIZE = TAG.length + 4;

/** An unmasked Ping frame for a client, tagged with `seq`. */
export function gatewayPing(seq: number): Buffer {
  const payload = Buffer.allocUnsafe(PAYLOAD_SIZE);
  TAG.copy(payload, 0);
  payload.writeUInt32BE(seq >>> 0, TAG.length);
  return encodePing(payload, false);
}

/** Whether a Pong's (unmasked) payload answers one of the gateway's pings. */
export function isGatewayPong(payload: Buffer): boolean {
  return payload.length === PAYLOAD_SIZE && payload.compare(TAG, 0, TAG.length, 0, TAG.length) === 0;
}
