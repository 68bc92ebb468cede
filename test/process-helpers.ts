import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

// wsgate as a user runs it: its command line in a process of its own.

export const MAIN = join(import.meta.dirname, '..', 'src', 'main.ts');
// Resolved here, not by the child: a child started in a temp dir would not find tsx from there.
export const TSX = import.meta.resolve('tsx');

/** `signal`: a test's own, so that a test that times out kills its process rather than leaving it to hold the run open. */
export interface SpawnOptions {
  readonly cwd?: string;
  readonly signal?: AbortSignal;
}

export function wsgate(args: string[], nodeFlags: string[] = [], env: NodeJS.ProcessEnv = process.env, opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [...nodeFlags, '--import', TSX, MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
    ...opts,
    killSignal: 'SIGKILL',
  });
  // Only the abort: the test has already failed by then.
  child.on('error', () => {});
  return child;
}

export async function run(args: string[], opts: SpawnOptions = {}): Promise<{ code: number; out: string; err: string }> {
  const child = wsgate(args, [], process.env, opts);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close', not 'exit': by then every line the process wrote has been read.
  const [code] = (await once(child, 'close')) as [number];
  return { code, out, err };
}

/** A gateway on 127.0.0.1:port in front of one target, then `rest` (more top-level keys). */
export function gatewayConfig(port: number, target: string, rest: string): string {
  return `listeners: [{ address: 127.0.0.1:${port} }]\nroutes: [{ match: { path: / }, upstream: app }]\nupstreams: { app: { targets: [{ url: "${target}" }] } }\n${rest}\n`;
}

export async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wsgate-cli-'));
  const file = join(dir, 'wsgate.yaml');
  await writeFile(file, text);
  return file;
}

export interface Started {
  readonly child: ChildProcess;
  out(): string;
  err(): string;
  /** Resolves with the exit code, or the signal's name if a signal ended the process. */
  readonly exited: Promise<number | string>;
}

/** `wsgate start …`, resolved once it has logged 'wsgate started'; rejects, with what it printed, if it exits first. */
export async function startWsgate(args: string[], opts: SpawnOptions): Promise<Started> {
  const child = wsgate(['start', ...args], [], process.env, opts);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close', not 'exit': by then every line the process wrote has been read.
  const exited = new Promise<number | string>((resolve) => child.once('close', (code: number | null, signal: string) => resolve(code ?? signal)));
  const started: Started = { child, out: () => out, err: () => err, exited };
  await printed(started, 'wsgate started');
  return started;
}

/** Waits until stdout holds `text`; rejects if the process ends without printing it. */
export function printed(p: Started, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!p.out().includes(text)) return;
      p.child.stdout!.off('data', check);
      resolve();
    };
    p.child.stdout!.on('data', check);
    check();
    void p.exited.then((how) => {
      p.child.stdout!.off('data', check);
      reject(new Error(`wsgate ended (${how}) before printing ${JSON.stringify(text)}\nstdout:\n${p.out()}\nstderr:\n${p.err()}`));
    });
  });
}

/** The stdout lines that are JSON log records. */
export function jsonLines(out: string): Record<string, unknown>[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** An executable on PATH or in /usr/sbin (haproxy lives there, outside a normal user's PATH), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'].filter((d) => d !== '');
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}
