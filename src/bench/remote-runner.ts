import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { smallYoungGenerationFlags } from '../cli/young-generation.js';
import { BenchError } from './bench-error.js';
import { createHistogram, mergeEncoded } from './histogram.js';
import type { Runner, RunnerProgress, RunnerResult, RunnerSlice } from './runner.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

type Reply = FromWorker['t'];

const EMPTY_COUNTERS = { open: 0, opened: 0, failed: 0, handshakes: 0, sent: 0, received: 0, errors: 0 };

/** worker-entry.ts under tsx, worker-entry.js once built: the same module set either way. */
function workerEntry(): { path: string; execArgv: string[] } {
  const here = import.meta.url;
  const ts = here.endsWith('.ts');
  const path = fileURLToPath(new URL(ts ? './worker-entry.ts' : './worker-entry.js', here));
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--test') && !a.startsWith('--inspect'));
  if (ts && !execArgv.some((a) => a.includes('tsx'))) execArgv.push('--import', 'tsx');
  execArgv.push(...smallYoungGenerationFlags());
  return { path, execArgv };
}

/** A LoadRunner in a forked process: its own file-descriptor budget and source address. */
export class RemoteRunner implements Runner {
  readonly #child: ChildProcess;
  #progress: RunnerProgress = { counters: EMPTY_COUNTERS, rtt: createHistogram() };
  #waiting: { expect: Reply; resolve: (msg: FromWorker) => void; reject: (err: Error) => void } | undefined;
  #failure: Error | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', this.#onMessage);
    child.on('error', this.#onFailure);
    child.on('exit', this.#onExit);
  }

  /** Forks a worker and hands it its slice. */
  static async start(slice: RunnerSlice, progressMs: number): Promise<RemoteRunner> {
    const { path, execArgv } = workerEntry();
    const child = fork(path, [], { execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
    const runner = new RemoteRunner(child);
    await runner.#request({ t: 'init', slice, progressMs }, 'ready');
    return runner;
  }

  async connect(): Promise<void> {
    await this.#request({ t: 'connect' }, 'connected');
  }

  async warmup(): Promise<void> {
    await this.#request({ t: 'warmup' }, 'warmed');
  }

  async run(): Promise<void> {
    await this.#request({ t: 'run' }, 'ran');
  }

  async close(): Promise<RunnerResult> {
    const msg = await this.#request({ t: 'close' }, 'result');
    if (msg.t !== 'result') throw new BenchError('BENCH_WORKER_FAILED', `load worker answered ${msg.t}`);
    return msg.result;
  }

  progress(): RunnerProgress {
    return this.#progress;
  }

  abort(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }

  #request(msg: ToWorker, expect: Reply): Promise<FromWorker> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiting = { expect, resolve, reject };
      this.#child.send(msg, (err) => {
        if (err) this.#onFailure(err);
      });
    });
  }

  #onMessage = (msg: FromWorker): void => {
    if (msg.t === 'progress') {
      const rtt = createHistogram();
      mergeEncoded(rtt, msg.rtt);
      this.#progress = { counters: msg.counters, rtt };
      return;
    }
    if (msg.t === 'fatal') {
      this.#onFailure(new BenchError('BENCH_WORKER_FAILED', `load worker failed: ${msg.message}`));
      return;
    }
    const waiting = this.#waiting;
    if (waiting === undefined || waiting.expect !== msg.t) return;
    this.#waiting = undefined;
    waiting.resolve(msg);
  };

  #onFailure = (err: Error): void => {
    this.#failure ??= err instanceof BenchError ? err : new BenchError('BENCH_WORKER_FAILED', `load worker: ${err.message}`, { cause: err });
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
    this.abort();
  };

  #onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    // Exiting after the result is normal; exiting while a reply is awaited is not.
    // The last IPC message may still be in the pipe when 'exit' fires: give it a moment.
    if (this.#waiting === undefined) return;
    setTimeout(() => {
      if (this.#waiting === undefined) return;
      this.#onFailure(new BenchError('BENCH_WORKER_FAILED', `load worker exited (${signal ?? `code ${code ?? '?'}`}) mid-run`));
    }, 200);
  };
}
