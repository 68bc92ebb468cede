import { performance } from 'node:perf_hooks';
import { Client, clientTarget } from './client.js';
import type { ClientHost, ClientTarget } from './client.js';
import { ErrorTally } from './error-tally.js';
import { createHistogram, encodeHistogram, recordMs } from './histogram.js';
import type { LoadMode } from './options.js';
import { FrameStamper, readSequence } from './payload.js';
import type { Runner, RunnerCounters, RunnerProgress, RunnerResult, RunnerSlice } from './runner.js';
import { waitUntil } from './wait-until.js';

/** Handshakes in flight at once when no --ramp is given: enough to be fast, few enough not to overflow accept queues. */
const MAX_PENDING_HANDSHAKES = 256;
/** Open loop: past this much unsent data on a connection, scheduled messages are counted as unsent instead. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const CLOSE_GRACE_MS = 2000;
/** Churn: pause after a failed cycle so a refusing target does not turn the loop into a busy spin. */
const CHURN_RETRY_MS = 5;
const PUMP_MS = 5;

type Phase = 'idle' | 'connecting' | 'running' | 'draining' | 'closing' | 'done';

/** Generates the load of one process: see Runner for the phases. */
export class LoadRunner implements Runner, ClientHost {
  readonly #slice: RunnerSlice;
  readonly #mode: LoadMode;
  readonly #target: ClientTarget;
  readonly #frames: FrameStamper;
  readonly #size: number;
  readonly #binary: boolean;
  readonly #ringSize: number;
  readonly #errors = new ErrorTally();
  readonly #handshakeHist = createHistogram();
  readonly #rttHist = createHistogram();
  readonly #lagHist = createHistogram();
  /** Every client not yet ended (connecting or open). */
  readonly #all = new Set<Client>();
  /** Open clients that take traffic; swap-removed via Client.slot. */
  readonly #live: Client[] = [];
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #phase: Phase = 'idle';
  #aborted = false;
  #attempted = 0;
  #pending = 0;
  #opened = 0;
  #failed = 0;
  #handshakes = 0;
  #sent = 0;
  #received = 0;
  #lost = 0;
  #measuredSent = 0;
  #measuredUnsent = 0;
  #churnActive = 0;
  #connectStart = 0;
  #connectMs = 0;
  /** Start of the schedule (warm-up included); message N is due at t0 + N × interval. */
  #t0 = 0;
  /** Start of what is measured: t0, or the end of the warm-up. */
  #measureT0 = 0;
  #base = { handshakes: 0, received: 0 };
  #measuredReceived = 0;
  #measuredBytes = 0;
  #lastMeasuredAt = 0;
  #endAt = 0;
  #sendEndedAt = 0;
  #intervalMs = 0;
  #total = 0;
  #nextSeq = 0;
  /** Churn at a fixed rate: cycles due so far (message sequence numbers are #nextSeq's). */
  #cyclesDue = 0;
  #rr = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(slice: RunnerSlice) {
    const o = slice.options;
    this.#slice = slice;
    this.#mode = o.mode;
    this.#target = clientTarget({
      url: o.url,
      protocols: o.subprotocols,
      headers: o.headers,
      timeoutMs: o.timeoutMs,
      insecure: o.insecure,
      localAddress: slice.localAddress,
    });
    this.#frames = new FrameStamper(o.size, o.binary);
    this.#size = o.size;
    this.#binary = o.binary;
    this.#ringSize = o.mode.kind === 'closed' ? o.mode.inflight : 1;
  }

  async connect(): Promise<void> {
    if (this.#mode.kind === 'churn') return;
    this.#phase = 'connecting';
    this.#connectStart = performance.now();
    this.#timer = setInterval(this.#pump, PUMP_MS);
    this.#pump();
    await waitUntil(() => this.#attempted === this.#slice.connections && this.#pending === 0, Infinity, this.#isAborted);
    this.#clearTimer();
    this.#connectMs = performance.now() - this.#connectStart;
  }

  /** Starts the load on its fixed schedule; resolves after --warmup while the load goes on. */
  async warmup(): Promise<void> {
    const o = this.#slice.options;
    const total = o.warmupMs + o.durationMs;
    this.#phase = 'running';
    this.#t0 = performance.now();
    this.#measureT0 = this.#t0;
    this.#endAt = this.#t0 + total;
    switch (this.#mode.kind) {
      case 'open':
        this.#intervalMs = 1000 / this.#slice.rate;
        this.#total = Math.floor((this.#slice.rate * total) / 1000);
        // One timer drives every send: each tick sends all that is due.
        this.#timer = setInterval(this.#tick, 1);
        this.#tick();
        break;
      case 'closed':
        for (const c of this.#live) for (let k = 0; k < this.#ringSize; k++) this.#sendNow(c, this.#t0);
        this.#timer = setTimeout(this.#stopSending, total);
        break;
      case 'churn':
        if (this.#slice.rate > 0) {
          // At a fixed rate: one timer starts every cycle that is due.
          this.#intervalMs = 1000 / this.#slice.rate;
          this.#total = Math.floor((this.#slice.rate * total) / 1000);
          this.#timer = setInterval(this.#churnTick, 1);
          this.#churnTick();
          break;
        }
        for (let i = 0; i < this.#slice.connections; i++) this.#startCycle();
        this.#timer = setTimeout(this.#stopSending, total);
        break;
      case 'idle':
        this.#timer = setTimeout(this.#stopSending, total);
        break;
    }
    if (o.warmupMs > 0) await waitUntil(() => performance.now() >= this.#t0 + o.warmupMs, Infinity, this.#isAborted);
  }

  /** Measures from now until the schedule ends, then waits for outstanding echoes. */
  async run(): Promise<void> {
    const o = this.#slice.options;
    if (o.warmupMs > 0) this.#startMeasuring();
    await waitUntil(() => this.#phase !== 'running', Infinity, this.#isAborted);
    const drained = await waitUntil(() => this.#outstanding() === 0, o.timeoutMs, this.#isAborted);
    if (!drained) {
      // Echoes (or churn cycles) that never came back within --timeout.
      this.#errors.add('timeout', this.#outstanding());
      if (this.#mode.kind === 'churn') for (const c of this.#all) c.terminate();
    }
  }

  /** After the warm-up: figures start from here (errors are kept: they happened). */
  #startMeasuring(): void {
    this.#measureT0 = performance.now();
    // Churn handshakes are the load; the others happened while connecting and all count.
    this.#base = { handshakes: this.#mode.kind === 'churn' ? this.#handshakes : 0, received: this.#received };
    this.#measuredSent = 0;
    this.#measuredUnsent = 0;
    this.#measuredReceived = 0;
    this.#measuredBytes = 0;
    this.#lastMeasuredAt = 0;
    this.#rttHist.reset();
    this.#lagHist.reset();
    if (this.#mode.kind === 'churn') this.#handshakeHist.reset();
  }

  async close(): Promise<RunnerResult> {
    this.#phase = 'closing';
    this.#clearTimer();
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#retryTimers.clear();
    // Idle connections are cut rather than closed with a handshake: thousands of close
    // handshakes take seconds, and the side that closes first keeps the TIME_WAIT. Here
    // that is the load side, whose own connect()s step around it; on the server side it
    // would stall the next run's SYNs from the same source ports for a second each.
    const cut = this.#mode.kind === 'idle';
    for (const c of this.#all) {
      if (cut) c.terminate();
      else c.close();
    }
    if (!(await waitUntil(() => this.#all.size === 0, CLOSE_GRACE_MS, this.#isAborted))) {
      for (const c of this.#all) c.terminate();
      await waitUntil(() => this.#all.size === 0, CLOSE_GRACE_MS, this.#isAborted);
    }
    this.#phase = 'done';
    return {
      opened: this.#opened,
      failed: this.#failed,
      handshakes: this.#handshakes - this.#base.handshakes,
      sent: this.#measuredSent,
      received: this.#measuredReceived,
      receivedInWindow: this.#received - this.#base.received,
      unsent: this.#measuredUnsent,
      bytesReceived: this.#measuredBytes,
      connectMs: this.#connectMs,
      // Until the last measured echo: a backlog drained after sending stopped is part of the throughput window.
      loadMs: Math.max(this.#sendEndedAt || performance.now(), this.#lastMeasuredAt) - (this.#measureT0 || performance.now()),
      errors: this.#errors.toJSON(),
      handshakeHistogram: encodeHistogram(this.#handshakeHist),
      rttHistogram: encodeHistogram(this.#rttHist),
      lagHistogram: encodeHistogram(this.#lagHist),
    };
  }

  progress(): RunnerProgress {
    return { counters: this.counters(), rtt: this.#rttHist };
  }

  counters(): RunnerCounters {
    return {
      open: this.#mode.kind === 'churn' ? this.#churnActive : this.#live.length,
      opened: this.#opened,
      failed: this.#failed,
      handshakes: this.#handshakes,
      sent: this.#sent,
      received: this.#received,
      errors: this.#errors.total,
    };
  }

  abort(): void {
    this.#aborted = true;
    this.#phase = 'closing';
    this.#clearTimer();
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#retryTimers.clear();
    for (const c of this.#all) c.terminate();
  }

  clientOpened(client: Client, handshakeMs: number): void {
    this.#opened++;
    recordMs(this.#handshakeHist, handshakeMs);
    if (this.#mode.kind === 'churn') {
      if (this.#phase === 'running') this.#handshakes++;
      this.#sendNow(client, performance.now());
      return;
    }
    this.#handshakes++;
    this.#pending--;
    if (this.#phase === 'closing' || this.#phase === 'done') {
      client.close();
      return;
    }
    client.slot = this.#live.length;
    this.#live.push(client);
    if (this.#phase === 'connecting') this.#pump();
  }

  clientMessage(client: Client, buf: Buffer, start: number, end: number): void {
    const now = performance.now();
    client.received++;
    this.#received++;
    if (end - start !== this.#size) this.#errors.add('bad echo');
    let sentAt: number;
    switch (this.#mode.kind) {
      case 'open': {
        const seq = readSequence(buf, start, end, this.#binary);
        if (seq < 0 || seq >= this.#nextSeq) {
          this.#errors.add('bad echo');
          return;
        }
        sentAt = this.#t0 + seq * this.#intervalMs;
        break;
      }
      case 'closed':
        sentAt = client.shiftSendTime();
        if (this.#phase === 'running' && now < this.#endAt) this.#sendNow(client, now);
        break;
      case 'churn':
        sentAt = client.shiftSendTime();
        client.close();
        break;
      case 'idle':
        this.#errors.add('unexpected message');
        return;
    }
    // Echoes of warm-up messages arriving after it are neither timed nor counted.
    if (sentAt < this.#measureT0) return;
    recordMs(this.#rttHist, now - sentAt);
    this.#lastMeasuredAt = now;
    this.#measuredReceived++;
    this.#measuredBytes += end - start;
  }

  clientEnded(client: Client, failure: string | null): void {
    this.#all.delete(client);
    if (failure !== null) this.#errors.add(failure);
    if (client.opened) {
      this.#lost += client.outstanding;
      this.#removeLive(client);
    } else if (failure !== null) {
      this.#failed++;
    }
    if (this.#mode.kind === 'churn') {
      this.#churnActive--;
      // On a schedule, the next cycle starts when it is due, not when one ends.
      if (this.#phase !== 'running' || this.#slice.rate > 0) return;
      if (failure === null) this.#startCycle();
      else this.#retryCycleLater();
      return;
    }
    if (!client.opened) this.#pending--;
    if (this.#phase === 'connecting') this.#pump();
  }

  #openClient(): Client {
    const c = new Client(this, this.#target, this.#ringSize);
    this.#all.add(c);
    return c;
  }

  #pump = (): void => {
    const n = this.#slice.connections;
    let allowed = n;
    if (this.#slice.ramp > 0) {
      allowed = Math.min(n, Math.floor(((performance.now() - this.#connectStart) * this.#slice.ramp) / 1000) + 1);
    }
    while (this.#attempted < allowed && this.#pending < MAX_PENDING_HANDSHAKES) {
      this.#attempted++;
      this.#pending++;
      this.#openClient();
    }
  };

  #startCycle(): void {
    this.#churnActive++;
    this.#openClient();
  }

  #retryCycleLater(): void {
    const t = setTimeout(() => {
      this.#retryTimers.delete(t);
      if (this.#phase === 'running') this.#startCycle();
    }, CHURN_RETRY_MS);
    this.#retryTimers.add(t);
  }

  #removeLive(client: Client): void {
    const i = client.slot;
    if (i < 0) return;
    const last = this.#live.pop() as Client;
    if (last !== client) {
      this.#live[i] = last;
      last.slot = i;
    }
    client.slot = -1;
  }

  /** Closed loop and churn: send one message now and remember when. */
  #sendNow(client: Client, now: number): void {
    client.pushSendTime(now);
    client.sent++;
    this.#sent++;
    this.#measuredSent++;
    client.write(this.#frames.one(this.#nextSeq++));
  }

  #tick = (): void => {
    const now = performance.now();
    let due = Math.floor((now - this.#t0) / this.#intervalMs) + 1;
    if (due > this.#total) due = this.#total;
    if (due > this.#nextSeq) {
      const first = this.#nextSeq;
      this.#nextSeq = due;
      this.#sendScheduled(first, due - first, now);
    }
    if (now >= this.#endAt) this.#stopSending();
  };

  /**
   * Open loop: messages first … first+n-1 are due; message k goes to the next open connection in
   * turn, each in a write of its own, even when the tool catches up after a stall: coalescing them
   * would hand the proxy batches that a steady load never makes, and flatter its CPU per message.
   */
  #sendScheduled(first: number, n: number, now: number): void {
    const live = this.#live;
    for (let seq = first; seq < first + n; seq++) {
      const intended = this.#t0 + seq * this.#intervalMs;
      // Measured or not by its intended time, as its echo will be.
      const measured = intended >= this.#measureT0;
      if (measured) recordMs(this.#lagHist, now - intended);
      if (this.#rr >= live.length) this.#rr = 0;
      const c = live[this.#rr++];
      if (c === undefined || c.bufferedAmount > MAX_BUFFERED_BYTES) {
        if (measured) this.#measuredUnsent++;
        continue;
      }
      c.sent++;
      this.#sent++;
      if (measured) this.#measuredSent++;
      c.write(this.#frames.one(seq));
    }
  }

  /** Churn at a fixed rate: starts the cycles now due; one that finds every slot busy is not started, and counted. */
  #churnTick = (): void => {
    const now = performance.now();
    let due = Math.floor((now - this.#t0) / this.#intervalMs) + 1;
    if (due > this.#total) due = this.#total;
    for (let seq = this.#cyclesDue; seq < due; seq++) {
      const intended = this.#t0 + seq * this.#intervalMs;
      const measured = intended >= this.#measureT0;
      if (measured) recordMs(this.#lagHist, now - intended);
      if (this.#churnActive >= this.#slice.connections) {
        if (measured) this.#measuredUnsent++;
        continue;
      }
      this.#startCycle();
    }
    if (due > this.#cyclesDue) this.#cyclesDue = due;
    if (now >= this.#endAt) this.#stopSending();
  };

  #stopSending = (): void => {
    if (this.#phase !== 'running') return;
    this.#clearTimer();
    this.#sendEndedAt = performance.now();
    this.#phase = 'draining';
  };

  #outstanding(): number {
    return this.#mode.kind === 'churn' ? this.#churnActive : this.#sent - this.#received - this.#lost;
  }

  #isAborted = (): boolean => this.#aborted;

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
