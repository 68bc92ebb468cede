import { GatewayError } from '../errors.js';
import type { ToPrimary } from './messages.js';
import { refusalError, type AdmitRequest, type Admission, type SharedState, type Ticket } from './shared-state.js';

/** The longest a handshake waits for the primary's answer; past it the handshake gets 503. */
const ANSWER_TIMEOUT = 2_000;

interface PrimaryTicket extends Ticket {
  /** The primary's number for this ticket. */
  readonly n: number;
}

interface Pending {
  readonly req: AdmitRequest;
  readonly resolve: (a: Admission) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * A cluster worker's view of the instance-wide limits: each admit is one
 * IPC round trip to the primary, which keeps the counts for every worker (and
 * releases a dead worker's at once).
 */
export class PrimaryState implements SharedState {
  readonly #send: (m: ToPrimary) => void;
  readonly #pending = new Map<number, Pending>();
  #seq = 0;
  #held = 0;

  constructor(send: (m: ToPrimary) => void) {
    this.#send = send;
  }

  get held(): number {
    return this.#held;
  }

  admit(req: AdmitRequest): Promise<Admission> {
    const id = ++this.#seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        // A late "yes" is given back in answered(): nothing leaks.
        this.#pending.delete(id);
        resolve(new GatewayError('SHARED_STATE_UNAVAILABLE', 'the cluster primary did not answer in time'));
      }, ANSWER_TIMEOUT);
      this.#pending.set(id, { req, resolve, timer });
      this.#send({ t: 'admit', id, req });
    });
  }

  /** The primary's answer to admit `id`: a ticket number, or why not. */
  answered(id: number, n: number | undefined, refusal: Parameters<typeof refusalError>[0] | undefined): void {
    const p = this.#pending.get(id);
    if (p === undefined) {
      if (n !== undefined) this.#send({ t: 'release', n });
      return;
    }
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (n === undefined) return p.resolve(refusalError(refusal ?? { code: 'SHARED_STATE_UNAVAILABLE', detail: 'no answer' }));
    this.#held++;
    const ticket: PrimaryTicket = { scope: p.req.scope, key: p.req.key, route: p.req.route, n };
    p.resolve(ticket);
  }

  release(ticket: Ticket): void {
    if (this.#held > 0) this.#held--;
    this.#send({ t: 'release', n: (ticket as PrimaryTicket).n });
  }

  close(): Promise<void> {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.resolve(new GatewayError('SHUTTING_DOWN', 'the worker is stopping'));
    }
    this.#pending.clear();
    return Promise.resolve();
  }
}
