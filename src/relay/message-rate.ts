// Per-direction message rate limit for the inspect relay: a token bucket
// whose burst equals its rate (N messages/s allow N at once, then N per
// second).
//
// It is charged once per completed message, on the hot path, so it does not
// read a clock: performance.now() costs ~100 ns here, which is a visible
// share of relaying a small message. Instead one shared coarse clock, ticking
// every CLOCK_TICK_MS while at least one bucket exists, gives the time; the
// bucket refills lazily from it. The limit is therefore exact over a second
// and coarse (one tick) within it, which is all a flood guard needs.

/** Resolution of the shared clock the buckets refill from. */
export const CLOCK_TICK_MS = 20;

let now = 0;
let users = 0;
let clock: NodeJS.Timeout | undefined;

function tick(): void {
  now = performance.now();
}

export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;
  #released = false;

  /** `perSecond` > 0. Call release() when done, so the shared clock can stop. */
  constructor(perSecond: number) {
    if (!(perSecond > 0)) throw new RangeError(`message rate must be positive, got ${perSecond}`);
    if (users++ === 0) {
      tick();
      clock = setInterval(tick, CLOCK_TICK_MS);
      clock.unref();
    }
    this.#perMs = perSecond / 1000;
    // A rate below 1/s still lets one message through.
    this.#burst = Math.max(1, perSecond);
    this.#tokens = this.#burst;
    this.#last = now;
  }

  /** Takes one token; false when the bucket is empty (the caller fails the connection). */
  take(): boolean {
    let t = this.#tokens;
    if (this.#last !== now) {
      t += (now - this.#last) * this.#perMs;
      if (t > this.#burst) t = this.#burst;
      this.#last = now;
    }
    if (t < 1) {
      this.#tokens = t;
      return false;
    }
    this.#tokens = t - 1;
    return true;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (--users === 0) {
      clearInterval(clock);
      clock = undefined;
    }
  }
}
