// The parent's side of a c50k load process: forks hold-worker.ts (its own
// open-file budget and source address), asks for one step at a time, and keeps
// the latest counts it reported.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { HoldCounts, HoldSpec } from './holder.js';
import type { FromHolder, HoldStep, ToHolder } from './hold-protocol.js';

const live = new Set<ChildProcess>();

/** Last resort on exit: no load process outlives the run. */
export function killAllHolders(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

interface Waiting {
  readonly step: HoldStep | 'ready';
  resolve(counts: HoldCounts | undefined): void;
  reject(err: Error): void;
}

export class HoldProcess {
  readonly #child: ChildProcess;
  readonly name: string;
  #latest: HoldCounts | undefined;
  #waiting: Waiting | undefined;
  #failure: Error | undefined;

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.#child = child;
    live.add(child);
    child.on('message', this.#onMessage);
    child.on('error', (err) => this.#fail(err));
    child.on('exit', (code, signal) => {
      live.delete(child);
      // The reply to the last step may still be in the pipe when 'exit' fires.
      setTimeout(() => this.#fail(new Error(`${name} exited (${signal ?? `code ${code}`})`)), 200);
    });
  }

  /** Forks a load process (with a small young generation, as `wsgate bench` workers have) and hands it its share. */
  static async start(name: string, spec: HoldSpec): Promise<HoldProcess> {
    const entry = fileURLToPath(new URL('./hold-worker.ts', import.meta.url));
    const child = fork(entry, [], {
      execArgv: ['--import', 'tsx', '--max-semi-space-size=1'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    const p = new HoldProcess(name, child);
    await p.#request({ t: 'init', spec }, 'ready');
    return p;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** The counts of the last report (every second) or step. */
  get latest(): HoldCounts | undefined {
    return this.#latest;
  }

  open(): Promise<HoldCounts> {
    return this.#step({ t: 'open' }, 'open');
  }

  echo(timeoutMs: number): Promise<HoldCounts> {
    return this.#step({ t: 'echo', timeoutMs }, 'echo');
  }

  cut(): Promise<HoldCounts> {
    return this.#step({ t: 'cut' }, 'cut');
  }

  /** Ends the process; its sockets close with it. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.disconnect();
    const kill = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  }

  async #step(msg: ToHolder, step: HoldStep): Promise<HoldCounts> {
    return (await this.#request(msg, step)) as HoldCounts;
  }

  #request(msg: ToHolder, step: Waiting['step']): Promise<HoldCounts | undefined> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiting = { step, resolve, reject };
      this.#child.send(msg, (err) => {
        if (err) this.#fail(err);
      });
    });
  }

  #onMessage = (msg: FromHolder): void => {
    if (msg.t === 'fatal') return this.#fail(new Error(`${this.name} failed: ${msg.message}`));
    if (msg.t === 'progress' || msg.t === 'done') this.#latest = msg.counts;
    const waiting = this.#waiting;
    const answered = msg.t === 'ready' ? waiting?.step === 'ready' : msg.t === 'done' && waiting?.step === msg.step;
    if (!answered || waiting === undefined) return;
    this.#waiting = undefined;
    waiting.resolve(msg.t === 'done' ? msg.counts : undefined);
  };

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }
}
