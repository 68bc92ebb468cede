import { performance } from 'node:perf_hooks';
import type { ClientRequest, IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import type { ClientOptions } from 'ws';
import { errorKind } from './error-tally.js';

/** What a client reports to the runner that owns it. */
export interface ClientHost {
  clientOpened(client: Client, handshakeMs: number): void;
  clientMessage(client: Client, data: Buffer): void;
  /** `failure` is null when the runner asked for the close, else the kind to count. */
  clientEnded(client: Client, failure: string | null): void;
}

/** Zero mask: a valid key that lets ws skip the copy and XOR on every send (the load tool's CPU is not the subject). */
function zeroMask(mask: Buffer): void {
  mask[0] = 0;
  mask[1] = 0;
  mask[2] = 0;
  mask[3] = 0;
}

export function clientOptions(opts: {
  headers: Readonly<Record<string, string>>;
  timeoutMs: number;
  insecure: boolean;
  localAddress: string | undefined;
}): ClientOptions {
  const options: ClientOptions = {
    perMessageDeflate: false,
    handshakeTimeout: opts.timeoutMs,
    headers: { ...opts.headers },
    rejectUnauthorized: !opts.insecure,
    generateMask: zeroMask,
    followRedirects: false,
    maxPayload: 256 * 1024 * 1024,
  };
  if (opts.localAddress !== undefined) options.localAddress = opts.localAddress;
  return options;
}

/** One WebSocket connection of the load, with the per-connection counters the runner needs. */
export class Client {
  readonly ws: WebSocket;
  /** Messages sent and echoes received on this connection. */
  sent = 0;
  received = 0;
  /** Closed loop: send times (performance.now() ms) of outstanding messages, oldest at `head`. */
  readonly sendTimes: Float64Array;
  head = 0;
  /** Position in the runner's live list, or -1. */
  slot = -1;
  #host: ClientHost;
  #startedAt: number;
  #opened = false;
  #closingByUs = false;
  #failure: string | null = null;
  #ended = false;

  constructor(host: ClientHost, url: string, protocols: readonly string[], options: ClientOptions, ringSize: number) {
    this.#host = host;
    this.sendTimes = new Float64Array(ringSize);
    this.#startedAt = performance.now();
    this.ws = protocols.length > 0 ? new WebSocket(url, [...protocols], options) : new WebSocket(url, options);
    this.ws.on('error', this.#onError);
    this.ws.on('unexpected-response', this.#onUnexpectedResponse);
    this.ws.on('open', this.#onOpen);
    this.ws.on('message', this.#onMessage);
    this.ws.on('close', this.#onClose);
  }

  get opened(): boolean {
    return this.#opened;
  }

  get outstanding(): number {
    return this.sent - this.received;
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

  /** Graceful close (1000); the runner terminates stragglers. */
  close(): void {
    this.#closingByUs = true;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    else this.ws.terminate();
  }

  terminate(): void {
    this.#closingByUs = true;
    this.ws.terminate();
  }

  #onOpen = (): void => {
    this.#opened = true;
    this.#host.clientOpened(this, performance.now() - this.#startedAt);
  };

  #onMessage = (data: WebSocket.RawData): void => {
    this.#host.clientMessage(this, data as Buffer);
  };

  #onError = (err: Error): void => {
    this.#failure ??= errorKind(err);
  };

  #onUnexpectedResponse = (_req: ClientRequest, res: IncomingMessage): void => {
    this.#failure ??= `handshake status ${res.statusCode ?? 0}`;
    res.resume();
    this.ws.terminate();
  };

  #onClose = (code: number): void => {
    if (this.#ended) return;
    this.#ended = true;
    let failure: string | null = null;
    if (this.#closingByUs) failure = null;
    else if (!this.#opened) failure = this.#failure ?? 'error: closed before the handshake';
    else failure = this.#failure ?? `closed with code ${code}`;
    this.#host.clientEnded(this, failure);
  };
}
