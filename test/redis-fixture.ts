// A real redis-server for the shared-state tests: its own process on a free
// port, no persistence, killed when the test is done (or the test process exits).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { freePort } from './helpers.js';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** The current server's PID (a new one after restart()). */
  readonly pid: number;
  stop(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing (a hung or overloaded Redis). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** A new server on the same port, with no data (a Redis restarted without persistence). */
  restart(): Promise<void>;
}

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
const START_TIMEOUT = 10_000;

/** Every server still running, killed if the process exits before a test stopped it. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
});

export async function startRedis(): Promise<RedisServer> {
  let lastError: unknown;
  // A port free a moment ago may be taken by the time the server binds it: try another.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return new Server(port, await spawnServer(port));
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

class Server implements RedisServer {
  readonly port: number;
  readonly url: string;
  #child: ChildProcess;
  #paused = false;

  constructor(port: number, child: ChildProcess) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  pause(): void {
    this.#child.kill('SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    this.#child.kill('SIGCONT');
    this.#paused = false;
  }

  async stop(): Promise<void> {
    if (this.#paused) this.resume();
    await killServer(this.#child);
  }

  async restart(): Promise<void> {
    await this.stop();
    // The old socket may linger a moment (redis-server binds with SO_REUSEADDR, so rarely).
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        this.#child = await spawnServer(this.port);
        return;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
}

async function spawnServer(port: number): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'];
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  child.once('exit', () => {
    exited = true;
    running.delete(child);
  });
  child.once('error', (err) => {
    output += `\n${err.message}`;
    exited = true;
    running.delete(child);
  });
  const deadline = Date.now() + START_TIMEOUT;
  while (!exited && Date.now() < deadline) {
    if (await answersPing(port)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  await killServer(child);
  throw new Error(`redis-server on port ${port} did not start${exited ? ' (it exited)' : ''}: ${output.trim()}`);
}

/** One PING on a fresh connection: true on +PONG. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1_000);
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => done(data.toString('latin1').startsWith('+PONG')));
  });
}

/** SIGTERM, then SIGKILL if it has not gone after 5 s. */
async function killServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !running.has(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
