// The processes behind the soak's load: `wsgate echo` backends on fixed ports
// (so that one can be killed and started again where the gateway expects it),
// the flooding backend, and the gateway itself, whose JSON log goes straight
// to a file (every line is classified at the end, none may be lost in a pipe).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { spawnChild } from '../suite/proc.js';
import type { Child } from '../suite/proc.js';

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

async function waitForOutput(child: Child, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (pattern.test(child.output())) return;
    if (child.hasExited()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const why = child.hasExited() ? 'exited' : `did not get ready within ${START_TIMEOUT_MS / 1000} s`;
  await child.stop();
  throw new Error(`${child.name} ${why}:\n${child.output().trim()}`);
}

/** A backend on a fixed port that can be killed (SIGKILL, as a crash) and started again. */
export class Backend {
  readonly name: string;
  readonly port: number;
  readonly #argv: readonly string[];
  readonly #cwd: string;
  readonly #ready: RegExp;
  #child: Child | undefined;

  constructor(name: string, port: number, argv: readonly string[], cwd: string, ready: RegExp) {
    this.name = name;
    this.port = port;
    this.#argv = argv;
    this.#cwd = cwd;
    this.#ready = ready;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined && !this.#child.hasExited();
  }

  async start(): Promise<void> {
    const [cmd, ...args] = this.#argv;
    const child = spawnChild(this.name, cmd as string, args, { cwd: this.#cwd });
    await waitForOutput(child, this.#ready);
    this.#child = child;
  }

  /** SIGKILL, as a crash: its connections get resets from the kernel, no close frames. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child === undefined || child.hasExited()) return;
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    await child?.stop();
  }
}

/** `wsgate echo --port P` (the load tool's fast echo backend). */
export function echoBackend(name: string, port: number, wsgate: readonly string[], root: string): Backend {
  return new Backend(name, port, [...wsgate, 'echo', '--port', String(port)], root, /listening on ws:\/\/127\.0\.0\.1:\d+\//);
}

export function floodBackend(port: number, root: string): Backend {
  const entry = fileURLToPath(new URL('./flood-backend.ts', import.meta.url));
  return new Backend(
    'flood backend',
    port,
    [process.execPath, '--import', 'tsx', '--max-semi-space-size=1', entry, '--port', String(port)],
    root,
    /listening on ws:/,
  );
}

/** What the reloads change back and forth: a target's weight and a limit. */
export interface Reloadable {
  readonly weight0: number;
  /** Bytes (a whole number of KiB). */
  readonly maxMessageBytes: number;
}

export interface GatewayLayout {
  readonly port: number;
  readonly adminPort: number;
  readonly echoUrls: readonly string[];
  readonly floodUrl: string;
  readonly pingInterval: string;
  readonly pongTimeout: string;
  readonly idleTimeout: string;
  readonly drainPeriod: string;
}

/**
 * Inspect mode with keepalive pings short enough to fire many times in a run, metrics on, an
 * active health check (plain GET: `wsgate echo` answers 200) so a killed backend is also seen
 * between handshakes, and per-IP limits out of the way (the whole load comes from a few loopback
 * addresses). maxBufferedBytes is lowered so that the slow consumers reach it quickly.
 */
export function gatewayConfig(l: GatewayLayout, r: Reloadable): string {
  return stringify({
    listeners: [{ address: `127.0.0.1:${l.port}` }],
    admin: { address: `127.0.0.1:${l.adminPort}`, metrics: true },
    routes: [
      { name: 'flood', match: { path: '/flood' }, upstream: 'flood' },
      { name: 'echo', match: { path: '/' }, upstream: 'echo' },
    ],
    upstreams: {
      echo: {
        targets: l.echoUrls.map((url, i) => ({ url, weight: i === 0 ? r.weight0 : 1 })),
        drainPeriod: l.drainPeriod,
        healthCheck: { type: 'http', path: '/', interval: '2s', timeout: '1s' },
      },
      flood: { targets: [{ url: l.floodUrl }] },
    },
    limits: {
      maxConnections: 100_000,
      perIp: { maxConnections: 100_000, handshakeRate: 0 },
      maxBufferedBytes: '1MiB',
      maxMessageBytes: `${r.maxMessageBytes / 1024}KiB`,
      idleTimeout: l.idleTimeout,
    },
    relay: { mode: 'inspect', pingInterval: l.pingInterval, pongTimeout: l.pongTimeout },
    shutdown: { drainTimeout: '2s' },
    log: { level: 'info', accessLog: true },
  });
}

const liveGateways = new Set<ChildProcess>();

export function killAllGateways(): void {
  for (const g of liveGateways) g.kill('SIGKILL');
  liveGateways.clear();
}

/** One `wsgate start`, its stdout (the JSON log) and stderr each in a file. */
export class GatewayProcess {
  readonly configFile: string;
  readonly logFile: string;
  readonly stderrFile: string;
  readonly #child: ChildProcess;
  #exited = false;
  #exitCode: string | undefined;
  readonly #exit: Promise<void>;

  private constructor(child: ChildProcess, configFile: string, logFile: string, stderrFile: string) {
    this.#child = child;
    this.configFile = configFile;
    this.logFile = logFile;
    this.stderrFile = stderrFile;
    liveGateways.add(child);
    this.#exit = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exited = true;
        this.#exitCode = signal ?? `code ${code}`;
        liveGateways.delete(child);
        resolve();
      });
      child.once('error', (err) => {
        this.#exited = true;
        this.#exitCode = err.message;
        liveGateways.delete(child);
        resolve();
      });
    });
  }

  static async start(
    wsgate: readonly string[],
    root: string,
    configFile: string,
    configText: string,
    logFile: string,
    stderrFile: string,
  ): Promise<GatewayProcess> {
    writeFileSync(configFile, configText);
    const out = openSync(logFile, 'a');
    const err = openSync(stderrFile, 'a');
    const [cmd, ...args] = wsgate;
    let child: ChildProcess;
    try {
      child = spawn(cmd as string, [...args, 'start', '-c', configFile], { cwd: root, stdio: ['ignore', out, err] });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const gw = new GatewayProcess(child, configFile, logFile, stderrFile);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!readFileSync(logFile, 'utf8').includes('"msg":"wsgate started"')) {
      if (gw.#exited || Date.now() > deadline) {
        await gw.stop();
        const why = gw.#exited ? `exited (${gw.#exitCode})` : 'did not start in time';
        throw new Error(`the gateway ${why}:\n${readFileSync(logFile, 'utf8').slice(-4000)}${readFileSync(stderrFile, 'utf8').slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return gw;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get exited(): boolean {
    return this.#exited;
  }

  get exitCode(): string | undefined {
    return this.#exitCode;
  }

  /** Re-reads the config file (written by the caller first). */
  sighup(): void {
    if (!this.#exited) this.#child.kill('SIGHUP');
  }

  /** SIGTERM (the gateway drains for shutdown.drainTimeout), SIGKILL if it takes too long. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exit;
    clearTimeout(timer);
  }
}
