import { getSystemErrorName } from 'node:util';
import type { RelayDone, RelayLimits, UpstreamConnection } from './relay.js';
import { InspectRelay } from './inspect.js';
import { failureReason, InspectSession } from './inspect-session.js';
import { coreClient, HANDLE_IO, readEnded, stopReading, takeBuffered, tcpHandleOf, type RelaySocket } from './handle-io.js';
import { BareConn } from './bare-conn.js';
import { nativeModule } from './native-module.js';
import type { CoreDialRef } from '../upstream/core-dial.js';

// Inspect mode on the native core (native/inspect.c). Once the 101 is out,
// the session's two sockets are handed to the core as duplicated file
// descriptors, as a tunnel's are (native-tunnel.ts): it reads both, follows
// the frames both ways, enforces the same rules as the JavaScript relay
// (inspect-flow.ts) and writes the bytes it read to the other side, without
// entering JavaScript per read. That is what inspect mode used to pay on top
// of tunnel mode: a read callback, the frame walk and a write from
// JavaScript, per read.
//
// JavaScript still decides everything that is not mechanical, in
// inspect-session.ts, shared with the JavaScript relay: the core reports a
// Close frame written or received, a rule broken, a FIN, a connection
// closed; the session answers with frames of its own (Close, keepalive
// pings) and ends, through the core. Counters stay in the core and are read
// when asked (metrics, the access log); message sizes go straight into the
// metrics' tally arrays.
//
// Where the core cannot take a session (it was not built, a socket is TLS,
// not a TCP handle, or already ended, or a write of the handshake has not
// finished), the session runs on the JavaScript InspectRelay, unchanged.
// WSGATE_INSPECT_CORE=js keeps every inspect session in JavaScript, as does
// WSGATE_RELAY_IO=handle or =stream.

/** A session inside the core; only ever passed back to it. */
interface CoreSession {
  readonly __inspectSession: never;
}

type EventFn = (owner: NativeInspect, kind: number, side: number, code: number, a: number, b: number, text: string | null, errorCode: string | null) => void;
type BatchFn = (n: number) => void;

interface Core {
  /** One event at a time to `fn`; a pass's batch to `batchFn`, its numbers in `events`. */
  setEvents(fn: EventFn, batchFn: BatchFn, events: Int32Array): void;
  open(
    owner: NativeInspect,
    /** A descriptor to duplicate, or a connection the native module accepted, taken as it is. */
    client: number | object,
    /** A descriptor to duplicate, or a dial of the native module, taken as it is. */
    upstream: number | CoreDialRef,
    readSize: number,
    maxMessageBytes: number,
    messageRate: number,
    upstreamMessageRate: number,
    flags: number,
    upstreamSizes: Float64Array | null,
    downstreamSizes: Float64Array | null,
    /** Where the owner is in `owners`, for the batches. */
    slot: number,
  ): CoreSession;
  feed(session: CoreSession, side: Side, chunk: Buffer): void;
  inject(session: CoreSession, side: Side, frame: Buffer, isClose: boolean): number;
  canClose(session: CoreSession, side: Side): boolean;
  shut(session: CoreSession, side: Side): void;
  end(session: CoreSession, side: Side, hangUp: boolean): void;
  destroy(session: CoreSession, side: Side): void;
  probe(session: CoreSession): number;
  active(session: CoreSession, clear: boolean): boolean;
  stat(session: CoreSession, which: number): number;
  /** stat() 0 to 3 and whether it was active (1 or 0), into `out`. */
  stats(session: CoreSession, out: Float64Array): void;
  openSessions(): number;
}

/** 0: the client, 1: the upstream, as the core numbers them. */
type Side = 0 | 1;
const CLIENT = 0;
const UPSTREAM = 1;

// The core's events (native/inspect.c).
const EV_CLOSE_WRITTEN = 1;
const EV_CLOSE_RECEIVED = 2;
const EV_VIOLATION = 3;
const EV_EOF = 4;
const EV_CLOSED = 5;
// Which rule a violation broke.
const RULE_RATE = 1;
const RULE_UTF8 = 2;
// open() flags.
const F_VALIDATE_UTF8 = 1;
const F_RSV1 = 2;
const F_BARE_CLIENT = 4;
// inject() results.
const INJECT_STUCK = 0;
const INJECT_CLOSE_OUT = 2;
/** The core never reads more than this at once. */
const READ_MAX = 65_536;
const IO_OPS = ['read', 'write', 'shutdown'];

// The events of one pass over the core's descriptors come in one call
// (native/inspect.c's flush_events()): BATCH_INTS numbers each, the last
// the session's slot in `owners` (no object crosses over per event).
const BATCH_EVENTS = 256;
const BATCH_INTS = 6;
const batch = new Int32Array(BATCH_EVENTS * BATCH_INTS);
const owners: (NativeInspect | undefined)[] = [];
const freeSlots: number[] = [];
/** A session's last figures (core.stats()). */
const lastStats = new Float64Array(5);

/** The core, or why there is none (undefined: turned off). */
function loadCore(): Core | string | undefined {
  if (process.env.WSGATE_INSPECT_CORE === 'js') return undefined;
  const io = process.env.WSGATE_RELAY_IO;
  if (io === 'handle' || io === 'stream') return undefined;
  if (!HANDLE_IO) return 'this Node.js lacks the socket internals the handover needs';
  const native = nativeModule();
  if (typeof native === 'string') return native;
  const core = (native as { inspect?: Core }).inspect;
  if (core === undefined || typeof core.stats !== 'function') return 'the native module is older than this code: run npm ci';
  core.setEvents(coreEvent, coreEvents, batch);
  return core;
}

const loaded = loadCore();
const core = typeof loaded === 'object' ? loaded : null;
/** Inspect-mode sessions on plain TCP run in the native core. */
export const NATIVE_INSPECT: boolean = core !== null;

/** Sessions the core still runs (for tests: they are not Node handles). */
export function inspectCoreSessions(): number {
  return core?.openSessions() ?? 0;
}

export class NativeInspect extends InspectSession {
  /** Until the handover. */
  #down: RelaySocket | null;
  #up: UpstreamConnection | null;
  readonly #done: RelayDone;
  #session: CoreSession | null = null;
  /** In `owners`, while the core has the session. */
  #slot = -1;
  /** The JavaScript relay, for a session the core could not take. */
  #js: InspectRelay | null = null;
  /** The counters once the session is over (bytes and messages, from the client and from the upstream). */
  #final: [number, number, number, number] = [0, 0, 0, 0];
  #active = true;

  constructor(down: RelaySocket, up: UpstreamConnection, limits: RelayLimits, done: RelayDone) {
    super(limits, done);
    this.#down = down;
    this.#up = up;
    this.#done = done;
  }

  get bytesFromClient(): number {
    return this.#stat(0);
  }

  get bytesFromUpstream(): number {
    return this.#stat(1);
  }

  get messagesFromClient(): number {
    return this.#stat(2);
  }

  get messagesFromUpstream(): number {
    return this.#stat(3);
  }

  /** Traffic since the idle sweeper last cleared it. */
  get active(): boolean {
    if (this.#session !== null) return core!.active(this.#session, false);
    return this.#js !== null ? this.#js.active : this.#active;
  }

  set active(value: boolean) {
    if (this.#session !== null) {
      if (!value) core!.active(this.#session, true);
    } else if (this.#js !== null) this.#js.active = value;
    else this.#active = value;
  }

  /** The session runs in the core from here, or in JavaScript if the core cannot take it. */
  start(toClient: Buffer | undefined, toUpstream: Buffer | undefined): void {
    const down = this.#down!;
    const up = this.#up!;
    const downHandle = down instanceof BareConn ? down.handle : tcpHandleOf(down);
    // A dial of the native module (src/upstream/core-dial.ts) goes to the core as it is.
    const dialed = core !== null && downHandle !== null ? up.core : undefined;
    // A bare dial (src/upstream/raw-dial.ts) leaves a handle and no socket (a core dial is made one here, if the core cannot take it).
    const bare = dialed === undefined ? up.handle : undefined;
    const upSocket = dialed === undefined && bare === undefined ? up.socket : null;
    const upHandle = dialed !== undefined ? null : (bare ?? tcpHandleOf(upSocket!));
    if (
      core === null ||
      downHandle === null ||
      (dialed === undefined && upHandle === null) ||
      readEnded(down) ||
      down.destroyed ||
      down.writableLength > 0 ||
      (bare !== undefined && bare.writeQueueSize > 0) ||
      (upSocket !== null && (readEnded(upSocket) || upSocket.destroyed || upSocket.writableLength > 0))
    ) {
      this.#runInJs(toClient, toUpstream);
      return;
    }
    // Nothing more is read into the sockets: what they hold goes through the
    // core's trackers first, in the order the JavaScript relay takes it.
    stopReading(downHandle);
    if (upHandle !== null) stopReading(upHandle);
    const fromUpstream: Buffer[] = [];
    const fromClient: Buffer[] = [];
    if (toClient !== undefined && toClient.length > 0) fromUpstream.push(toClient);
    if (upSocket !== null) takeBuffered(upSocket, (chunk) => fromUpstream.push(chunk));
    if (toUpstream !== undefined && toUpstream.length > 0) fromClient.push(toUpstream);
    takeBuffered(down, (chunk) => fromClient.push(chunk));
    const limits = this.limits;
    const tally = limits.tally;
    let flags = down instanceof BareConn ? F_BARE_CLIENT : 0;
    if (limits.validateUtf8) flags |= F_VALIDATE_UTF8;
    if (limits.rsv1Allowed) flags |= F_RSV1;
    const slot = (this.#slot = freeSlots.pop() ?? owners.length);
    owners[slot] = this;
    try {
      this.#session = core!.open(
        this,
        coreClient(downHandle),
        dialed ?? upHandle!.fd,
        Math.min(READ_MAX, Math.max(1, limits.maxBufferedBytes)),
        limits.maxMessageBytes,
        limits.messageRate,
        limits.upstreamMessageRate,
        flags,
        tally === null ? null : tally.upstreamSizes,
        tally === null ? null : tally.downstreamSizes,
        slot,
      );
    } catch {
      releaseSlot(slot);
      // Out of descriptors for the duplicates, say: this session stays in JavaScript.
      this.#runInJs(toClient, toUpstream, fromUpstream, fromClient);
      return;
    }
    // The core holds duplicates of both descriptors: closing Node's leaves
    // the connections open, and in the core's hands only.
    down.destroy();
    if (dialed !== undefined) up.coreTaken!();
    else if (bare !== undefined) bare.close();
    else upSocket!.destroy();
    this.#down = this.#up = null;
    const session = this.#session;
    for (const chunk of fromUpstream) if (this.#session === session) core!.feed(session, UPSTREAM, chunk);
    for (const chunk of fromClient) if (this.#session === session) core!.feed(session, CLIENT, chunk);
    this.startTimers();
  }

  override close(reason: string, code?: number): void {
    if (this.#js !== null) this.#js.close(reason, code);
    else if (this.#session !== null) super.close(reason, code);
  }

  /**
   * The JavaScript relay takes the session: the buffers read ahead, or (once
   * they were taken from the sockets) the chunks they were taken as.
   */
  #runInJs(toClient: Buffer | undefined, toUpstream: Buffer | undefined, fromUpstream?: Buffer[], fromClient?: Buffer[]): void {
    const up = this.#up!;
    const js = new InspectRelay(this.#down!, up.handle !== undefined ? new BareConn(up.handle) : up.socket, this.limits, (_, end) => this.#done(this, end));
    this.#js = js;
    this.#down = this.#up = null;
    js.active = this.#active;
    if (fromUpstream === undefined) {
      js.start(toClient, toUpstream);
      return;
    }
    js.start(concat(fromUpstream), concat(fromClient!));
  }

  /** Bytes the core holds toward the client (true) or the upstream that the socket has not taken yet (for tests); 0 outside the core. */
  queued(toClient: boolean): number {
    return this.#session !== null ? core!.stat(this.#session, toClient ? 4 : 5) : 0;
  }

  /** The session runs in the native core (false: not yet, over, or in JavaScript). */
  get inCore(): boolean {
    return this.#session !== null;
  }

  #stat(which: number): number {
    if (this.#session !== null) return core!.stat(this.#session, which);
    if (this.#js === null) return this.#final[which]!;
    switch (which) {
      case 0:
        return this.#js.bytesFromClient;
      case 1:
        return this.#js.bytesFromUpstream;
      case 2:
        return this.#js.messagesFromClient;
      default:
        return this.#js.messagesFromUpstream;
    }
  }

  /** @internal what the core reports */
  coreEvent(kind: number, side: number, code: number, a: number, b: number, text: string | null, errorCode: string | null): void {
    const isClient = side === CLIENT;
    switch (kind) {
      case EV_CLOSE_WRITTEN:
        this.wroteClose(isClient);
        break;
      case EV_CLOSE_RECEIVED:
        this.heardClose(isClient, code);
        break;
      case EV_VIOLATION:
        this.brokeRule(isClient, code, this.#rule(isClient, a, text), errorCode);
        break;
      case EV_EOF:
        this.peerEnded(isClient);
        break;
      case EV_CLOSED:
        if (b !== 0) {
          // The last one: the core frees the session when this returns.
          core!.stats(this.#session!, lastStats);
          this.#final = [lastStats[0]!, lastStats[1]!, lastStats[2]!, lastStats[3]!];
          this.#active = lastStats[4] !== 0;
          releaseSlot(this.#slot);
          this.#session = null;
        }
        if (code !== 0) this.peerFailed(isClient, errorReason(code, a));
        this.peerClosed(isClient);
        break;
      default:
        break;
    }
  }

  #rule(fromClient: boolean, kind: number, text: string | null): string {
    if (kind === RULE_RATE) return `more than ${fromClient ? this.limits.messageRate : this.limits.upstreamMessageRate} messages per second`;
    if (kind === RULE_UTF8) return 'RFC 6455 §8.1: a text message must be valid UTF-8';
    return text ?? 'protocol error';
  }

  // --- InspectSession: the data path's operations ----------------------------

  protected inject(toClient: boolean, frame: Buffer, isClose: boolean): boolean {
    const s = this.#session;
    if (s === null) return true;
    const r = core!.inject(s, toClient ? CLIENT : UPSTREAM, frame, isClose);
    if (r === INJECT_CLOSE_OUT) this.wroteClose(toClient);
    return r !== INJECT_STUCK;
  }

  protected canClose(toClient: boolean): boolean {
    return this.#session !== null && core!.canClose(this.#session, toClient ? CLIENT : UPSTREAM);
  }

  protected shut(toClient: boolean): void {
    if (this.#session !== null) core!.shut(this.#session, toClient ? CLIENT : UPSTREAM);
  }

  protected pingWaiting(): boolean {
    return this.#session !== null && (core!.probe(this.#session) & 2) !== 0;
  }

  protected clientHeard(): boolean {
    return this.#session !== null && (core!.probe(this.#session) & 1) !== 0;
  }

  protected endClient(saidClose: boolean): void {
    if (this.#session !== null) core!.end(this.#session, CLIENT, saidClose);
  }

  protected destroyBoth(): void {
    if (this.#session === null) return;
    core!.destroy(this.#session, CLIENT);
    core!.destroy(this.#session, UPSTREAM);
  }

  protected released(): void {}
}

function coreEvent(owner: NativeInspect, kind: number, side: number, code: number, a: number, b: number, text: string | null, errorCode: string | null): void {
  owner.coreEvent(kind, side, code, a, b, text, errorCode);
}

function releaseSlot(slot: number): void {
  owners[slot] = undefined;
  freeSlots.push(slot);
}

function coreEvents(n: number): void {
  // One session's failing handler must not keep the others' events from them.
  let failed = false;
  let failure: unknown;
  for (let i = 0, at = 0; i < n; i++, at += BATCH_INTS) {
    try {
      owners[batch[at + 5]!]!.coreEvent(batch[at]!, batch[at + 1]!, batch[at + 2]!, batch[at + 3]!, batch[at + 4]!, null, null);
    } catch (err) {
      if (!failed) failure = err;
      failed = true;
    }
  }
  if (failed) throw failure;
}

/** As a socket's error reads in the access log: resets are "reset", the rest "error: read ETIMEDOUT". */
function errorReason(errno: number, op: number): string {
  let name: string;
  try {
    name = getSystemErrorName(-errno);
  } catch {
    name = `errno ${errno}`;
  }
  return failureReason(name, `${IO_OPS[op] ?? 'read'} ${name}`);
}

function concat(chunks: Buffer[]): Buffer | undefined {
  if (chunks.length === 0) return undefined;
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}
