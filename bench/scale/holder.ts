// Holds many WebSockets open from one process, answering the gateway's
// keepalive pings, then sends one message on every connection and checks each
// echo. `wsgate bench --idle` opens and holds but never sends, and c50k wants
// proof that every held connection still relays at the end, so this uses the
// load tool's raw client (src/bench/client.ts) under a runner of its own.
import { performance } from 'node:perf_hooks';
import { Client, clientTarget } from '../../src/bench/client.js';
import type { ClientHost, ClientTarget } from '../../src/bench/client.js';
import { ErrorTally } from '../../src/bench/error-tally.js';
import { OP_PING } from '../../src/bench/frame-codec.js';
import { createHistogram, recordMs, summarize } from '../../src/bench/histogram.js';
import type { LatencySummary } from '../../src/bench/histogram.js';
import { FrameStamper, readSequence } from '../../src/bench/payload.js';
import { waitUntil } from '../../src/bench/wait-until.js';

/** Handshakes in flight at once, as `wsgate bench` allows: enough to keep up with --ramp, few enough for the accept queues. */
const MAX_PENDING = 256;
const PUMP_MS = 5;
const CUT_WAIT_MS = 5000;
/** The echo at the end: small, text (the echo checks UTF-8 like any server). */
const ECHO_SIZE = 16;
/** waitUntil's "stop early" for waits that only the process's end interrupts. */
const never = (): boolean => false;

export interface HoldSpec {
  readonly url: string;
  readonly connections: number;
  /** New connections per second (this process's share). */
  readonly ramp: number;
  /** This process's own source address (its own ephemeral port range). */
  readonly localAddress: string | undefined;
  readonly handshakeTimeoutMs: number;
}

export interface HoldCounts {
  readonly open: number;
  readonly opened: number;
  readonly failed: number;
  /** Connections that ended while held, not closed by us. */
  readonly dropped: number;
  /** Pings received per open connection: fewest, and in all. */
  readonly minPings: number;
  readonly pings: number;
  /** The final echo: messages sent, and echoes that came back right. */
  readonly echoSent: number;
  readonly echoed: number;
  readonly handshake: LatencySummary;
  /** Wall time of the connect phase, ms. */
  readonly connectMs: number;
  readonly errors: Readonly<Record<string, number>>;
}

/** A client that counts the pings it answers: the proof that keepalive ran on every connection. */
class HeldClient extends Client {
  pings = 0;
  /** The sequence number of this connection's final echo, or -1 before it is sent. */
  echoSeq = -1;

  override frameControl(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_PING) this.pings++;
    super.frameControl(opcode, buf, start, end);
  }
}

type Phase = 'idle' | 'connecting' | 'holding' | 'echoing' | 'cutting';

export class Holder implements ClientHost {
  readonly #spec: HoldSpec;
  readonly #target: ClientTarget;
  readonly #errors = new ErrorTally();
  readonly #handshakes = createHistogram();
  readonly #all = new Set<HeldClient>();
  readonly #live = new Set<HeldClient>();
  #phase: Phase = 'idle';
  #attempted = 0;
  #pending = 0;
  #opened = 0;
  #failed = 0;
  #dropped = 0;
  #echoSent = 0;
  #echoed = 0;
  /** Final echoes sent on connections that then dropped: they will never come back. */
  #lostEchoes = 0;
  #connectMs = 0;

  constructor(spec: HoldSpec) {
    this.#spec = spec;
    this.#target = clientTarget({ url: spec.url, timeoutMs: spec.handshakeTimeoutMs, localAddress: spec.localAddress });
  }

  /** Opens every connection at the ramp's pace; resolves once each is open or has failed. */
  async open(): Promise<HoldCounts> {
    this.#phase = 'connecting';
    const start = performance.now();
    const pump = (): void => {
      const due = Math.min(this.#spec.connections, Math.floor(((performance.now() - start) * this.#spec.ramp) / 1000) + 1);
      while (this.#attempted < due && this.#pending < MAX_PENDING) {
        this.#attempted++;
        this.#pending++;
        this.#all.add(new HeldClient(this, this.#target, 1));
      }
    };
    const timer = setInterval(pump, PUMP_MS);
    pump();
    await waitUntil(() => this.#attempted === this.#spec.connections && this.#pending === 0, Infinity, never);
    clearInterval(timer);
    this.#connectMs = performance.now() - start;
    this.#phase = 'holding';
    return this.counts();
  }

  /** One message on every open connection; resolves when every echo is in or after `timeoutMs` (the missing ones count as errors). */
  async echo(timeoutMs: number): Promise<HoldCounts> {
    this.#phase = 'echoing';
    const frames = new FrameStamper(ECHO_SIZE, false);
    let seq = 0;
    for (const c of this.#live) {
      c.echoSeq = seq++;
      c.write(frames.one(c.echoSeq));
    }
    this.#echoSent = seq;
    const done = await waitUntil(() => this.#echoed + this.#lostEchoes >= this.#echoSent, timeoutMs, never);
    if (!done) this.#errors.add('echo timeout', this.#echoSent - this.#echoed - this.#lostEchoes);
    return this.counts();
  }

  /** Cuts every connection (a FIN, no close handshake: 50,000 close handshakes would take long, and prove nothing more). */
  async cut(): Promise<HoldCounts> {
    this.#phase = 'cutting';
    for (const c of this.#all) c.terminate();
    await waitUntil(() => this.#all.size === 0, CUT_WAIT_MS, never);
    return this.counts();
  }

  abort(): void {
    this.#phase = 'cutting';
    for (const c of this.#all) c.terminate();
  }

  counts(): HoldCounts {
    let minPings = Infinity;
    let pings = 0;
    for (const c of this.#live) {
      minPings = Math.min(minPings, c.pings);
      pings += c.pings;
    }
    return {
      open: this.#live.size,
      opened: this.#opened,
      failed: this.#failed,
      dropped: this.#dropped,
      minPings: this.#live.size === 0 ? 0 : minPings,
      pings,
      echoSent: this.#echoSent,
      echoed: this.#echoed,
      handshake: summarize(this.#handshakes),
      connectMs: this.#connectMs,
      errors: this.#errors.toJSON(),
    };
  }

  clientOpened(client: Client, handshakeMs: number): void {
    this.#opened++;
    this.#pending--;
    recordMs(this.#handshakes, handshakeMs);
    this.#live.add(client as HeldClient);
  }

  clientMessage(client: Client, buf: Buffer, start: number, end: number): void {
    const c = client as HeldClient;
    c.received++;
    const ok = this.#phase === 'echoing' && c.received === 1 && end - start === ECHO_SIZE && readSequence(buf, start, end, false) === c.echoSeq;
    if (ok) this.#echoed++;
    else this.#errors.add(this.#phase === 'echoing' ? 'bad echo' : 'unexpected message');
  }

  clientEnded(client: Client, failure: string | null): void {
    const c = client as HeldClient;
    this.#all.delete(c);
    if (!c.opened) {
      this.#pending--;
      this.#failed++;
      this.#errors.add(failure ?? 'closed before the handshake');
      return;
    }
    this.#live.delete(c);
    if (this.#phase === 'cutting') return;
    // Ended while held, not by us: a dropped connection (its echo, if sent, is lost too).
    this.#dropped++;
    if (c.echoSeq >= 0 && c.received === 0) this.#lostEchoes++;
    this.#errors.add(failure === null ? 'dropped' : `dropped: ${failure}`);
  }
}
