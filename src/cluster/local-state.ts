import { GatewayError } from '../errors.js';
import { PerIpLimiter } from '../policy/per-ip-limiter.js';
import type { IpEntry } from '../policy/per-ip-table.js';
import type { AdmitRequest, Admission, SharedState, Ticket } from './shared-state.js';

interface LocalTicket extends Ticket {
  readonly entry: IpEntry;
}

/**
 * The limits kept in this process: the whole gateway when it runs as one
 * process, and the instance's view in a cluster primary, which answers its
 * workers' admits with it. Synchronous: no handshake waits on it.
 */
export class LocalState implements SharedState {
  readonly #perIp = new PerIpLimiter();
  readonly #perRoute = new Map<string, number>();
  #held = 0;

  get held(): number {
    return this.#held;
  }

  admit(req: AdmitRequest): Admission {
    const entry = this.#perIp.admit(req.scope, req.key, req.perIp, Date.now());
    if (entry instanceof GatewayError) return entry;
    const inRoute = this.#perRoute.get(req.route) ?? 0;
    if (this.#held >= req.globalMax || inRoute >= req.routeMax) {
      this.#perIp.release(entry);
      return new GatewayError('OVER_CAPACITY', `maxConnections reached (route ${req.route})`);
    }
    this.#held++;
    this.#perRoute.set(req.route, inRoute + 1);
    const ticket: LocalTicket = { scope: req.scope, key: req.key, route: req.route, entry };
    return ticket;
  }

  release(ticket: Ticket): void {
    this.#perIp.release((ticket as LocalTicket).entry);
    if (this.#held > 0) this.#held--;
    const n = this.#perRoute.get(ticket.route) ?? 0;
    if (n <= 1) this.#perRoute.delete(ticket.route);
    else this.#perRoute.set(ticket.route, n - 1);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
