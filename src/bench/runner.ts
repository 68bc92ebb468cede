import type { Histogram } from './histogram.js';
import type { BenchOptions } from './options.js';

/** One process's share of the load. */
export interface RunnerSlice {
  readonly options: BenchOptions;
  readonly connections: number;
  /** Open loop: this process's messages/s. */
  readonly rate: number;
  /** New connections/s for this process; 0 = as fast as the handshake cap allows. */
  readonly ramp: number;
  readonly localAddress: string | undefined;
}

export interface RunnerCounters {
  /** Connections open now (churn: cycles in progress). */
  readonly open: number;
  readonly opened: number;
  readonly failed: number;
  /** Completed handshakes (churn: during the load phase only). */
  readonly handshakes: number;
  readonly sent: number;
  readonly received: number;
  readonly errors: number;
}

export interface RunnerProgress {
  readonly counters: RunnerCounters;
  /** Round trips so far. */
  readonly rtt: Histogram;
}

/** What a process hands back at the end; histograms encoded so they merge exactly across processes. */
export interface RunnerResult {
  readonly opened: number;
  readonly failed: number;
  readonly handshakes: number;
  readonly sent: number;
  /** Echoes of messages sent while measuring. */
  readonly received: number;
  /** Every echo that arrived while measuring, warm-up ones included: what a proxy handled in that window. */
  readonly receivedInWindow: number;
  /** Open loop: scheduled messages not sent (no open connection, or its send buffer over the cap). */
  readonly unsent: number;
  readonly bytesReceived: number;
  /** The connect phase (persistent connections only). */
  readonly connectMs: number;
  /** From the start of measuring until sending stopped or the last measured echo, whichever is later. */
  readonly loadMs: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly handshakeHistogram: string;
  readonly rttHistogram: string;
  /** Open loop: actual send time − intended send time: how far the tool itself fell behind. */
  readonly lagHistogram: string;
}

/**
 * A load generator in this process or in a worker process. The phases run in
 * order: connect (open the connections), warmup (start the load, unmeasured for
 * --warmup), run (measure for --duration, then wait for outstanding echoes),
 * close (close the connections, return the figures).
 */
export interface Runner {
  connect(): Promise<void>;
  /** Starts the load; resolves once the warm-up is over (at once without one), the load going on. */
  warmup(): Promise<void>;
  /** Measures until the schedule ends, then waits for outstanding echoes. */
  run(): Promise<void>;
  close(): Promise<RunnerResult>;
  progress(): RunnerProgress;
  /** Stops everything at once (a deadline passed, or the user hit ^C). */
  abort(): void;
}
