import type { Socket } from 'node:net';
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Answerable, ClientAnswer } from '../handshake/client-answer.js';
import type { ErrorAnswer } from '../errors.js';
import type { ResponseHead } from '../upstream/response-head.js';
import { HOP_BY_HOP } from '../http/hop-by-hop.js';
import { Dechunker } from './dechunk.js';

const { NGHTTP2_NO_ERROR } = constants;

/**
 * Fields an HTTP/2 response must not carry (RFC 9113 §8.2.2: Node refuses
 * to send them), and Sec-WebSocket-Accept, which answers a key the client
 * never sent (RFC 8441 §5: the 200 stands for it).
 */
const NOT_ON_H2: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'http2-settings', 'sec-websocket-accept']);
/** The 200 to a CONNECT has no body and says nothing of one (RFC 9110 §9.3.6). */
const NOT_ON_ACCEPT: ReadonlySet<string> = new Set([...NOT_ON_H2, 'content-length']);

/** How long a refused stream may take to read its answer before it is reset, as reject.ts lingers on a socket. */
const LINGER_MS = 5_000;

/**
 * The handshake's answers on an HTTP/2 stream (RFC 8441): the upstream's
 * 101 becomes `:status 200` with the upstream's headers (a chosen
 * Sec-WebSocket-Protocol and -Extensions among them); a refusal is its
 * HTTP status with the same body and headers an HTTP/1.1 client gets, then
 * END_STREAM and RST_STREAM(NO_ERROR), which asks the client to stop
 * sending (RFC 9113 §8.1) as closing the connection does on HTTP/1.1.
 * One instance answers every stream.
 */
class StreamAnswer implements ClientAnswer {
  readonly protocol = 'h2';

  accept(down: Answerable, head: ResponseHead): boolean {
    const headers: OutgoingHttpHeaders = { ':status': 200 };
    copyFields(headers, head.lines, head.lower, NOT_ON_ACCEPT);
    return respond(down as ServerHttp2Stream, headers);
  }

  refuse(down: Answerable, status: number, text: string, extra: readonly string[] | undefined): void {
    const body = Buffer.from(text + '\n');
    const headers: OutgoingHttpHeaders = { ':status': status, 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length };
    if (extra !== undefined) copyLines(headers, extra);
    const stream = down as ServerHttp2Stream;
    if (respond(stream, headers)) endAnswer(stream, body);
  }

  refuseWith(down: Answerable, answer: ErrorAnswer): void {
    const headers: OutgoingHttpHeaders = { ':status': answer.status };
    copyLines(headers, answer.headers);
    headers['content-length'] = answer.body.length;
    const stream = down as ServerHttp2Stream;
    if (respond(stream, headers)) endAnswer(stream, answer.body);
  }

  pass(down: Answerable, head: ResponseHead, up: Socket, rest: Buffer | undefined, idleMs: number, done: () => void): void {
    new PassedAnswer(down as ServerHttp2Stream, head, up, idleMs, done).start(rest);
  }
}

export const STREAM_ANSWER: ClientAnswer = new StreamAnswer();

/**
 * An upstream's answer other than 101, passed on to an HTTP/2 client: its
 * status and headers, then its body as the upstream framed it (a length,
 * chunked, or up to its end), without the HTTP/1.1 framing.
 */
class PassedAnswer {
  readonly #stream: ServerHttp2Stream;
  readonly #head: ResponseHead;
  readonly #up: Socket;
  readonly #idleMs: number;
  readonly #done: () => void;
  /** Body bytes still to come (Infinity: up to the upstream's end, or the last chunk). */
  #left: number;
  readonly #chunks: Dechunker | undefined;
  #over = false;

  constructor(stream: ServerHttp2Stream, head: ResponseHead, up: Socket, idleMs: number, done: () => void) {
    this.#stream = stream;
    this.#head = head;
    this.#up = up;
    this.#idleMs = idleMs;
    this.#done = done;
    // 204 and 304 have no body, whatever their headers say (RFC 9112 §6.3).
    const bodiless = head.status === 204 || head.status === 304;
    const chunked = !bodiless && /chunked/i.test(head.get('transfer-encoding') ?? '');
    const length = Number(head.get('content-length') ?? NaN);
    this.#chunks = chunked ? new Dechunker() : undefined;
    this.#left = bodiless ? 0 : !chunked && Number.isFinite(length) ? length : Infinity;
  }

  start(rest: Buffer | undefined): void {
    const stream = this.#stream;
    const up = this.#up;
    const head = this.#head;
    // A status HTTP/2 cannot carry (the dial skips 1xx; 101 is never passed): the upstream failed.
    const headers: OutgoingHttpHeaders = { ':status': head.status >= 200 && head.status <= 599 ? head.status : 502 };
    // Chunked framing wins over a Content-Length beside it (RFC 9112 §6.3), and is gone here.
    copyFields(headers, head.lines, head.lower, this.#chunks === undefined ? NOT_ON_H2 : NOT_ON_ACCEPT);
    up.on('error', noop);
    if (!respond(stream, headers)) {
      this.#end();
      return;
    }
    up.on('data', (chunk: Buffer) => this.#write(chunk));
    up.on('end', () => this.#end());
    up.on('close', () => this.#end());
    // The client left before the answer's end: the upstream connection must not outlive it.
    stream.once('close', () => this.#end());
    stream.on('drain', () => up.resume());
    // As in HTTP passthrough: an upstream silent for idleTimeout is cut.
    if (this.#idleMs > 0) {
      up.setTimeout(this.#idleMs);
      up.on('timeout', () => this.#end());
    }
    if (rest !== undefined && rest.length > 0) this.#write(rest);
    else if (this.#left === 0) this.#end();
    if (!this.#over) up.resume();
  }

  #write(chunk: Buffer): void {
    if (this.#over) return;
    const chunks = this.#chunks;
    if (chunks !== undefined) {
      if (!chunks.feed(chunk, (piece) => this.#send(piece)) || chunks.done) this.#end();
      return;
    }
    const piece = chunk.length > this.#left ? chunk.subarray(0, this.#left) : chunk;
    this.#send(piece);
    this.#left -= piece.length;
    if (this.#left <= 0) this.#end();
  }

  #send(piece: Buffer): void {
    if (!this.#stream.write(piece)) this.#up.pause();
  }

  #end(): void {
    if (this.#over) return;
    this.#over = true;
    this.#up.destroy();
    // A body cut short of its length (or its last chunk) must not look complete: the stream is reset instead.
    const cut = this.#chunks !== undefined ? !this.#chunks.done : this.#left !== Infinity && this.#left > 0;
    if (cut) this.#stream.destroy();
    else endAnswer(this.#stream);
    this.#done();
  }
}

/** Sends the response headers; false (and the stream reset) when the stream is gone or Node refuses them. */
function respond(stream: ServerHttp2Stream, headers: OutgoingHttpHeaders): boolean {
  if (stream.destroyed || stream.closed || stream.headersSent) return false;
  try {
    stream.respond(headers);
    return true;
  } catch {
    stream.destroy();
    return false;
  }
}

/**
 * Ends the answer (after `body`) with END_STREAM, then RST_STREAM(NO_ERROR)
 * once it is all out; a client that does not read it within LINGER_MS has
 * its stream reset.
 */
function endAnswer(stream: ServerHttp2Stream, body?: Buffer): void {
  if (stream.destroyed) return;
  stream.end(body);
  stream.close(NGHTTP2_NO_ERROR);
  if (stream.closed) return;
  const timer = setTimeout(destroyIfOpen, LINGER_MS, stream);
  stream.once('close', () => clearTimeout(timer));
}

function destroyIfOpen(stream: ServerHttp2Stream): void {
  stream.destroy();
}

/** Header lines as the upstream sent them, names lower-cased, repeated names as arrays; `skip` left out. */
function copyFields(out: OutgoingHttpHeaders, lines: ResponseHead['lines'], lower: readonly string[], skip: ReadonlySet<string>): void {
  for (let i = 0; i < lines.length; i++) {
    const name = lower[i]!;
    if (!skip.has(name)) add(out, name, lines[i]![1]);
  }
}

/** "Name: value" lines (the gateway's own extra headers, an auth service's answer). */
function copyLines(out: OutgoingHttpHeaders, lines: readonly string[]): void {
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!NOT_ON_H2.has(name)) add(out, name, line.slice(colon + 1).trim());
  }
}

function add(out: OutgoingHttpHeaders, name: string, value: string): void {
  // Pseudo-headers are the gateway's to set; the parsers upstream of here never produce such a name anyway.
  if (name.charCodeAt(0) === 0x3a) return;
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [String(prev), value];
}

function noop(): void {}
