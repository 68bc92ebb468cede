import type { TargetState } from '../upstream/target-state.js';

/** Doublings after which the ejection length stops growing (it is capped by maxEjection long before). */
const MAX_DOUBLINGS = 30;

/**
 * Passive outlier ejection, fed by the sessions' own dials: a target whose
 * connect or upstream handshake fails `consecutiveFailures` times in a row is
 * ejected for baseEjection, doubling with each further ejection up to
 * maxEjection. It returns when the time is up, or earlier on a passing active
 * check. A target that stays in for maxEjection starts its next series at
 * baseEjection again. At most maxEjectionPercent of an upstream's targets are
 * out at once, so a wide failure (or the gateway's own network) cannot empty
 * the pool through ejection alone.
 */
export function dialFailed(state: TargetState, now = Date.now()): void {
  const config = state.group.config.outlier;
  // Dials that started before the ejection may still fail after it: they do not count.
  if (config.consecutiveFailures === 0 || state.ejectedUntil !== 0) return;
  if (++state.failures < config.consecutiveFailures) return;
  const members = state.group.members;
  let out = 0;
  for (const m of members) if (m.ejectedUntil !== 0) out++;
  if (out + 1 > Math.floor((members.length * config.maxEjectionPercent) / 100)) return;
  if (state.returnedAt === 0 || now - state.returnedAt >= config.maxEjection) state.ejections = 0;
  const ms = Math.min(config.maxEjection, config.baseEjection * 2 ** Math.min(state.ejections, MAX_DOUBLINGS));
  state.ejections++;
  const failures = state.failures;
  state.failures = 0;
  state.eject(ms, failures);
}

/** The target answered (a 101, or any HTTP answer): the failure series is over. */
export function dialSucceeded(state: TargetState): void {
  state.failures = 0;
}
