import type { Logger } from '../observability/logger.js';
import type { IdleSweeper } from '../relay/idle-sweeper.js';
import type { Relay } from '../relay/relay.js';
import type { Session } from './upgrade.js';
import type { GatewayMetrics } from '../observability/metrics.js';

/** What a session needs from the gateway that runs it. */
export interface SessionHost {
  readonly log: Logger;
  readonly accessLog: boolean;
  readonly sweeper: IdleSweeper<Relay>;
  /** undefined when admin.metrics is false: nothing is counted. */
  readonly metrics: GatewayMetrics | undefined;
  /** Shutdown has begun: no retries, no new sessions. */
  readonly draining: boolean;
  nextId(): number;
  sessionEnded(session: Session): void;
  /** Logs a refused handshake ("handshake rejected"), rate-limited so a flood cannot flood the log. */
  logRejected?(fields: Record<string, unknown>): void;
}
