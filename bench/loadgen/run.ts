// Runs the C load generator and hands back its report, typed. See bench/README.md, "The C load generator".
import { spawn } from 'node:child_process';
import { loadgenPath } from './build.js';

export interface LoadgenOptions {
  /** ws://127.x.x.x:PORT/PATH (the load generator refuses anything outside 127.0.0.0/8). */
  readonly url: string;
  readonly mode: 'closed' | 'churn';
  readonly connections: number;
  /** closed: messages outstanding per connection (default 1). */
  readonly inflight?: number;
  /** Payload bytes (default 64; below 8 is padded to 8). */
  readonly size?: number;
  readonly durationS: number;
  readonly warmupS?: number;
  /** Handshake, echo and close timeout (default 5 s). */
  readonly timeoutS?: number;
  /** Pin the load generator to this CPU. */
  readonly cpu?: number;
  /** First source address, 127.A.B.C (default: a random 127.A.B.2 for each run). */
  readonly source?: string;
  /** Source addresses to rotate over, from `source` on (default 1 closed, 8 churn). */
  readonly sources?: number;
  /** Called when the measured phase starts and ends (the warm-up and the teardown are outside it). */
  readonly onMeasureStart?: () => void;
  readonly onMeasureEnd?: () => void;
}

/** Microseconds; null when nothing was recorded. */
export interface Percentiles {
  readonly count: number;
  readonly mean: number | null;
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
  readonly max: number | null;
}

/** What the load generator prints (counts and rates cover the measured phase only), plus how it exited. */
export interface LoadgenResult {
  readonly mode: 'closed' | 'churn';
  readonly connections: number;
  readonly inflight: number;
  readonly size: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly sources: readonly string[];
  /** Handshakes completed over the whole run (closed: the connections opened before the clock started). */
  readonly connectionsOpened: number;
  /** Echoes received. */
  readonly messages: number;
  readonly msgPerSec: number;
  readonly sent: number;
  readonly handshakes: number;
  readonly hsPerSec: number;
  /** Echo: receive − send, µs. */
  readonly latencyUs: Percentiles;
  /** Handshake: connect start → 101 parsed, µs. */
  readonly handshakeUs: Percentiles;
  /** Errors by kind ("refused", "handshake status", "bad accept", "timeout", "reset", …), over the whole run. */
  readonly errors: Readonly<Record<string, number>>;
  /** The load generator's own CPU over the measured phase (getrusage). */
  readonly cpuUs: { readonly user: number; readonly sys: number };
  readonly wallUs: number;
  /** System calls over the measured phase. */
  readonly syscalls: { readonly reads: number; readonly writes: number; readonly epollWaits: number };
  /** 0 clean, 1 errors counted. */
  readonly exitCode: number;
  /** What it wrote on stderr besides the phase marks (the first error of each kind). */
  readonly stderr: string;
}

/** The load generator did not produce a report: bad usage (exit status 2), a crash, or no compiler. */
export class LoadgenError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'LoadgenError';
  }
}

export function loadgenArgs(o: LoadgenOptions): string[] {
  const args = [o.url, '--mode', o.mode, '--connections', String(o.connections), '--duration', String(o.durationS)];
  if (o.inflight !== undefined) args.push('--inflight', String(o.inflight));
  if (o.size !== undefined) args.push('--size', String(o.size));
  if (o.warmupS !== undefined) args.push('--warmup', String(o.warmupS));
  if (o.timeoutS !== undefined) args.push('--timeout', String(o.timeoutS));
  if (o.cpu !== undefined) args.push('--cpu', String(o.cpu));
  if (o.source !== undefined) args.push('--source', o.source);
  if (o.sources !== undefined) args.push('--sources', String(o.sources));
  return args;
}

const START = 'loadgen: measure start';
const END = 'loadgen: measure end';

export async function runLoadgen(options: LoadgenOptions): Promise<LoadgenResult> {
  const binary = await loadgenPath();
  const args = loadgenArgs(options);
  // It stops by itself (setup ≤ timeout + 60 s, then warm-up, duration and a bounded teardown);
  // this is only the last resort should it hang.
  const timeoutS = options.timeoutS ?? 5;
  const limitMs = ((options.warmupS ?? 0) + options.durationS + 3 * timeoutS + 90) * 1000;
  return new Promise<LoadgenResult>((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      partial += d;
      let nl;
      while ((nl = partial.indexOf('\n')) !== -1) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line === START) options.onMeasureStart?.();
        else if (line === END) options.onMeasureEnd?.();
        else stderr += `${line}\n`;
      }
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('error', (err) => {
      clearTimeout(killer);
      reject(new LoadgenError(`could not run ${binary}: ${err.message}`, null, stderr));
    });
    // 'close': stdout and stderr have been read to their end by then.
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      stderr += partial;
      if (code === 0 || code === 1) {
        try {
          resolve({ ...(JSON.parse(stdout) as Omit<LoadgenResult, 'exitCode' | 'stderr'>), exitCode: code, stderr });
          return;
        } catch {
          // falls through: no report
        }
      }
      const how = code === null ? `was killed (${signal ?? 'unknown signal'})` : `exited with status ${code}`;
      reject(new LoadgenError(`the load generator ${how} without a report: ${stderr.trim().split('\n')[0] ?? ''}`, code, stderr));
    });
  });
}
