/**
 * At most `perSecond` lines a second for one kind of log line, so a flood of
 * rejected connections cannot turn into a flood of log writes. A line that
 * may be written carries the number of lines dropped since the last one; when
 * no line follows a window that dropped some (the flood stopped), `onDropped`
 * is told the count when that window ends, so it is never lost.
 */
export class LogThrottle {
  readonly #perSecond: number;
  readonly #onDropped: ((dropped: number) => void) | undefined;
  #windowStart = 0;
  #inWindow = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(perSecond: number, onDropped?: (dropped: number) => void) {
    this.#perSecond = perSecond;
    this.#onDropped = onDropped;
  }

  /** -1 when this line must be dropped; else how many were dropped before it (0 usually). */
  take(now: number): number {
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= this.#perSecond) {
      if (this.#dropped++ === 0 && this.#onDropped !== undefined) {
        this.#timer = setTimeout(this.#flush, Math.max(1, this.#windowStart + 1000 - now));
        this.#timer.unref();
      }
      return -1;
    }
    this.#inWindow++;
    const dropped = this.#dropped;
    this.#dropped = 0;
    return dropped;
  }

  #flush = (): void => {
    this.#timer = undefined;
    const dropped = this.#dropped;
    this.#dropped = 0;
    if (dropped > 0) this.#onDropped?.(dropped);
  };

  /** Stops the end-of-window report (the gateway is stopping). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
