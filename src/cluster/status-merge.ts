import type { TargetStatus, UpstreamStatus } from '../admin/status.js';
import type { TargetStateStatus } from '../upstream/target-state.js';

/**
 * One view of the instance from its workers' views: counts add up (open
 * connections, connections a drain has yet to close), a target is ejected or
 * failing if any worker found it so, and available only where every worker
 * would still pick it. Health and drains are the same in every worker: the
 * primary decides them.
 */
export function mergeUpstreams(lists: ReadonlyArray<readonly UpstreamStatus[]>): UpstreamStatus[] {
  const [first, ...rest] = lists;
  if (first === undefined) return [];
  return first.map((u) => {
    const others = rest.map((l) => l.find((o) => o.name === u.name));
    const targets = u.targets.map(
      (t) =>
        mergeTarget(
          t,
          others.map((o) => o?.targets.find((x) => x.id === t.id)),
        ) as TargetStatus,
    );
    const removed = u.removed.map((t) =>
      mergeTarget(
        t,
        others.map((o) => o?.removed.find((x) => x.id === t.id)),
      ),
    );
    return { ...u, available: targets.reduce((n, t) => n + (t.available ? 1 : 0), 0), targets, removed };
  });
}

function mergeTarget<T extends TargetStateStatus>(t: T, others: ReadonlyArray<TargetStateStatus | undefined>): T {
  let { activeConnections, drainPending, consecutiveFailures, ejected, available } = t;
  let ejectedUntil = t.ejectedUntil;
  for (const o of others) {
    if (o === undefined) continue;
    activeConnections += o.activeConnections;
    drainPending += o.drainPending;
    consecutiveFailures = Math.max(consecutiveFailures, o.consecutiveFailures);
    ejected ||= o.ejected;
    available &&= o.available;
    if (o.ejectedUntil !== undefined && (ejectedUntil === undefined || o.ejectedUntil > ejectedUntil)) ejectedUntil = o.ejectedUntil;
  }
  return { ...t, activeConnections, drainPending, consecutiveFailures, ejected, available, ejectedUntil };
}
