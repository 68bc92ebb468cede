/** Something the sweeper watches: it sets `active` on traffic, the sweeper clears it. */
export interface Sweepable {
  active: boolean;
  /** Sweeps in a row that found no traffic. */
  quietSweeps: number;
  /** Quiet sweeps after which `onIdle` runs (0 = never). */
  readonly idleSweeps: number;
  onIdle(): void;
}

/**
 * Idle timeouts for every session from one timer. Refreshing a timer per
 * chunk costs a timer-list reinsertion on the hot path; here a chunk only sets
 * a flag, and one periodic pass finds the sessions that stayed quiet.
 * Precision is one tick.
 */
export class IdleSweeper<T extends Sweepable> {
  readonly tickMs: number;
  readonly #members = new Set<T>();
  #timer: NodeJS.Timeout | undefined;

  constructor(tickMs: number) {
    this.tickMs = tickMs;
  }

  /** Sweeps needed for a timeout of `ms` (rounded up; 0 disables). */
  sweepsFor(ms: number): number {
    return ms <= 0 ? 0 : Math.max(1, Math.ceil(ms / this.tickMs));
  }

  add(member: T): void {
    this.#members.add(member);
    if (this.#timer === undefined) {
      this.#timer = setInterval(sweep, this.tickMs, this);
      this.#timer.unref();
    }
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
    for (const m of this.#members) {
      if (m.active) {
        m.active = false;
        m.quietSweeps = 0;
      } else if (++m.quietSweeps >= m.idleSweeps && m.idleSweeps > 0) {
        m.onIdle();
      }
    }
  }
}

function sweep(s: IdleSweeper<Sweepable>): void {
  s.sweep();
}
