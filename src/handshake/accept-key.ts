import * as crypto from 'node:crypto';
import { nativeModule } from '../relay/native-module.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

type OneShot = (algorithm: string, data: string, encoding: 'base64') => string;
// crypto.hash (Node ≥ 20.12) hashes in one call: no Hash object per handshake.
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

type NativeAcceptKey = (key: string) => string | undefined;
/** The native module's (native/accept-key.c): a third of crypto.hash()'s cost; undefined for a key too long for it. */
const native = ((): NativeAcceptKey | undefined => {
  const mod = nativeModule();
  return typeof mod === 'object' ? (mod as { acceptKey?: NativeAcceptKey }).acceptKey : undefined;
})();

/** The Sec-WebSocket-Accept that answers a Sec-WebSocket-Key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  const fast = native?.(key);
  if (fast !== undefined) return fast;
  if (oneShot !== undefined) return oneShot('sha1', key + WS_GUID, 'base64');
  return crypto
    .createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
}
