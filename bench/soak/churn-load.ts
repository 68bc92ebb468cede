// Handshake churn for the soak: cycles of connect, upgrade, one echo and a
// close handshake (1000, ours), started on a fixed schedule at `churnRate` per
// second with at most `churnConcurrency` at once. A cycle due while every slot
// is busy is skipped and counted, never queued: the rate stays bounded.
import { performance } from 'node:perf_hooks';
import { Client, clientTarget } from '../../src/bench/client.js';
import type { ClientHost, ClientTarget } from '../../src/bench/client.js';
import { FrameStamper, readSequence } from '../../src/bench/payload.js';
import { waitUntil } from '../../src/bench/wait-until.js';
import { emptyCounts } from './chatty-load.js';
import type { CloseTally } from './close-tally.js';
import type { LoadCounts, LoadSpec } from './load-protocol.js';

const TICK_MS = 10;
/** A cycle that has not ended this long after it started is cut and recorded. */
const CYCLE_DEADLINE_MS = 15_000;
const STOP_WAIT_MS = 5000;

export class ChurnLoad implements ClientHost {
  readonly #spec: LoadSpec;
  readonly #target: ClientTarget;
  readonly #tally: CloseTally;
  readonly #frames: FrameStamper;
  /** Cycles in flight, with their start times. */
  readonly #inflight = new Map<Client, number>();
  #timer: NodeJS.Timeout | undefined;
  #startedAt = 0;
  #started = 0;
  #stopping = false;
  #opened = 0;
  #handshakeFailures = 0;
  #dropped = 0;
  #received = 0;
  #badEchoes = 0;
  #cycles = 0;
  #skipped = 0;

  constructor(spec: LoadSpec, tally: CloseTally) {
    this.#spec = spec;
    this.#tally = tally;
    this.#frames = new FrameStamper(spec.size, false);
    this.#target = clientTarget({ url: spec.url, timeoutMs: spec.handshakeTimeoutMs, localAddress: spec.localAddress });
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    await waitUntil(
      () => this.#inflight.size === 0,
      STOP_WAIT_MS,
      () => false,
    );
    for (const c of this.#inflight.keys()) c.terminate();
  }

  abort(): void {
    this.#stopping = true;
    clearInterval(this.#timer);
    for (const c of this.#inflight.keys()) c.terminate();
  }

  counts(): LoadCounts {
    return {
      ...emptyCounts(),
      open: this.#inflight.size,
      opened: this.#opened,
      handshakeFailures: this.#handshakeFailures,
      dropped: this.#dropped,
      sent: this.#opened,
      received: this.#received,
      badEchoes: this.#badEchoes,
      churnCycles: this.#cycles,
      churnSkipped: this.#skipped,
    };
  }

  #tick(): void {
    const now = performance.now();
    const due = Math.floor(((now - this.#startedAt) * this.#spec.churnRate) / 1000);
    while (this.#started < due) {
      if (this.#inflight.size >= this.#spec.churnConcurrency) {
        this.#skipped += due - this.#started;
        this.#started = due;
        break;
      }
      this.#started++;
      this.#inflight.set(new Client(this, this.#target, 1), now);
    }
    for (const [c, at] of this.#inflight) {
      if (now - at < CYCLE_DEADLINE_MS) continue;
      this.#inflight.delete(c);
      this.#tally.add('churn', 'cycle timeout', c.opened ? 'churn' : 'handshake');
      c.terminate();
    }
  }

  clientOpened(client: Client): void {
    this.#opened++;
    client.write(this.#frames.one(0));
    client.sent++;
  }

  clientMessage(client: Client, buf: Buffer, start: number, end: number): void {
    if (readSequence(buf, start, end, false) !== 0) this.#badEchoes++;
    client.received++;
    this.#received++;
    client.close();
  }

  clientEnded(client: Client, failure: string | null): void {
    // Not in flight any more: cut by the deadline (already recorded).
    if (!this.#inflight.delete(client)) return;
    if (failure === null) {
      if (client.received > 0) this.#cycles++;
      return;
    }
    if (this.#stopping) return;
    if (!client.opened) {
      this.#handshakeFailures++;
      this.#tally.add('churn', failure, 'handshake');
      return;
    }
    this.#dropped++;
    this.#tally.add('churn', failure, 'churn');
  }
}
