import { GatewayError } from '../errors.js';
import { admitToWire, type AdmitWire, type AnswerWire, type ToPrimary } from './messages.js';
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
 * A cluster worker's view of the instance-wide limits: the primary keeps the
 * counts for every worker (and releases a dead worker's at once). Admits and
 * releases are sent in one batch per event-loop turn, and answered in one.
 */
export class PrimaryState implements SharedState {
  readonly #send: (m: ToPrimary) => void;
  readonly #pending = new Map<number, Pending>();
  #admits: AdmitWire[] = [];
  #releases: number[] = [];
  #flushing = false;
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
        // A late "yes" is given back in #answered(): nothing leaks.
        this.#pending.delete(id);
        resolve(new GatewayError('SHARED_STATE_UNAVAILABLE', 'the cluster primary did not answer in time'));
      }, ANSWER_TIMEOUT);
      this.#pending.set(id, { req, resolve, timer });
      this.#admits.push(admitToWire(id, req));
      this.#schedule();
    });
  }

  release(ticket: Ticket): void {
    if (this.#held > 0) this.#held--;
    this.#releases.push((ticket as PrimaryTicket).n);
    this.#schedule();
  }

  /** The primary's answers to a batch. */
  answered(answers: readonly AnswerWire[]): void {
    for (const a of answers) this.#answered(a);
  }

  #answered(a: AnswerWire): void {
    const [id, n] = a;
    const p = this.#pending.get(id);
    if (p === undefined) {
      // Answered after the handshake gave up waiting: the place it was given goes back.
      if (n !== 0) {
        this.#releases.push(n);
        this.#schedule();
      }
      return;
    }
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (a.length === 3) return p.resolve(refusalError(a[2]));
    this.#held++;
    const ticket: PrimaryTicket = { scope: p.req.scope, key: p.req.key, route: p.req.route, n };
    p.resolve(ticket);
  }

  #schedule(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(this.#flush);
  }

  #flush = (): void => {
    this.#flushing = false;
    const a = this.#admits;
    const r = this.#releases;
    this.#admits = [];
    this.#releases = [];
    this.#send({ t: 'limits', a, r });
  };

  close(): Promise<void> {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.resolve(new GatewayError('SHUTTING_DOWN', 'the worker is stopping'));
    }
    this.#pending.clear();
    return Promise.resolve();
  }
}
