import type { Logger } from './logger.js';

/** Logs each problem of a refused reload and that nothing changed; the result says the same to the caller. */
export function reloadRejected(log: Logger, errors: readonly string[]): { readonly ok: false; readonly errors: readonly string[] } {
  for (const problem of errors) log.error({ problem }, `reload rejected: ${problem}`);
  log.error({ problems: errors.length }, 'reload rejected; the running configuration stays in place');
  return { ok: false, errors };
}
