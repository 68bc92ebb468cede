// The load tool's WebSocket client: a raw socket with the handshake done by
// hand and frames written pre-built, so the tool spends its CPU on the load and
// not on a general-purpose client's machinery.
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { errorKind } from './error-tally.js';
import { encodeClose, encodeFrame, OP_CLOSE, OP_PING, OP_PONG } from './frame-codec.js';
import { FrameReader } from './frame-reader.js';
import type { FrameSink } from './frame-reader.js';
import { checkUpgradeResponse, MAX_RESPONSE_HEAD, newClientKey, parseResponseHead, upgradeRequest } from './ws-handshake.js';

/** What a client reports to the runner that owns it. */
export interface ClientHost {
  clientOpened(client: Client, handshakeMs: number): void;
  /** An echoed message: its payload is buf[start, end), valid during the call only. */
  clientMessage(client: Client, buf: Buffer, start: number, end: number): void;
  /** `failure` is null when the runner asked for the close, else the kind to count. */
  clientEnded(client: Client, failure: string | null): void;
}

/** Where and how every client of a runner connects; built once. */
export interface ClientTarget {
  readonly url: URL;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly protocols: readonly string[];
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly insecure: boolean;
  readonly localAddress: string | undefined;
}

/** Where a client connects; no subprotocols, no extra headers and verified TLS unless told. */
export function clientTarget(opts: {
  url: string;
  protocols?: readonly string[];
  headers?: Readonly<Record<string, string>>;
  timeoutMs: number;
  insecure?: boolean;
  localAddress: string | undefined;
}): ClientTarget {
  const url = new URL(opts.url);
  const tls = url.protocol === 'wss:';
  return {
    url,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
    tls,
    protocols: opts.protocols ?? [],
    headers: opts.headers ?? {},
    timeoutMs: opts.timeoutMs,
    insecure: opts.insecure ?? false,
    localAddress: opts.localAddress,
  };
}

const MAX_PAYLOAD = 256 * 1024 * 1024;
/** Close 1000 with an all-zero mask key; shared (a socket only reads what it is given). */
const CLOSE_NORMAL = encodeClose(1000, true);
const CLOSE_EMPTY = encodeFrame(OP_CLOSE, Buffer.alloc(0), true);

const CONNECTING = 0;
const OPEN = 1;
const ENDED = 2;

/** One WebSocket connection of the load, with the per-connection counters the runner needs. */
export class Client implements FrameSink {
  /** Messages sent and echoes received on this connection. */
  sent = 0;
  received = 0;
  /** Closed loop: send times (performance.now() ms) of outstanding messages, oldest at `head`. */
  readonly sendTimes: Float64Array;
  head = 0;
  /** Position in the runner's live list, or -1. */
  slot = -1;
  readonly #host: ClientHost;
  readonly #socket: Socket;
  readonly #key: string;
  readonly #protocols: readonly string[];
  readonly #startedAt: number;
  #reader: FrameReader | undefined;
  #head = '';
  #state = CONNECTING;
  #closingByUs = false;
  #closeSent = false;
  /** The code of the peer's close frame; 1006 when the connection ended without one. */
  #closeCode = 1006;
  #failure: string | null = null;

  constructor(host: ClientHost, target: ClientTarget, ringSize: number) {
    this.#host = host;
    this.sendTimes = new Float64Array(ringSize);
    this.#startedAt = performance.now();
    this.#key = newClientKey();
    this.#protocols = target.protocols;
    const base = { host: target.host, port: target.port, ...(target.localAddress === undefined ? {} : { localAddress: target.localAddress }) };
    this.#socket = target.tls
      ? tlsConnect({ ...base, servername: /^[\d.:]+$/.test(target.host) ? undefined : target.host, rejectUnauthorized: !target.insecure })
      : netConnect(base);
    const s = this.#socket;
    s.on('error', this.#onError);
    s.on('timeout', this.#onTimeout);
    s.on('data', this.#onData);
    s.on('close', this.#onClose);
    s.setNoDelay(true);
    s.setTimeout(target.timeoutMs);
    // Written once the connection (and TLS) is up: the socket queues it until then.
    s.write(upgradeRequest(target.url, this.#key, target.protocols, target.headers), 'latin1');
  }

  get opened(): boolean {
    return this.#reader !== undefined;
  }

  get outstanding(): number {
    return this.sent - this.received;
  }

  /** Bytes written but not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.#socket.writableLength;
  }

  /** Writes whole frames (already masked); dropped once a close frame is out (they count as lost). */
  write(frames: Buffer): void {
    if (!this.#closeSent) this.#socket.write(frames);
  }

  /** Closed loop: remember a send time; `inflight` bounds how many are outstanding. */
  pushSendTime(t: number): void {
    const ring = this.sendTimes;
    ring[(this.head + this.outstanding) % ring.length] = t;
  }

  /** Closed loop: the send time of the oldest outstanding message (echoes come back in order). */
  shiftSendTime(): number {
    const t = this.sendTimes[this.head] as number;
    this.head = (this.head + 1) % this.sendTimes.length;
    return t;
  }

  /** Graceful close (1000): the peer answers with its close frame, then both ends close; the runner cuts stragglers. */
  close(): void {
    this.#closingByUs = true;
    if (this.#state !== OPEN) {
      this.#socket.destroy();
      return;
    }
    if (this.#closeSent) return;
    this.#closeSent = true;
    this.#socket.write(CLOSE_NORMAL);
  }

  terminate(): void {
    this.#closingByUs = true;
    this.#socket.destroy();
  }

  frameMessage(_opcode: number, buf: Buffer, start: number, end: number): void {
    this.#host.clientMessage(this, buf, start, end);
  }

  frameControl(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_PING) {
      if (!this.#closeSent) this.#socket.write(encodeFrame(OP_PONG, buf.subarray(start, end), true));
      return;
    }
    if (opcode !== OP_CLOSE) return;
    this.#closeCode = end - start >= 2 ? buf.readUInt16BE(start) : 1005;
    // The peer's reason to close wins over a reset that may follow it.
    if (!this.#closingByUs) this.#failure ??= `closed with code ${this.#closeCode}`;
    this.#reader?.stop();
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.#socket.end(this.#closeCode === 1005 ? CLOSE_EMPTY : encodeClose(this.#closeCode, true));
    } else {
      this.#socket.end();
    }
  }

  frameError(closeCode: number, reason: string): void {
    this.#failure ??= `protocol error: ${reason}`;
    this.#closeSent = true;
    this.#socket.end(encodeClose(closeCode, true));
  }

  #fail(kind: string): void {
    this.#failure ??= kind;
    this.#socket.destroy();
  }

  #onData = (chunk: Buffer): void => {
    const reader = this.#reader;
    if (reader !== undefined) {
      reader.feed(chunk);
      return;
    }
    if (this.#state !== CONNECTING) return;
    const before = this.#head.length;
    this.#head += chunk.toString('latin1');
    const at = this.#head.indexOf('\r\n\r\n', Math.max(0, before - 3));
    if (at < 0) {
      if (this.#head.length > MAX_RESPONSE_HEAD) this.#fail('error: handshake response head too large');
      return;
    }
    const res = parseResponseHead(this.#head.slice(0, at));
    // latin1 maps bytes to characters one to one: what follows the head is the end of this chunk.
    const rest = this.#head.length - at - 4;
    this.#head = '';
    if (res === undefined) return this.#fail('error: not an HTTP response');
    if (res.status !== 101) return this.#fail(`handshake status ${res.status}`);
    const invalid = checkUpgradeResponse(res, this.#key, this.#protocols);
    if (invalid !== undefined) return this.#fail(`error: ${invalid}`);
    this.#state = OPEN;
    this.#socket.setTimeout(0);
    const opened = new FrameReader(this, { fromClient: false, maxPayload: MAX_PAYLOAD });
    this.#reader = opened;
    this.#host.clientOpened(this, performance.now() - this.#startedAt);
    if (rest > 0) opened.feed(chunk.subarray(chunk.length - rest));
  };

  #onError = (err: Error): void => {
    this.#failure ??= errorKind(err);
  };

  #onTimeout = (): void => {
    this.#fail('timeout');
  };

  #onClose = (): void => {
    if (this.#state === ENDED) return;
    const wasOpen = this.#state === OPEN;
    this.#state = ENDED;
    let failure: string | null = null;
    if (this.#closingByUs) failure = null;
    else if (!wasOpen) failure = this.#failure ?? 'error: closed before the handshake';
    else failure = this.#failure ?? `closed with code ${this.#closeCode}`;
    this.#host.clientEnded(this, failure);
  };
}
