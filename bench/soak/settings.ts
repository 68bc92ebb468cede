// What a soak run takes, and the budgets it must fit (checked before anything starts).
import { MAX_CONNECTIONS_PER_WORKER } from '../../src/bench/options.js';
import { openFileLimit } from '../scale/system.js';

export interface SoakSettings {
  /** Load time, after the chatty connections are open. */
  readonly minutes: number;
  /** Chatty connections in all (a tenth of them quiet), split over `loaders` processes. */
  readonly connections: number;
  readonly loaders: number;
  /** New chatty connections per second in all, at the start and when reconnecting. */
  readonly ramp: number;
  /** Messages per second per sending connection. */
  readonly ratePerConnection: number;
  readonly quietShare: number;
  readonly size: number;
  /** Handshake churn: cycles per second, at most this many at once. */
  readonly churnRate: number;
  readonly churnConcurrency: number;
  /** Slow consumers, and the connections of each vanishing process. */
  readonly slow: number;
  readonly vanish: number;
  /** relay.pingInterval / pongTimeout and the echo upstream's drainPeriod, in seconds. */
  readonly pingIntervalS: number;
  readonly pongTimeoutS: number;
  /** limits.idleTimeout, in seconds: the quiet connections (pings do not count as data) are closed by it, several times a run. */
  readonly idleTimeoutS: number;
  readonly drainPeriodS: number;
  /** Samples every `sampleS`, a row every `rowS`. */
  readonly sampleS: number;
  readonly rowS: number;
  /** The slopes are taken over the last `windowMin` minutes (at most 2/3 of the run), and must change less than `flatPct` % of the mean over it. */
  readonly windowMin: number;
  readonly flatPct: number;
}

export function defaults(connections: number): Omit<SoakSettings, 'minutes' | 'connections' | 'loaders'> {
  return {
    ramp: 1000,
    ratePerConnection: 0.5,
    quietShare: 0.1,
    size: 64,
    churnRate: 20,
    churnConcurrency: 16,
    slow: Math.max(4, Math.round(connections / 125)),
    vanish: Math.max(10, Math.round(connections / 20)),
    pingIntervalS: 10,
    pongTimeoutS: 5,
    idleTimeoutS: 240,
    drainPeriodS: 10,
    sampleS: 5,
    rowS: 30,
    windowMin: 10,
    flatPct: 5,
  };
}

/** The slope window: the last `windowMin` minutes, but never the first third of a short run (the start-up's growth). */
export function slopeWindowMin(s: SoakSettings): number {
  return Math.min(s.windowMin, (s.minutes * 2) / 3);
}

/** Descriptors the gateway needs besides its sessions' (listeners, admin, log, libuv, dials in progress). */
const FD_MARGIN = 1000;

/** Problems that would make the run fail for the machine's reasons, not the gateway's; empty when it fits. */
export function budgetProblems(s: SoakSettings): string[] {
  const limit = openFileLimit();
  const perLoader = Math.ceil(s.connections / s.loaders);
  // A frozen vanishing process and its successor overlap; each session holds 2 descriptors in the gateway.
  const sessions = s.connections + 2 * s.vanish + s.slow + s.churnConcurrency;
  const problems: string[] = [];
  if (perLoader > MAX_CONNECTIONS_PER_WORKER)
    problems.push(`${perLoader} connections per load process (at most ${MAX_CONNECTIONS_PER_WORKER}): raise --loaders`);
  if (2 * sessions + FD_MARGIN > limit) problems.push(`about ${2 * sessions + FD_MARGIN} descriptors in the gateway, over the open-file limit of ${limit}`);
  // With one echo backend drained and one killed, the third holds every chatty session.
  if (s.connections + 2 * s.vanish + s.churnConcurrency + FD_MARGIN > limit)
    problems.push(`one echo backend may hold all ${s.connections} connections, over the open-file limit of ${limit}`);
  return problems;
}
