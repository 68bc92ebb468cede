/** Something the sweeper watches: it sets `active` on traffic, the sweeper clears it. */
export interface Sweepable {
  active: boolean;
  /** Time the sweeps have found it quiet, ms (in whole ticks). */
  quietMs: number;
  /** Quiet time after which `onIdle` runs, ms (0 = never). */
  readonly idleMs: number;
  onIdle(): void;
}

/**
 * Idle timeouts for every session from one timer. Refreshing a timer per
 * chunk costs a timer-list reinsertion on the hot path; here a chunk only sets
 * a flag, and one periodic pass finds the sessions that stayed quiet.
 * Precision is one tick. Quiet time is counted in ms, so a reload may change
 * the tick under running sessions.
 */
export class IdleSweeper<T extends Sweepable> {
  #tickMs: number;
  readonly #members = new Set<T>();
  #timer: NodeJS.Timeout | undefined;

  constructor(tickMs: number) {
    this.#tickMs = tickMs;
  }

  get tickMs(): number {
    return this.#tickMs;
  }

  /** A new tick (a reload changed the shortest timeout), from the next sweep on. */
  retune(tickMs: number): void {
    if (tickMs === this.#tickMs) return;
    this.#tickMs = tickMs;
    if (this.#timer !== undefined) {
      this.stop();
      this.#start();
    }
  }

  add(member: T): void {
    this.#members.add(member);
    if (this.#timer === undefined) this.#start();
  }

  #start(): void {
    this.#timer = setInterval(sweep, this.#tickMs, this);
    this.#timer.unref();
  }

  delete(member: T): void {
    this.#members.delete(member);
    if (this.#members.size === 0) this.stop();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** @internal */
  sweep(): void {
    const tick = this.#tickMs;
    for (const m of this.#members) {
      if (m.active) {
        m.active = false;
        m.quietMs = 0;
      } else if ((m.quietMs += tick) >= m.idleMs && m.idleMs > 0) {
        m.onIdle();
      }
    }
  }
}

function sweep(s: IdleSweeper<Sweepable>): void {
  s.sweep();
}
