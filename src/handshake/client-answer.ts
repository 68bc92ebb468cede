import type { Socket } from 'node:net';
import type { ErrorAnswer } from '../errors.js';
import type { ResponseHead } from '../upstream/response-head.js';

/** A downstream the gateway answers at the handshake: a socket, a bare connection or an HTTP/2 stream. */
export type Answerable = object;

/**
 * How a client that did not come as an HTTP/1.1 connection is answered at
 * the handshake. An HTTP/1.1 client gets a response head written on its
 * socket (reject.ts, response-head.ts); a WebSocket over an HTTP/2 stream
 * (RFC 8441, src/http2/) gets HEADERS and DATA frames on its stream instead.
 *
 * Such a downstream carries its answer under a symbol (setClientAnswer), so
 * the HTTP/1.1 path looks for it with one property read per handshake and
 * allocates nothing for it. One answer object serves every stream of its
 * kind: each method is handed the downstream.
 */
export interface ClientAnswer {
  /** What the access log's `protocol` says, e.g. "h2". */
  readonly protocol: string;
  /** The upstream took the WebSocket (its 101 is `head`): the client's success answer. False when the client is gone already. */
  accept(down: Answerable, head: ResponseHead): boolean;
  /** The gateway refuses: `status`, a plain-text body, extra header lines ("Name: value"); then the downstream ends. */
  refuse(down: Answerable, status: number, text: string, extra: readonly string[] | undefined): void;
  /** The gateway refuses with another service's answer (forward auth's). */
  refuseWith(down: Answerable, answer: ErrorAnswer): void;
  /**
   * The upstream answered something other than a 101 on `up` (`rest`: body
   * bytes read with its head): the client gets that status, those headers and
   * that body; `done` runs once, when it is over (or either side is gone).
   * An upstream silent for `idleMs` (0: never cut) ends it too.
   */
  pass(down: Answerable, head: ResponseHead, up: Socket, rest: Buffer | undefined, idleMs: number, done: () => void): void;
}

const kAnswer = Symbol('wsgate.clientAnswer');

type Marked = { [kAnswer]?: ClientAnswer };

/** `down` is answered through `answer` rather than with HTTP/1.1 heads written on it. */
export function setClientAnswer(down: Answerable, answer: ClientAnswer): void {
  (down as Marked)[kAnswer] = answer;
}

/** The downstream's own way of being answered; undefined for an HTTP/1.1 connection. */
export function answerOf(down: Answerable): ClientAnswer | undefined {
  return (down as Marked)[kAnswer];
}
