import { performance } from 'node:perf_hooks';

const POLL_MS = 5;

/**
 * Resolves true once `cond()` holds, false after `timeoutMs` or as soon as `stop()` does.
 * Polling keeps the phases simple: nothing to wire into every event that may end a wait.
 */
export function waitUntil(cond: () => boolean, timeoutMs: number, stop: () => boolean): Promise<boolean> {
  if (cond()) return Promise.resolve(true);
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const ok = cond();
      if (ok || stop() || performance.now() >= deadline) {
        clearInterval(timer);
        resolve(ok);
      }
    }, POLL_MS);
  });
}
