// Builds the C load generator (bench/loadgen/loadgen.c) when its binary is missing or older than
// the source. No npm dependency: a C compiler is all it takes (CI installs g++, and with it cc).
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const LOADGEN_SOURCE = join(root, 'bench/loadgen/loadgen.c');
export const LOADGEN_BINARY = join(root, 'build/loadgen/loadgen');

function mtime(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function compile(output: string): Promise<void> {
  const args = ['-O2', '-Wall', '-Wextra', '-o', output, LOADGEN_SOURCE];
  return new Promise((resolve, reject) => {
    execFile('cc', args, { cwd: root, timeout: 120_000 }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`could not build the load generator (cc ${args.map((a) => relative(root, a) || a).join(' ')}): ${stderr.trim() || err.message}`));
    });
  });
}

let pending: Promise<string> | undefined;

/** The load generator's binary, compiled first if it is missing or older than its source. */
export function loadgenPath(): Promise<string> {
  pending ??= build().catch((err: unknown) => {
    pending = undefined; // a later call may try again (e.g. after the compiler is installed)
    throw err;
  });
  return pending;
}

async function build(): Promise<string> {
  const source = mtime(LOADGEN_SOURCE);
  if (source === undefined) throw new Error(`the load generator's source is missing: ${LOADGEN_SOURCE}`);
  const binary = mtime(LOADGEN_BINARY);
  if (binary !== undefined && binary >= source) return LOADGEN_BINARY;
  mkdirSync(dirname(LOADGEN_BINARY), { recursive: true });
  // Built beside it and renamed into place: another process building at the same moment, or
  // running the old binary, never sees half a file.
  const temporary = `${LOADGEN_BINARY}.${process.pid}.tmp`;
  try {
    await compile(temporary);
    renameSync(temporary, LOADGEN_BINARY);
  } finally {
    rmSync(temporary, { force: true });
  }
  return LOADGEN_BINARY;
}
