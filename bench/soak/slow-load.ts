// Slow consumers for the soak: connections to the flooding backend (it sends
// to them without pause, as far as its own socket takes it) that read for a
// few seconds, stop reading, and read again. Pauses alternate between short
// ones, which the gateway must ride out (backpressure: it stops reading the
// backend once `maxBufferedBytes` waits for the client), and long ones, past
// the keepalive's ping and pong timeout, after which the gateway may close the
// connection (1001, or a cut when even the close frame cannot get out). The
// `ws` library is used here: its pause() and resume() stop and restart reading
// the socket, and these few connections do not need the raw client's speed.
import WebSocket from 'ws';
import { waitUntil } from '../../src/bench/wait-until.js';
import { emptyCounts } from './chatty-load.js';
import type { CloseTally } from './close-tally.js';
import type { LoadCounts, LoadSpec } from './load-protocol.js';

const READ_MIN_MS = 4000;
const READ_MAX_MS = 8000;
/** After a long pause, the close the gateway sent meanwhile is read within this. */
const AFTER_LONG_PAUSE_MS = 15_000;
const RECONNECT_MS = 1000;
const STOP_WAIT_MS = 3000;

type SlowState = 'connecting' | 'reading' | 'short pause' | 'long pause';

class SlowClient {
  state: SlowState = 'connecting';
  /** When the last long pause ended (ms since the epoch), 0 if none. */
  resumedFromLong = 0;
  nextLong: boolean;
  timer: NodeJS.Timeout | undefined;
  error: string | undefined;
  constructor(readonly ws: WebSocket) {
    this.nextLong = Math.random() < 0.5;
  }
}

export class SlowLoad {
  readonly #spec: LoadSpec;
  readonly #tally: CloseTally;
  readonly #url: string;
  readonly #clients = new Set<SlowClient>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopping = false;
  #open = 0;
  #opened = 0;
  #handshakeFailures = 0;
  #dropped = 0;
  #bytes = 0;
  #pauses = 0;
  #pings = 0;

  constructor(spec: LoadSpec, tally: CloseTally) {
    this.#spec = spec;
    this.#tally = tally;
    this.#url = new URL(spec.slowPath, spec.url).toString();
  }

  start(): void {
    for (let i = 0; i < this.#spec.connections; i++) this.#later(() => this.#connect(), Math.random() * 1000);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const c of this.#clients) {
      clearTimeout(c.timer);
      c.ws.resume();
      c.ws.close(1000);
    }
    await waitUntil(
      () => this.#clients.size === 0,
      STOP_WAIT_MS,
      () => false,
    );
    for (const c of this.#clients) c.ws.terminate();
  }

  abort(): void {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    for (const c of this.#clients) {
      clearTimeout(c.timer);
      c.ws.terminate();
    }
  }

  counts(): LoadCounts {
    return {
      ...emptyCounts(),
      open: this.#open,
      opened: this.#opened,
      handshakeFailures: this.#handshakeFailures,
      dropped: this.#dropped,
      pings: this.#pings,
      slowBytes: this.#bytes,
      slowPauses: this.#pauses,
    };
  }

  #later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#stopping) fn();
    }, ms);
    this.#timers.add(t);
  }

  #connect(): void {
    const ws = new WebSocket(this.#url, {
      handshakeTimeout: this.#spec.handshakeTimeoutMs,
      ...(this.#spec.localAddress === undefined ? {} : { localAddress: this.#spec.localAddress }),
    });
    const c = new SlowClient(ws);
    this.#clients.add(c);
    ws.on('open', () => {
      this.#open++;
      this.#opened++;
      this.#read(c);
    });
    ws.on('message', (data: Buffer) => {
      this.#bytes += data.length;
    });
    ws.on('ping', () => {
      this.#pings++;
    });
    ws.on('error', (err: Error & { code?: string }) => {
      c.error ??= err.code ?? err.message;
    });
    ws.on('close', (code: number) => this.#ended(c, code));
  }

  #read(c: SlowClient): void {
    c.state = 'reading';
    c.timer = setTimeout(() => this.#pause(c), READ_MIN_MS + Math.random() * (READ_MAX_MS - READ_MIN_MS));
  }

  #pause(c: SlowClient): void {
    const long = c.nextLong;
    c.nextLong = !long;
    c.state = long ? 'long pause' : 'short pause';
    this.#pauses++;
    c.ws.pause();
    c.timer = setTimeout(
      () => {
        if (long) c.resumedFromLong = Date.now();
        c.ws.resume();
        this.#read(c);
      },
      long ? this.#spec.slowLongPauseMs : this.#spec.slowShortPauseMs,
    );
  }

  #ended(c: SlowClient, code: number): void {
    clearTimeout(c.timer);
    this.#clients.delete(c);
    const wasOpen = c.state !== 'connecting';
    if (wasOpen) this.#open--;
    if (this.#stopping) return;
    if (!wasOpen) {
      this.#handshakeFailures++;
      this.#tally.add('slow', `handshake failed: ${c.error ?? `close ${code}`}`, 'handshake');
    } else {
      this.#dropped++;
      const context = c.state === 'reading' && Date.now() - c.resumedFromLong < AFTER_LONG_PAUSE_MS ? 'after long pause' : c.state;
      this.#tally.add('slow', code === 1006 && c.error !== undefined ? `closed with code 1006 (${c.error})` : `closed with code ${code}`, context);
    }
    this.#later(() => this.#connect(), RECONNECT_MS);
  }
}
