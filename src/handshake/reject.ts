import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';

/**
 * The one way the gateway answers a handshake it will not complete: a short
 * plain-text response, then the connection is ended. `extra` holds additional
 * header lines (without CRLF), e.g. "Sec-WebSocket-Version: 13".
 */
export function reject(socket: Duplex, status: number, text: string, extra?: readonly string[]): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = text + '\n';
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  if (extra) for (const line of extra) head += line + '\r\n';
  socket.end(head + '\r\n' + body);
  // A client that never reads must not keep the socket (and its buffers) alive.
  const timer = setTimeout(destroyIfOpen, LINGER_MS, socket);
  socket.once('close', () => clearTimeout(timer));
}

const LINGER_MS = 5_000;

function destroyIfOpen(socket: Duplex): void {
  socket.destroy();
}
