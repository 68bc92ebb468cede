import type { Logger } from './logger.js';
import type { TargetEvent, TargetState } from '../upstream/target-state.js';

/** One log line per change of a target's state (docs/operations.md lists them). */
export function logTargetEvent(log: Logger, state: TargetState, event: TargetEvent): void {
  const fields = { target: state.id, ...event };
  switch (event.kind) {
    case 'unhealthy':
      return log.warn(fields, `target unhealthy: ${event.reason}`);
    case 'ejected':
      return log.warn(fields, 'target ejected');
    case 'healthy':
    case 'returned':
    case 'drain':
    case 'drain complete':
    case 'undrained':
      return log.info(fields, `target ${event.kind}`);
  }
}
