import type { PerIpLimits } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { PerIpTable, limitKey, type IpEntry } from './per-ip-table.js';
import { takeToken } from './token-bucket.js';

/**
 * The per-client-address limits, with their state kept across reloads:
 *
 * - at accept, a cap on open TCP connections per address (RouteGuards.socketCap,
 *   about twice the largest perIp.maxConnections), so a slowloris from one
 *   address cannot hold far more sockets than a legitimate heavy client could;
 * - at the handshake, the handshake-rate token bucket and the count of open
 *   sessions, in a scope: the top level, or a route that overrides perIp.
 */
export class PerIpLimiter {
  readonly #sessions: PerIpTable;
  readonly #sockets: PerIpTable;

  constructor(maxEntries?: number) {
    this.#sessions = new PerIpTable(maxEntries);
    this.#sockets = new PerIpTable(maxEntries);
  }

  /** Entries held (both tables): bounded, whatever the number of sources. */
  get size(): number {
    return this.#sessions.size + this.#sockets.size;
  }

  /** A socket from `address` may be accepted: counted until releaseSocket(); undefined when over `cap`. */
  admitSocket(address: string, cap: number): IpEntry | undefined {
    const entry = this.#sockets.entry(limitKey(address));
    if (entry.conns >= cap) return undefined;
    entry.conns++;
    return entry;
  }

  /**
   * Rate first, then open sessions. On success the session counts against
   * its address until release(); `scope` is "" for the top-level limits.
   */
  admit(scope: string, client: string, limits: PerIpLimits, now: number): IpEntry | GatewayError {
    const key = limitKey(client);
    const entry = this.#sessions.entry(scope === '' ? key : `${scope} ${key}`);
    const rate = limits.handshakeRate.perSecond;
    const wait = takeToken(entry, now, rate, limits.handshakeBurst);
    if (wait > 0) {
      const seconds = Math.max(1, Math.ceil(wait / 1000));
      return new GatewayError('PER_IP_RATE', `${key}: over ${rate}/s handshakes (burst ${limits.handshakeBurst})`, {
        headers: [`Retry-After: ${seconds}`],
      });
    }
    if (entry.conns >= limits.maxConnections) {
      return new GatewayError('PER_IP_CONNECTIONS', `${key}: ${entry.conns} open connections (limit ${limits.maxConnections})`, {
        headers: ['Retry-After: 1'],
      });
    }
    entry.conns++;
    return entry;
  }

  /** Gives back what admit() or admitSocket() counted; call exactly once per success. */
  release(entry: IpEntry): void {
    if (entry.conns > 0) entry.conns--;
  }
}
