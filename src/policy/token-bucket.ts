/** A token bucket's whole state: two numbers, refilled lazily from the clock (no timer per bucket). */
export interface BucketState {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  stamp: number;
}

/**
 * Takes one token. Returns 0 when the event may happen, else how many ms
 * until a token will be there (for Retry-After). A fresh state (stamp 0)
 * starts full. `ratePerSecond` 0 means unlimited.
 */
export function takeToken(state: BucketState, now: number, ratePerSecond: number, burst: number): number {
  if (ratePerSecond <= 0) return 0;
  const elapsed = now - state.stamp;
  let tokens = state.stamp === 0 ? burst : state.tokens + (elapsed > 0 ? (elapsed * ratePerSecond) / 1000 : 0);
  if (tokens > burst) tokens = burst;
  state.stamp = now;
  if (tokens >= 1) {
    state.tokens = tokens - 1;
    return 0;
  }
  state.tokens = tokens;
  return Math.ceil(((1 - tokens) * 1000) / ratePerSecond);
}
