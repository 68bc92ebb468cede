import * as crypto from 'node:crypto';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

type OneShot = (algorithm: string, data: string, encoding: 'base64') => string;
// crypto.hash (Node ≥ 20.12) hashes in one call: no Hash object per handshake.
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

/** The Sec-WebSocket-Accept that answers a Sec-WebSocket-Key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  if (oneShot !== undefined) return oneShot('sha1', key + WS_GUID, 'base64');
  return crypto
    .createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}
