// Builds the C load generator (bench/loadgen/loadgen.c) and the C echo backend (echo.c) when a
// binary is missing or older than its source. No npm dependency: a C compiler is all it takes (CI
// installs g++, and with it cc).
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const LOADGEN_SOURCE = join(root, 'bench/loadgen/loadgen.c');
export const LOADGEN_BINARY = join(root, 'build/loadgen/loadgen');
const ECHO_SOURCE = join(root, 'bench/loadgen/echo.c');
const ECHO_BINARY = join(root, 'build/loadgen/echo');

function mtime(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function compile(source: string, output: string): Promise<void> {
  const args = ['-O2', '-Wall', '-Wextra', '-o', output, source];
  return new Promise((resolve, reject) => {
    execFile('cc', args, { cwd: root, timeout: 120_000 }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else
        reject(
          new Error(`could not build ${relative(root, source)} (cc ${args.map((a) => relative(root, a) || a).join(' ')}): ${stderr.trim() || err.message}`),
        );
    });
  });
}

const pending = new Map<string, Promise<string>>();

function built(source: string, binary: string): Promise<string> {
  let p = pending.get(binary);
  if (p === undefined) {
    p = build(source, binary).catch((err: unknown) => {
      pending.delete(binary); // a later call may try again (e.g. after the compiler is installed)
      throw err;
    });
    pending.set(binary, p);
  }
  return p;
}

/** The load generator's binary, compiled first if it is missing or older than its source. */
export function loadgenPath(): Promise<string> {
  return built(LOADGEN_SOURCE, LOADGEN_BINARY);
}

/** The C echo backend's binary, compiled first if it is missing or older than its source. */
export function echoPath(): Promise<string> {
  return built(ECHO_SOURCE, ECHO_BINARY);
}

async function build(sourcePath: string, binaryPath: string): Promise<string> {
  const source = mtime(sourcePath);
  if (source === undefined) throw new Error(`missing source: ${sourcePath}`);
  const binary = mtime(binaryPath);
  if (binary !== undefined && binary >= source) return binaryPath;
  mkdirSync(dirname(binaryPath), { recursive: true });
  // Built beside it and renamed into place: another process building at the same moment, or
  // running the old binary, never sees half a file.
  const temporary = `${binaryPath}.${process.pid}.tmp`;
  try {
    await compile(sourcePath, temporary);
    renameSync(temporary, binaryPath);
  } finally {
    rmSync(temporary, { force: true });
  }
  return binaryPath;
}
