// What relays count for the metrics beyond a session's own totals: the
// gateway's keepalive pings and the sizes of data messages. One tally per
// gateway, handed to every relay as a plain object (null when metrics are
// off); a message costs a bucket increment, never a registry call.

/** Upper bounds of the message-size buckets, bytes: powers of four from 64 B to 1 MiB; one more bucket holds the rest. */
export const SIZE_BOUNDS = Object.freeze([64, 256, 1024, 4096, 16384, 65536, 262144, 1048576]);

/** Per direction: a count per size bucket (SIZE_BOUNDS, then +Inf), then the sum of the sizes. */
export type SizeCounts = Float64Array;

/** Where a SizeCounts keeps its sum. */
const SUM = SIZE_BOUNDS.length + 1;

export class RelayTally {
  pingsSent = 0;
  pingsAnswered = 0;
  pingsTimedOut = 0;
  /** Client to upstream. */
  readonly upstreamSizes: SizeCounts = new Float64Array(SIZE_BOUNDS.length + 2);
  /** Upstream to client. */
  readonly downstreamSizes: SizeCounts = new Float64Array(SIZE_BOUNDS.length + 2);
}

/** Counts one message of `bytes` payload bytes. */
export function countSize(sizes: SizeCounts, bytes: number): void {
  const i = sizeBucket(bytes);
  sizes[i] = sizes[i]! + 1;
  sizes[SUM] = sizes[SUM]! + bytes;
}

/** The index of the smallest bound ≥ bytes (powers of four from 64: two bits of log2 per bucket). */
export function sizeBucket(bytes: number): number {
  if (bytes <= 64) return 0;
  if (bytes > 1048576) return SIZE_BOUNDS.length;
  return (27 - Math.clz32(bytes - 1)) >> 1;
}
