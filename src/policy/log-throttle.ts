/**
 * At most `perSecond` lines a second for one kind of log line, so a flood of
 * rejected connections cannot turn into a flood of log writes. A line that
 * may be written carries the number of lines dropped since the last one.
 */
export class LogThrottle {
  readonly #perSecond: number;
  #windowStart = 0;
  #inWindow = 0;
  #dropped = 0;

  constructor(perSecond: number) {
    this.#perSecond = perSecond;
  }

  /** -1 when this line must be dropped; else how many were dropped before it (0 usually). */
  take(now: number): number {
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= this.#perSecond) {
      this.#dropped++;
      return -1;
    }
    this.#inWindow++;
    const dropped = this.#dropped;
    this.#dropped = 0;
    return dropped;
  }
}
