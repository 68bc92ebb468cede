// Timers of one duration for many owners, on one Node timer. A session sets
// two or three timers in its life that almost never fire (the upstream's
// answer within connectTimeout, the close handshake within 2 s, the next
// keepalive ping): a Node timer each costs an object, a list insert and,
// whenever a duration's list empties and refills (as a dial's does between
// handshakes), a priority-queue update and a timer handle restart — several
// microseconds a handshake. Here setting one is a slot in a ring, and
// clearing it is emptying the slot.
//
// Every entry of a queue has the same duration, so entries fall due in the
// order they were added: the ring is a FIFO, and the one Node timer waits for
// its first live entry. A cleared entry keeps its slot (with no reference to
// its owner) until the head passes it, so the ring holds as many slots as
// timers were set within one duration; after a storm it shrinks again.

/** setTimeout's largest delay: a longer wait is taken in steps. */
const MAX_DELAY_MS = 0x7fffffff;
/** Tickets wrap at 2^30, far above any ring's size, and stay small integers. */
const WRAP = 0x3fffffff;
/** Entries due this close to the first one fire with it: one wakeup, not one each. */
const SLACK_MS = 1;
/** A ring's first size, and the least it shrinks to. */
const MIN_SLOTS = 64;

/**
 * Timers of `ms` milliseconds calling `fire(owner)`. The Node timer is
 * unref'd: an owner's own sockets keep the process alive while it waits.
 */
export class TimerQueue<T extends object> {
  readonly ms: number;
  readonly #fire: (owner: T) => void;
  #owners: (T | undefined)[];
  #due: Float64Array;
  #mask: number;
  /** Ticket of the oldest entry, and of the next one to be set. */
  #head: number;
  #tail: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number, fire: (owner: T) => void, firstTicket = 0) {
    this.ms = ms;
    this.#fire = fire;
    this.#owners = new Array<T | undefined>(MIN_SLOTS).fill(undefined);
    this.#due = new Float64Array(MIN_SLOTS);
    this.#mask = MIN_SLOTS - 1;
    this.#head = this.#tail = firstTicket & WRAP;
  }

  /** Timers set and not yet fired or passed (cleared ones included until the head passes them). */
  get size(): number {
    return (this.#tail - this.#head) & WRAP;
  }

  /** @internal slots in the ring */
  get capacity(): number {
    return this.#mask + 1;
  }

  /** Sets a timer for `owner`; the ticket clears it. */
  set(owner: T): number {
    if (this.size > this.#mask) this.#resize((this.#mask + 1) * 2);
    const ticket = this.#tail;
    const i = ticket & this.#mask;
    this.#owners[i] = owner;
    this.#due[i] = performance.now() + this.ms;
    this.#tail = (ticket + 1) & WRAP;
    // An armed timer waits for an earlier entry: this one is due after it.
    if (this.#timer === undefined) this.#arm(this.ms);
    return ticket;
  }

  /** Clears the timer of that ticket; a ticket already fired (or cleared) is ignored. */
  clear(ticket: number): void {
    if (((ticket - this.#head) & WRAP) < this.size) this.#owners[ticket & this.#mask] = undefined;
  }

  /** @internal the Node timer fired */
  run(): void {
    this.#timer = undefined;
    const owners = this.#owners;
    const due = this.#due;
    const until = performance.now() + SLACK_MS;
    try {
      while (this.#head !== this.#tail) {
        const i = this.#head & this.#mask;
        const owner = owners[i];
        if (owner !== undefined && due[i]! > until) break;
        owners[i] = undefined;
        // The head moves first: fire() may set and clear timers of this queue.
        this.#head = (this.#head + 1) & WRAP;
        if (owner !== undefined) this.#fire(owner);
      }
    } finally {
      // A throwing fire() (an uncaught exception) must not strand the entries behind it.
      if (this.#timer === undefined && this.#head !== this.#tail) this.#arm(this.#due[this.#head & this.#mask]! - performance.now());
      // A reconnect storm grew the ring: below an eighth full it shrinks by quarters (to at most
      // half full, so the next few timers do not grow it straight back).
      let slots = this.#mask + 1;
      while (slots > MIN_SLOTS && this.size < slots / 8) slots /= 4;
      if (slots <= this.#mask) this.#resize(Math.max(MIN_SLOTS, slots));
    }
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(runQueue, Math.min(MAX_DELAY_MS, Math.max(1, Math.ceil(ms))), this);
    this.#timer.unref();
  }

  /** To `slots` (a power of two, at least size): each entry moves to its ticket's slot, so tickets stay valid. */
  #resize(slots: number): void {
    const owners = new Array<T | undefined>(slots).fill(undefined);
    const due = new Float64Array(slots);
    const mask = slots - 1;
    for (let t = this.#head; t !== this.#tail; t = (t + 1) & WRAP) {
      owners[t & mask] = this.#owners[t & this.#mask];
      due[t & mask] = this.#due[t & this.#mask]!;
    }
    this.#owners = owners;
    this.#due = due;
    this.#mask = mask;
  }
}

function runQueue(queue: { run(): void }): void {
  queue.run();
}

/** One queue per duration, for timers whose duration is a setting (keepalive intervals). */
export class TimerQueues<T extends object> {
  readonly #fire: (owner: T) => void;
  readonly #byMs = new Map<number, TimerQueue<T>>();

  constructor(fire: (owner: T) => void) {
    this.#fire = fire;
  }

  of(ms: number): TimerQueue<T> {
    let queue = this.#byMs.get(ms);
    if (queue === undefined) {
      queue = new TimerQueue(ms, this.#fire);
      this.#byMs.set(ms, queue);
    }
    return queue;
  }
}
