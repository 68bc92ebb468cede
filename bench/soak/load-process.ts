// The parent's side of a soak load process: forks load-worker.ts, hands it
// its spec, keeps its latest counts, passes the endings its clients saw to the
// soak, and can stop it gracefully, freeze it (SIGSTOP: its connections go
// silent without a FIN) or kill it.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { emptyCounts } from './chatty-load.js';
import type { CloseRecord, FromLoad, LoadCounts, LoadSpec } from './load-protocol.js';

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

const live = new Set<ChildProcess>();

/** Last resort on exit: no load process outlives the soak (SIGKILL also ends a stopped one). */
export function killAllLoads(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

export type CloseSink = (records: readonly CloseRecord[], from: LoadProcess) => void;

export class LoadProcess {
  readonly name: string;
  readonly spec: LoadSpec;
  readonly #child: ChildProcess;
  readonly #sink: CloseSink;
  #latest: LoadCounts = emptyCounts();
  #exited = false;
  /** Set when the soak itself ends the process (SIGKILL): its exit is no failure. */
  #killedByUs = false;
  /** Why it ended when nobody asked it to, else undefined. */
  #failure: string | undefined;
  #onReady: (() => void) | undefined;
  #onStopped: (() => void) | undefined;
  readonly #exit: Promise<void>;

  private constructor(name: string, spec: LoadSpec, child: ChildProcess, sink: CloseSink) {
    this.name = name;
    this.spec = spec;
    this.#child = child;
    this.#sink = sink;
    live.add(child);
    child.on('message', (msg: FromLoad) => this.#onMessage(msg));
    child.on('error', (err) => {
      this.#failure ??= `${name}: ${err.message}`;
    });
    this.#exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exited = true;
        live.delete(child);
        if (!this.#killedByUs && code !== 0) this.#failure ??= `${name} exited (${signal ?? `code ${code}`})`;
        this.#onReady?.();
        this.#onStopped?.();
        resolve();
      });
    });
  }

  /** Forks the process (small young generation, as `wsgate bench` workers have) and waits until it is ready. */
  static async start(name: string, spec: LoadSpec, sink: CloseSink): Promise<LoadProcess> {
    const entry = fileURLToPath(new URL('./load-worker.ts', import.meta.url));
    const child = fork(entry, [], {
      execArgv: ['--import', 'tsx', '--max-semi-space-size=1'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    const p = new LoadProcess(name, spec, child, sink);
    child.send({ t: 'init', spec });
    await p.#waitFor((resolve) => (p.#onReady = resolve), READY_TIMEOUT_MS, 'ready');
    p.#child.send({ t: 'start' });
    return p;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get latest(): LoadCounts {
    return this.#latest;
  }

  get failure(): string | undefined {
    return this.#failure;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Closes its connections gracefully and lets it exit; returns its final counts. */
  async stop(): Promise<LoadCounts> {
    if (!this.#exited && this.#child.connected) {
      this.#child.send({ t: 'stop' }, (err) => {
        if (err) this.kill();
      });
      await this.#waitFor((resolve) => (this.#onStopped = resolve), STOP_TIMEOUT_MS, 'stopped').catch((err: Error) => {
        this.#failure ??= err.message;
      });
    }
    if (!this.#exited) {
      this.kill();
      await this.#exit;
    }
    return this.#latest;
  }

  /** SIGSTOP: the process keeps its sockets but never reads, answers a ping or sends a FIN again. */
  suspend(): void {
    if (!this.#exited) this.#child.kill('SIGSTOP');
  }

  kill(): void {
    this.#killedByUs = true;
    if (!this.#exited) this.#child.kill('SIGKILL');
  }

  async killAndWait(): Promise<void> {
    this.kill();
    await this.#exit;
  }

  #waitFor(arm: (resolve: () => void) => void, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not answer "${what}" within ${timeoutMs / 1000} s`)), timeoutMs);
      arm(() => {
        clearTimeout(timer);
        if (this.#exited && what === 'ready') reject(new Error(this.#failure ?? `${this.name} exited before it was ready`));
        else resolve();
      });
    });
  }

  #onMessage(msg: FromLoad): void {
    switch (msg.t) {
      case 'ready':
        return this.#onReady?.();
      case 'report':
        this.#latest = msg.counts;
        return this.#sink(msg.closes, this);
      case 'stopped':
        this.#latest = msg.counts;
        this.#sink(msg.closes, this);
        return this.#onStopped?.();
      case 'fatal':
        this.#failure ??= `${this.name} failed: ${msg.message}`;
        return;
    }
  }
}
