import { repeatedField, type UpgradeRequest } from './request-head.js';
import { toOriginForm } from './request-target.js';
import { GatewayError } from '../errors.js';

const BASE64_KEY = /^[A-Za-z0-9+/]{22}==$/;

/**
 * RFC 6455 §4.2.1, checked in the RFC's order so the first broken rule is the
 * one reported. Returns undefined when the request is a valid opening handshake.
 */
export function validateUpgrade(req: UpgradeRequest): GatewayError | undefined {
  if (req.method !== 'GET') return malformed(`method ${req.method ?? '?'} is not GET`);
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) {
    return malformed(`HTTP/${req.httpVersion} is not HTTP/1.1`);
  }
  const repeated = repeatedField(req);
  if (repeated !== undefined) return malformed(`repeated ${repeated} header`);
  const h = req.headers;
  if (h.host === undefined || h.host === '') return malformed('missing Host header');
  const target = toOriginForm(req);
  if (target !== undefined) return malformed(target);
  if (!tokenListHas(h.upgrade, 'websocket')) return malformed('Upgrade header is not "websocket"');
  if (!tokenListHas(h.connection, 'upgrade')) return malformed('Connection header does not contain "upgrade"');
  const key = h['sec-websocket-key'];
  // A base64 string of 24 characters ending in "==" is exactly 16 bytes.
  if (typeof key !== 'string' || !BASE64_KEY.test(key)) {
    return malformed('Sec-WebSocket-Key is not 16 bytes in base64');
  }
  if (h['sec-websocket-version'] !== '13') {
    return new GatewayError('VERSION_UNSUPPORTED', `Sec-WebSocket-Version ${String(h['sec-websocket-version'])} is not 13`);
  }
  return undefined;
}

function malformed(detail: string): GatewayError {
  return new GatewayError('HANDSHAKE_MALFORMED', detail);
}

/**
 * Case-insensitive membership in a comma-separated header token list. Only
 * spaces and tabs (OWS) around a token are ignored: String.trim() would also
 * drop \xa0, \v and \f, and "websocket\xa0" is not the token "websocket".
 */
export function tokenListHas(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false;
  const s = Array.isArray(value) ? value.join(',') : value;
  if (s.length === token.length) return s.toLowerCase() === token;
  for (const part of s.split(',')) {
    if (part.replace(OWS_ENDS, '').toLowerCase() === token) return true;
  }
  return false;
}

const OWS_ENDS = /^[ \t]+|[ \t]+$/g;

/** True for requests that try to be WebSocket upgrades, valid or not. */
export function looksLikeUpgrade(req: UpgradeRequest): boolean {
  return req.headers.upgrade !== undefined || req.headers['sec-websocket-key'] !== undefined;
}
