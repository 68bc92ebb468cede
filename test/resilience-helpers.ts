// Fixtures for the health, drain, reload and chaos tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import type { Gateway } from '../src/gateway.js';
import { listenLocal, closeHttp } from './helpers.js';

const BACKEND = join(import.meta.dirname, 'chaos-backend.ts');

/** These tests open hundreds of connections from 127.0.0.1: the per-IP limits must not get in the way. */
export const NO_PER_IP_LIMITS = 'perIp: { maxConnections: 100000, handshakeRate: 0 }';

/** A backend in its own process (test/chaos-backend.ts). */
export interface ProcessBackend {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnBackend(name: string, port = 0): Promise<ProcessBackend> {
  const proc = spawn(process.execPath, ['--import', 'tsx', BACKEND, name, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(proc, 'exit').then(() => undefined);
  const bound = await new Promise<number>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m === null) return;
      proc.stdout!.off('data', onData);
      resolve(Number(m[1]));
    };
    proc.stdout!.on('data', onData);
    void exited.then(() => reject(new Error(`backend ${name} exited before listening`)));
  });
  return {
    name,
    port: bound,
    url: `ws://127.0.0.1:${bound}`,
    proc,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** An in-process backend whose /health answer can be switched; WebSocket connections get "hello NAME", then an echo. */
export interface SwitchableBackend {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  healthy: boolean;
  readonly server: Server;
  close(): Promise<void>;
}

export async function switchableBackend(name: string): Promise<SwitchableBackend> {
  const server = createServer((req, res) => {
    res.statusCode = req.url === '/health' && backend.healthy ? 200 : 503;
    res.end(name);
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    ws.send(`hello ${name}`);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = await listenLocal(server);
  const backend: SwitchableBackend = {
    name,
    port,
    url: `ws://127.0.0.1:${port}`,
    healthy: true,
    server,
    async close() {
      await closeHttp(server, wss);
    },
  };
  return backend;
}

/** A client that knows which backend it reached (from the "hello NAME" greeting) and how it was closed. */
export interface TaggedClient {
  readonly ws: WebSocket;
  readonly backend: string;
  /** Set when the connection closed. */
  closed: { readonly code: number; readonly at: number } | undefined;
  readonly closedP: Promise<void>;
}

export async function openTagged(url: string, timeoutMs = 10_000): Promise<TaggedClient> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('error', () => {});
  const greeting = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no greeting within ${timeoutMs}ms`));
    }, timeoutMs);
    ws.once('message', (m: Buffer) => {
      clearTimeout(timer);
      resolve(m.toString());
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`handshake answered ${res.statusCode}`));
    });
    ws.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`closed (${code}) before the greeting`));
    });
  });
  const client: TaggedClient = {
    ws,
    backend: greeting.replace(/^hello /, ''),
    closed: undefined,
    closedP: undefined as unknown as Promise<void>,
  };
  (client as { closedP: Promise<void> }).closedP = new Promise<void>((resolve) => {
    ws.once('close', (code) => {
      client.closed = { code, at: Date.now() };
      resolve();
    });
  });
  return client;
}

/** Opens `n` tagged clients, `batch` at a time. */
export async function openMany(url: string, n: number, batch = 50): Promise<TaggedClient[]> {
  const out: TaggedClient[] = [];
  for (let i = 0; i < n; i += batch) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => openTagged(url)))));
  }
  return out;
}

/** Sends a message and waits for it to come back (the echo), within `timeoutMs`. */
export async function roundTrip(client: TaggedClient, text: string, timeoutMs = 10_000): Promise<void> {
  const ws = client.ws;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`no echo from ${client.backend} within ${timeoutMs}ms`));
    }, timeoutMs);
    const onMessage = (m: Buffer): void => {
      if (m.toString() !== text) return;
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve();
    };
    ws.on('message', onMessage);
    ws.send(text);
  });
}

export function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

/** A JSON request to the gateway's admin listener. */
export async function admin(
  gw: Gateway,
  method: string,
  path: string,
  token?: string,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const a = gw.adminAddress!;
  const res = await fetch(`http://127.0.0.1:${a.port}${path}`, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers };
}

/** Writes a config file in a fresh temporary folder. */
export async function tempConfig(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wsgate-reload-'));
  const file = join(dir, 'wsgate.yaml');
  await writeFile(file, text);
  return file;
}
