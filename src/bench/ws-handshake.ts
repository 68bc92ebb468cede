// The RFC 6455 opening handshake, both sides, for the load tool's raw client
// and the echo backend: small enough to do by hand, and off the hot path.
import { createHash, randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage } from 'node:http';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A response head larger than this is not a WebSocket server's answer. */
export const MAX_RESPONSE_HEAD = 16 * 1024;

export function acceptKeyFor(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

export function newClientKey(): string {
  return randomBytes(16).toString('base64');
}

/** The GET that asks for the upgrade. `headers` may override Host; the WebSocket headers are ours. */
export function upgradeRequest(url: URL, key: string, protocols: readonly string[], headers: Readonly<Record<string, string>>): string {
  const own = Object.keys(headers).some((h) => h.toLowerCase() === 'host');
  let head = `GET ${url.pathname || '/'}${url.search} HTTP/1.1\r\n`;
  if (!own) head += `Host: ${url.host}\r\n`;
  head += `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  if (protocols.length > 0) head += `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

export interface ResponseHead {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
}

/** Parses "HTTP/1.1 101 …\r\nName: value\r\n…" (without the blank line); undefined when it is not HTTP. */
export function parseResponseHead(text: string): ResponseHead | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  return { status: Number(m[1]), headers };
}

function hasToken(value: string | undefined, token: string): boolean {
  return value !== undefined && value.split(',').some((t) => t.trim().toLowerCase() === token);
}

/** Why a 101 answer is not a valid upgrade (the same checks ws makes), or undefined when it is. */
export function checkUpgradeResponse(res: ResponseHead, key: string, protocols: readonly string[]): string | undefined {
  const h = res.headers;
  if (!hasToken(h.get('upgrade'), 'websocket')) return 'Invalid Upgrade header';
  if (!hasToken(h.get('connection'), 'upgrade')) return 'Invalid Connection header';
  if (h.get('sec-websocket-accept') !== acceptKeyFor(key)) return 'Invalid Sec-WebSocket-Accept header';
  const chosen = h.get('sec-websocket-protocol');
  if (chosen !== undefined) {
    if (protocols.length === 0) return 'Server sent a subprotocol but none was requested';
    if (!protocols.includes(chosen)) return 'Server sent an invalid subprotocol';
  } else if (protocols.length > 0) {
    return 'Server sent no subprotocol';
  }
  if (h.has('sec-websocket-extensions')) return 'Server sent an extension that was not requested';
  return undefined;
}

export interface UpgradeVerdict {
  /** 101 when accepted; else the HTTP status to answer with. */
  readonly status: number;
  /** The full response to write: the 101, or the refusal with its reason as the body. */
  readonly response: string;
}

function refuse(status: number, reason: string): UpgradeVerdict {
  const extra = status === 426 ? 'Sec-WebSocket-Version: 13\r\n' : '';
  const response =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n${extra}` +
    `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`;
  return { status, response };
}

/** Server side: checks an upgrade request (RFC 6455 §4.2.1) and builds the answer. The first offered subprotocol is chosen. */
export function answerUpgrade(req: IncomingMessage): UpgradeVerdict {
  const key = req.headers['sec-websocket-key'];
  if (req.method !== 'GET') return refuse(405, 'the upgrade must be a GET');
  if (!hasToken(req.headers.upgrade, 'websocket')) return refuse(400, 'missing or invalid Upgrade header');
  if (!hasToken(req.headers.connection, 'upgrade')) return refuse(400, 'missing or invalid Connection header');
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{21}[AQgw]==$/.test(key)) return refuse(400, 'missing or invalid Sec-WebSocket-Key header');
  if (req.headers['sec-websocket-version'] !== '13') return refuse(426, 'unsupported Sec-WebSocket-Version (13 only)');
  const offered = req.headers['sec-websocket-protocol'];
  const protocol = offered === undefined ? '' : (offered.split(',')[0]?.trim() ?? '');
  const response =
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKeyFor(key)}\r\n${protocol === '' ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`}\r\n`;
  return { status: 101, response };
}
