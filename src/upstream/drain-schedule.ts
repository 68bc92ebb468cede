/** What a drain closes: an open session, told to end with a close code. */
export interface Closable {
  close(reason: string, code?: number): void;
}

/** Close batches never come closer together than this: a timer per session would be wasteful. */
const MIN_STEP_MS = 20;

/**
 * Closes a set of sessions evenly over `period`: the i-th of n at i·period/n,
 * so the reconnects they cause arrive spread out rather than as one stampede
 * on the remaining targets. The first goes at once, the last before `period`
 * is over. A session that ended by itself in the meantime is skipped.
 */
export class DrainSchedule {
  readonly #queue: Closable[];
  readonly #live: ReadonlySet<Closable>;
  readonly #period: number;
  readonly #code: number;
  readonly #reason: string;
  readonly #onDone: () => void;
  readonly #startedAt = Date.now();
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  /** `live` is the set sessions leave when they end; it is read, never changed. */
  constructor(live: ReadonlySet<Closable>, period: number, code: number, reason: string, onDone: () => void) {
    this.#live = live;
    this.#queue = [...live];
    this.#period = period;
    this.#code = code;
    this.#reason = reason;
    this.#onDone = onDone;
    this.#step();
  }

  /** Sessions not closed yet. */
  get pending(): number {
    return this.#queue.length - this.#next;
  }

  /** Stops closing; sessions not closed yet stay open. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#done = true;
  }

  #step = (): void => {
    this.#timer = undefined;
    if (this.#done) return;
    const n = this.#queue.length;
    const elapsed = Date.now() - this.#startedAt;
    // Everything due by now: index i is due at i·period/n.
    const due = this.#period <= 0 ? n : Math.min(n, Math.floor((elapsed * n) / this.#period) + 1);
    while (this.#next < due) {
      const session = this.#queue[this.#next]!;
      this.#queue[this.#next++] = undefined as unknown as Closable;
      if (this.#live.has(session)) session.close(this.#reason, this.#code);
    }
    if (this.#next >= n) {
      this.#done = true;
      this.#onDone();
      return;
    }
    const dueAt = Math.ceil((this.#next * this.#period) / n);
    // Batches at least MIN_STEP_MS apart, but never past the end of the period.
    const wait = Math.max(dueAt - elapsed, Math.min(MIN_STEP_MS, this.#period - 1 - elapsed), 0);
    this.#timer = setTimeout(this.#step, wait);
  };
}
