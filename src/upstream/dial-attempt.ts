import { GatewayError } from '../errors.js';
import type { Answered, Dial, DialDone, DialOptions, DialResult, Upgraded } from './connect.js';
import { parseResponseHead, type ResponseHead } from './response-head.js';
import { TimerQueues, type TimerQueue } from '../timer-queue.js';

// What both kinds of dial share (connect.ts on net.Socket, raw-dial.ts on a
// bare handle): the timeout, settling exactly once, and reading the answer.

// connectTimeout is a pool's setting: a queue for each value in use.
const dialTimeouts = new TimerQueues<DialAttempt>((dial) => dial.timedOut());

/** One attempt at one target; subclasses own the connection. */
export abstract class DialAttempt implements Dial {
  protected readonly opts: DialOptions;
  protected readonly answer: AnswerReader;
  readonly #done: DialDone;
  readonly #timeouts: TimerQueue<DialAttempt>;
  readonly #timer: number;
  #settled = false;

  constructor(opts: DialOptions, done: DialDone) {
    this.opts = opts;
    this.#done = done;
    this.answer = new AnswerReader(opts.maxHeadBytes, opts.accept);
    this.#timeouts = dialTimeouts.of(opts.timeout);
    this.#timer = this.#timeouts.set(this);
  }

  protected get settled(): boolean {
    return this.#settled;
  }

  /** Closes the connection, whatever state it is in. */
  protected abstract drop(): void;

  /** The client went away: give up quietly (no answer goes to `done`: the caller is gone). */
  abort(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#timeouts.clear(this.#timer);
    this.drop();
  }

  protected fail(err: GatewayError): void {
    if (this.#settled) return;
    this.drop();
    this.settle(err, undefined);
  }

  /** @internal connectTimeout passed */
  timedOut(): void {
    this.fail(new GatewayError('UPSTREAM_TIMEOUT', `${this.opts.target.url}: no answer within ${this.opts.timeout}ms`));
  }

  protected settle(err: GatewayError | undefined, result: DialResult | undefined): void {
    this.#settled = true;
    this.#timeouts.clear(this.#timer);
    this.#done(err, result);
  }
}

/** What an answer reader makes of the upstream's answer: all of it but the connection. */
export type Answer = Omit<Upgraded, 'socket' | 'handle'> | Omit<Answered, 'socket' | 'handle'>;

/** Collects the upstream's answer head across reads and judges it. */
export class AnswerReader {
  readonly #maxHeadBytes: number;
  /** The Sec-WebSocket-Accept a 101 must carry. */
  readonly #accept: string;
  #chunks: Buffer[] | undefined;

  constructor(maxHeadBytes: number, accept: string) {
    this.#maxHeadBytes = maxHeadBytes;
    this.#accept = accept;
  }

  /**
   * undefined: the head is not complete yet. The chunk is read during the call only (it may be
   * the shared read buffer, core-dial.ts): what is kept of it, and `rest`, are copies.
   */
  take(chunk: Buffer): Answer | GatewayError | undefined {
    let buf = chunk;
    if (this.#chunks !== undefined) {
      this.#chunks.push(chunk);
      buf = Buffer.concat(this.#chunks);
    }
    for (;;) {
      const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
      if (end === -1) {
        if (buf.length > this.#maxHeadBytes) return new GatewayError('UPSTREAM_BAD_RESPONSE', `response head over ${this.#maxHeadBytes} bytes`);
        this.#chunks = buf.length === 0 ? undefined : [Buffer.from(buf)];
        return undefined;
      }
      this.#chunks = undefined;
      const head = parseResponseHead(buf.toString('latin1', 0, end));
      if (head === undefined) return new GatewayError('UPSTREAM_BAD_RESPONSE', 'unparseable response head');
      // An interim answer (100 Continue, 102, 103 Early Hints) is not the answer (RFC 9110 §15.2):
      // read on for the final one, within the same timeout. Passed on as final, it would
      // leave the client waiting on a body that never comes.
      if (head.status >= 100 && head.status < 200 && head.status !== 101) {
        buf = buf.subarray(end + 4);
        continue;
      }
      const rest = end + 4 < buf.length ? Buffer.from(buf.subarray(end + 4)) : undefined;
      if (head.status !== 101) return { kind: 'answered', head, rest };
      const problem = checkUpgrade(head, this.#accept);
      return problem === undefined ? { kind: 'upgraded', head, rest } : new GatewayError('UPSTREAM_BAD_RESPONSE', problem);
    }
  }
}

function checkUpgrade(head: ResponseHead, accept: string): string | undefined {
  const upgrade = head.get('upgrade');
  if (upgrade !== 'websocket' && upgrade?.toLowerCase() !== 'websocket') return '101 without Upgrade: websocket';
  const connection = head.get('connection') ?? '';
  if (connection !== 'Upgrade' && !/(^|[\s,])upgrade([\s,]|$)/i.test(connection)) return '101 without Connection: upgrade';
  if (head.get('sec-websocket-accept') !== accept) return '101 with a wrong Sec-WebSocket-Accept';
  return undefined;
}
