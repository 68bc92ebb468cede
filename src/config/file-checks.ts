import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { shown } from './problems.js';

/**
 * What is wrong with `path` (absolute) as the log file, or undefined. The
 * gateway creates the file but never its folder (a typo must not scatter
 * logs), so the folder has to exist; the file itself need not, yet.
 * Whether the gateway's user may write there is checked when it starts.
 */
export function logFileProblem(path: string): string | undefined {
  const dir = dirname(path);
  try {
    if (!statSync(dir).isDirectory()) return `${shown(dir)} is not a folder`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? `folder ${shown(dir)} does not exist` : `folder ${shown(dir)} cannot be read (${code ?? String(err)})`;
  }
  try {
    if (statSync(path).isDirectory()) return `${shown(path)} is a folder: name a file in it`;
  } catch {
    // Not there yet: created at start.
  }
  return undefined;
}
