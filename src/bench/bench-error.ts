export type BenchErrorCode =
  /** Bad or contradictory command-line options. */
  | 'BENCH_USAGE'
  /** A target outside loopback without --allow-remote. */
  | 'BENCH_REMOTE_REFUSED'
  /** A worker process died, or the run overran its deadline. */
  | 'BENCH_WORKER_FAILED'
  /** Stopped early (SIGINT/SIGTERM, or the caller's AbortSignal). */
  | 'BENCH_INTERRUPTED';

/** A failure of the load tool itself (not of the target: those are counted, not thrown). */
export class BenchError extends Error {
  readonly code: BenchErrorCode;

  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BenchError';
    this.code = code;
  }
}
