import type { Duplex } from 'node:stream';
import type { BareConn } from '../relay/bare-conn.js';
import { STATUS_CODES } from 'node:http';
import type { GatewayError } from '../errors.js';
import { answerOf } from './client-answer.js';

/** A connection the gateway answers on. */
type Answerable = Duplex | BareConn;

/**
 * The one way the gateway answers a handshake it will not complete: a short
 * plain-text response, then the connection is ended. `extra` holds additional
 * header lines (without CRLF), e.g. "Sec-WebSocket-Version: 13".
 */
export function reject(socket: Answerable, status: number, text: string, extra?: readonly string[]): void {
  if (socket.destroyed) return;
  // An HTTP/2 stream is answered with frames (src/http2/stream-answer.ts).
  const other = answerOf(socket);
  if (other !== undefined) return other.refuse(socket, status, text, extra);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = text + '\n';
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  if (extra) for (const line of extra) head += line + '\r\n';
  socket.end(head + '\r\n' + body);
  linger(socket);
}

/** Answers with a catalogue error: its own answer when it carries one, else status, text and extra headers. */
export function rejectError(socket: Answerable, err: GatewayError): void {
  const answer = err.answer;
  if (answer === undefined) {
    reject(socket, err.spec.httpStatus, err.spec.text, err.headers);
    return;
  }
  if (socket.destroyed) return;
  const other = answerOf(socket);
  if (other !== undefined) return other.refuseWith(socket, answer);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: ${answer.body.length}\r\n`;
  for (const line of answer.headers) head += line + '\r\n';
  // The service's header values come decoded one character per byte (undici reads them as latin1).
  socket.write(head + '\r\n', 'latin1');
  socket.end(answer.body);
  linger(socket);
}

/** A client that never reads must not keep the socket (and its buffers) alive. */
function linger(socket: Answerable): void {
  const timer = setTimeout(destroyIfOpen, LINGER_MS, socket);
  socket.once('close', () => clearTimeout(timer));
}

const LINGER_MS = 5_000;

function destroyIfOpen(socket: Answerable): void {
  socket.destroy();
}
