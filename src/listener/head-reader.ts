import type { Socket } from 'node:net';
import { BareConn, type HeadSink } from '../relay/bare-conn.js';
import type { RelaySocket } from '../relay/handle-io.js';
import { parseUpgradeHead, type RequestHead } from '../handshake/request-head.js';

export interface HeadReaderHooks {
  /** A plain WebSocket upgrade; `rest` holds the bytes read behind its head. */
  upgrade(req: RequestHead, socket: RelaySocket, rest: Buffer): void;
  /**
   * Anything else: the bytes read so far are back in the socket (a BareConn's
   * handle now has one), for Node's HTTP server to parse.
   */
  other(socket: Socket): void;
  /** Head too large, too slow, or cut short: answered as Node's server would report it. */
  clientError(err: NodeJS.ErrnoException, socket: RelaySocket): void;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const GET = Buffer.from('GET ');

/**
 * Reads request heads off new plain connections and sends WebSocket upgrades
 * straight to the gateway. Node's http.Server costs a parser, an
 * IncomingMessage and its per-socket bookkeeping on every connection, a
 * sizeable part of a handshake; here it is one Buffer search and a small
 * parse. Whatever is not a plain upgrade (see parseUpgradeHead) is put back
 * and given to the HTTP server, so passthrough and errors are Node's own.
 *
 * The limits are the HTTP server's: at most `maxBytes` of head (431 past
 * it), and the whole head within `timeoutMs` (408), checked by one sweep
 * for all connections as Node's server does, not a timer each. A reload
 * changes both (setLimits) and they behave as Node's own do: the size limit
 * is taken by each connection as it arrives, the timeout holds every head
 * still being read.
 */
export class HeadReaders {
  /**
   * Heads in progress, in arrival order: a list through the readers, not a Set. There are seldom
   * more than a few at once, and a Set that empties and refills on every handshake reallocates its
   * table each time it empties.
   */
  #first: HeadReader | undefined;
  #last: HeadReader | undefined;
  #sweep: NodeJS.Timeout | undefined;
  #maxBytes: number;
  #timeoutMs: number;

  constructor(
    maxBytes: number,
    timeoutMs: number,
    readonly hooks: HeadReaderHooks,
  ) {
    this.#maxBytes = maxBytes;
    this.#timeoutMs = timeoutMs;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** A reload's limits, for the connections that arrive from now on (and, the timeout, for heads in progress). */
  setLimits(maxBytes: number, timeoutMs: number): void {
    this.#maxBytes = maxBytes;
    if (timeoutMs === this.#timeoutMs) return;
    this.#timeoutMs = timeoutMs;
    // The sweep's period follows the timeout: a lowered one must be enforced at about its new value.
    if (this.#sweep !== undefined) {
      this.stop();
      this.#startSweep();
    }
  }

  read(socket: RelaySocket): void {
    const reader = new HeadReader(this, socket);
    reader.listed = true;
    reader.prev = this.#last;
    if (this.#last === undefined) this.#first = reader;
    else this.#last.next = reader;
    this.#last = reader;
    if (socket instanceof BareConn) socket.resume();
    if (this.#sweep === undefined) this.#startSweep();
  }

  #startSweep(): void {
    this.#sweep = setInterval(sweep, sweepEvery(this.#timeoutMs), this).unref();
  }

  /** @internal the reader is done with its head (a second call is a no-op) */
  done(reader: HeadReader): void {
    if (!reader.listed) return;
    reader.listed = false;
    const { prev, next } = reader;
    if (prev === undefined) this.#first = next;
    else prev.next = next;
    if (next === undefined) this.#last = prev;
    else next.prev = prev;
    reader.prev = reader.next = undefined;
  }

  /** @internal */
  expire(now: number): void {
    const timeout = this.#timeoutMs;
    for (let reader = this.#first; reader !== undefined;) {
      // A timed-out reader leaves the list, so its successor is taken first (and skipped if the
      // timeout's handling ended it too: the next sweep goes on from the list as it is then).
      const next = reader.next;
      if (reader.listed && now - reader.since >= timeout) reader.timedOut();
      reader = next;
    }
    if (this.#first === undefined) this.stop();
  }

  /** Stops the sweep and drops the connections still sending their head. */
  close(): void {
    let reader = this.#first;
    this.#first = this.#last = undefined;
    while (reader !== undefined) {
      const next = reader.next;
      reader.listed = false;
      reader.prev = reader.next = undefined;
      reader.socket.destroy();
      reader = next;
    }
    this.stop();
  }

  stop(): void {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }
}

function sweep(readers: HeadReaders): void {
  readers.expire(Date.now());
}

/** How often heads are checked for the timeout: a quarter of it, within 50 ms .. 1 s (as the listener's HTTP server does). */
export function sweepEvery(timeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4)));
}

class HeadReader implements HeadSink {
  readonly since = Date.now();
  /** @internal HeadReaders' list */
  listed = false;
  prev: HeadReader | undefined;
  next: HeadReader | undefined;
  /** The limit when the connection arrived: a reload does not change it under a head in progress (nor does Node's parser). */
  readonly maxBytes: number;
  #buf: Buffer | undefined;
  /** A net.Socket's listeners (a BareConn reports to the reader itself). */
  #listeners: SocketListeners | undefined;

  constructor(
    readonly owner: HeadReaders,
    readonly socket: RelaySocket,
  ) {
    this.maxBytes = owner.maxBytes;
    if (socket instanceof BareConn) {
      socket.sink = this;
      return;
    }
    const on = (this.#listeners = {
      data: (chunk: Buffer) => this.data(chunk),
      end: () => this.end(),
      error: () => {
        this.#detach();
        this.socket.destroy();
      },
      close: () => this.closed(),
    });
    socket.on('data', on.data);
    socket.on('end', on.end);
    socket.on('error', on.error);
    socket.on('close', on.close);
  }

  data(chunk: Buffer): void {
    const before = this.#buf === undefined ? 0 : this.#buf.length;
    const buf = (this.#buf = before === 0 ? chunk : Buffer.concat([this.#buf!, chunk]));
    if (!startsLikeGet(buf)) return this.#other();
    const end = buf.indexOf(CRLFCRLF, Math.max(0, before - 3));
    if (end === -1 || end + 4 > this.maxBytes) {
      if (buf.length > this.maxBytes) this.#fail('HPE_HEADER_OVERFLOW', 'request head larger than maxHeaderBytes');
      return;
    }
    const req = parseUpgradeHead(buf.toString('latin1', 0, end), this.socket);
    if (req === undefined) return this.#other();
    this.#detach();
    const socket = this.socket;
    if (socket instanceof BareConn) socket.hold();
    else socket.pause();
    this.owner.hooks.upgrade(req, socket, buf.subarray(end + 4));
  }

  end(): void {
    if (this.#buf === undefined) {
      this.#detach();
      this.socket.destroy();
    } else {
      this.#fail('HPE_INVALID_EOF_STATE', 'connection ended inside the request head');
    }
  }

  closed(): void {
    this.#detach();
  }

  timedOut(): void {
    this.#fail('ERR_HTTP_REQUEST_TIMEOUT', 'request head not received within handshakeTimeout');
  }

  #fail(code: string, message: string): void {
    this.#detach();
    this.owner.hooks.clientError(Object.assign(new Error(message), { code }), this.socket);
  }

  #other(): void {
    this.#detach();
    const socket = this.socket;
    const buf = this.#buf;
    this.#buf = undefined;
    if (socket instanceof BareConn) {
      this.owner.hooks.other(socket.toSocket(buf));
      return;
    }
    socket.pause();
    if (buf !== undefined) socket.unshift(buf);
    this.owner.hooks.other(socket);
  }

  #detach(): void {
    const socket = this.socket;
    const on = this.#listeners;
    if (on === undefined) {
      if (socket instanceof BareConn && socket.sink === this) socket.sink = undefined;
    } else {
      socket.off('data', on.data);
      socket.off('end', on.end);
      socket.off('error', on.error);
      socket.off('close', on.close);
      this.#listeners = undefined;
    }
    this.owner.done(this);
  }
}

interface SocketListeners {
  readonly data: (chunk: Buffer) => void;
  readonly end: () => void;
  readonly error: () => void;
  readonly close: () => void;
}

/** The first bytes could still begin "GET ". */
function startsLikeGet(buf: Buffer): boolean {
  const n = Math.min(buf.length, 4);
  for (let i = 0; i < n; i++) if (buf[i] !== GET[i]) return false;
  return true;
}
