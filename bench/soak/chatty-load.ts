// The chatty part of the soak: connections held through the gateway, each
// sending a small text message at a fixed rate and checking that the echoes
// come back in order; a share of them quiet (they never send, so the gateway
// pings them and they answer). A connection the gateway or a backend closes is
// recorded and replaced, so the load stays at its size through the faults.
// Built on the load tool's raw client (src/bench/client.ts).
import { performance } from 'node:perf_hooks';
import { Client, clientTarget } from '../../src/bench/client.js';
import type { ClientHost, ClientTarget } from '../../src/bench/client.js';
import { OP_PING } from '../../src/bench/frame-codec.js';
import { FrameStamper, readSequence } from '../../src/bench/payload.js';
import { waitUntil } from '../../src/bench/wait-until.js';
import type { CloseTally } from './close-tally.js';
import type { LoadCounts, LoadSpec } from './load-protocol.js';

/** Handshakes in flight at once, as `wsgate bench` allows. */
const MAX_PENDING = 256;
const TICK_MS = 50;
/** Echoes a connection may owe before it is skipped: a stalled connection must not pile up writes. */
const MAX_OUTSTANDING = 64;
/** Graceful closes at the end: how long the close handshakes may take before the rest are cut. */
const STOP_WAIT_MS = 5000;

class SoakClient extends Client {
  readonly quiet: boolean;
  /** When the gateway accepted it (ms): a quiet one is closed by limits.idleTimeout from then. */
  openedAt = 0;
  readonly #onPing: () => void;

  constructor(host: ClientHost, target: ClientTarget, quiet: boolean, onPing: () => void) {
    super(host, target, 1);
    this.quiet = quiet;
    this.#onPing = onPing;
  }

  override frameControl(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_PING) this.#onPing();
    super.frameControl(opcode, buf, start, end);
  }
}

export function emptyCounts(): LoadCounts {
  return {
    open: 0,
    opened: 0,
    handshakeFailures: 0,
    dropped: 0,
    sent: 0,
    received: 0,
    badEchoes: 0,
    backlogSkips: 0,
    pings: 0,
    churnCycles: 0,
    churnSkipped: 0,
    slowBytes: 0,
    slowPauses: 0,
  };
}

export class ChattyLoad implements ClientHost {
  readonly #spec: LoadSpec;
  readonly #target: ClientTarget;
  readonly #tally: CloseTally;
  readonly #frames: FrameStamper;
  readonly #quietWanted: number;
  readonly #all = new Set<SoakClient>();
  /** Open, sending connections; a client's `slot` is its index here. */
  readonly #senders: SoakClient[] = [];
  #open = 0;
  #pending = 0;
  #quiet = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastTick = 0;
  #rampCredit = 0;
  #sendCredit = 0;
  #cursor = 0;
  #stopping = false;
  #opened = 0;
  #handshakeFailures = 0;
  #dropped = 0;
  #sent = 0;
  #received = 0;
  #badEchoes = 0;
  #backlogSkips = 0;
  #pings = 0;
  readonly #onPing = (): void => {
    this.#pings++;
  };

  constructor(spec: LoadSpec, tally: CloseTally) {
    this.#spec = spec;
    this.#tally = tally;
    this.#frames = new FrameStamper(spec.size, false);
    this.#quietWanted = Math.round(spec.connections * spec.quietShare);
    this.#target = clientTarget({ url: spec.url, timeoutMs: spec.handshakeTimeoutMs, localAddress: spec.localAddress });
  }

  start(): void {
    this.#lastTick = performance.now();
    this.#rampCredit = 1;
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** Closes every connection with a close handshake (1000), cuts what is left after a while. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    for (const c of this.#all) c.close();
    await waitUntil(
      () => this.#all.size === 0,
      STOP_WAIT_MS,
      () => false,
    );
    for (const c of this.#all) c.terminate();
  }

  /** Cuts everything at once (the process is going away). */
  abort(): void {
    this.#stopping = true;
    clearInterval(this.#timer);
    for (const c of this.#all) c.terminate();
  }

  counts(): LoadCounts {
    return {
      ...emptyCounts(),
      open: this.#open,
      opened: this.#opened,
      handshakeFailures: this.#handshakeFailures,
      dropped: this.#dropped,
      sent: this.#sent,
      received: this.#received,
      badEchoes: this.#badEchoes,
      backlogSkips: this.#backlogSkips,
      pings: this.#pings,
    };
  }

  #tick(): void {
    const now = performance.now();
    const dt = (now - this.#lastTick) / 1000;
    this.#lastTick = now;
    // Open what is missing (the start, and replacements), at the ramp's pace; credit is capped so
    // that a stall does not turn into a burst.
    const { connections, ramp, ratePerConnection } = this.#spec;
    this.#rampCredit = Math.min(this.#rampCredit + dt * ramp, Math.max(1, ramp * 0.2));
    while (this.#open + this.#pending < connections && this.#rampCredit >= 1 && this.#pending < MAX_PENDING) {
      this.#rampCredit--;
      this.#openOne();
    }
    // Send: each sender gets its share of the rate, in turn.
    const senders = this.#senders;
    if (senders.length === 0) return;
    this.#sendCredit += dt * ratePerConnection * senders.length;
    let n = Math.min(Math.floor(this.#sendCredit), senders.length);
    this.#sendCredit -= n;
    for (; n > 0; n--) {
      this.#cursor = (this.#cursor + 1) % senders.length;
      const c = senders[this.#cursor] as SoakClient;
      if (c.outstanding >= MAX_OUTSTANDING) {
        this.#backlogSkips++;
        continue;
      }
      c.write(this.#frames.one(c.sent));
      c.sent++;
      this.#sent++;
    }
  }

  #openOne(): void {
    const quiet = this.#quiet < this.#quietWanted;
    if (quiet) this.#quiet++;
    this.#pending++;
    this.#all.add(new SoakClient(this, this.#target, quiet, this.#onPing));
  }

  clientOpened(client: Client): void {
    const c = client as SoakClient;
    this.#pending--;
    this.#open++;
    this.#opened++;
    c.openedAt = Date.now();
    if (!c.quiet) {
      c.slot = this.#senders.length;
      this.#senders.push(c);
    }
  }

  clientMessage(client: Client, buf: Buffer, start: number, end: number): void {
    const c = client as SoakClient;
    if (readSequence(buf, start, end, false) !== c.received) this.#badEchoes++;
    c.received++;
    this.#received++;
  }

  clientEnded(client: Client, failure: string | null): void {
    const c = client as SoakClient;
    this.#all.delete(c);
    if (c.quiet) this.#quiet--;
    if (!c.opened) {
      this.#pending--;
      if (failure !== null && !this.#stopping) {
        this.#handshakeFailures++;
        this.#tally.add('chatty', failure, 'handshake');
      }
      return;
    }
    this.#open--;
    if (!c.quiet) {
      // Swap-remove from the senders.
      const last = this.#senders.pop() as SoakClient;
      if (last !== c) {
        this.#senders[c.slot] = last;
        last.slot = c.slot;
      }
      c.slot = -1;
    }
    if (failure === null || this.#stopping) return;
    this.#dropped++;
    // The idle sweeper closes at idleTimeout plus at most one tick; a second of room the other way.
    const idle = c.quiet && Date.now() - c.openedAt >= this.#spec.idleTimeoutMs - 1000;
    this.#tally.add('chatty', failure, idle ? 'quiet past idleTimeout' : c.quiet ? 'quiet' : 'chatty');
  }
}
