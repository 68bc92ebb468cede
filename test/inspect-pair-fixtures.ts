// An inspect relay on its own, between two pairs of real sockets, on either
// data path: the JavaScript InspectRelay or the native core (NativeInspect).
//   client peer ⇄ down  [relay]  up ⇄ upstream peer
// The same script runs through both, and what a user could see is compared:
// the bytes each peer received, how the session ended, its counters and the
// metrics tally. Writes wait until the relay has read them, so both paths
// get the same reads.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { InspectRelay } from '../src/relay/inspect.js';
import { NativeInspect } from '../src/relay/native-inspect.js';
import { RelayTally } from '../src/relay/relay-tally.js';
import type { Relay, RelayLimits } from '../src/relay/relay.js';
import type { RelayEnd } from '../src/relay/tunnel.js';
import { RawPeer, sleep } from './inspect-fixtures.js';

export const LIMITS: RelayLimits = {
  maxBufferedBytes: 1 << 20,
  idleMs: 0,
  maxMessageBytes: 0,
  messageRate: 0,
  upstreamMessageRate: 0,
  maxLifetime: 0,
  pingInterval: 0,
  pongTimeout: 0,
  validateUtf8: false,
  rsv1Allowed: false,
  tally: null,
};

export type Core = 'js' | 'native';

/** Two connected sockets: [accepted (server side), dialed]. */
async function socketPair(allowHalfOpen: boolean): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dialed = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [Socket];
  await once(dialed, 'connect');
  server.close();
  for (const s of [accepted, dialed]) s.setNoDelay(true);
  return [accepted, dialed];
}

export interface PairSession {
  readonly core: Core;
  readonly relay: InspectRelay | NativeInspect;
  readonly client: RawPeer;
  readonly upstream: RawPeer;
  readonly tally: RelayTally;
  readonly done: Promise<RelayEnd>;
  /** Sends bytes from the client and waits until the relay has read them (or gave up reading). */
  fromClient(bytes: Buffer): Promise<void>;
  /** The same from the upstream. */
  fromUpstream(bytes: Buffer): Promise<void>;
}

/** A relay of the given core between two socket pairs; `early` are bytes read ahead during the handshake. */
export async function pairSession(core: Core, limits: Partial<RelayLimits> = {}, early: { toClient?: Buffer; toUpstream?: Buffer } = {}): Promise<PairSession> {
  // As in the gateway: the client hop comes from an HTTP server (half-open
  // allowed), the upstream hop from net.connect.
  const [down, clientSock] = await socketPair(true);
  const [upstreamSock, up] = await socketPair(false);
  for (const s of [down, clientSock, upstreamSock, up]) s.on('error', () => {});
  const tally = new RelayTally();
  let resolve!: (e: RelayEnd) => void;
  const done = new Promise<RelayEnd>((r) => (resolve = r));
  let ends = 0;
  const onEnd = (_r: Relay, end: RelayEnd): void => {
    assert.equal(++ends, 1, 'done runs once');
    resolve(end);
  };
  const all: RelayLimits = { ...LIMITS, tally, ...limits };
  const relay = core === 'js' ? new InspectRelay(down, up, all, onEnd) : new NativeInspect(down, { socket: up }, all, onEnd);
  relay.start(early.toClient, early.toUpstream);
  if (relay instanceof NativeInspect) assert.ok(relay.inCore, 'the session runs in the native core');
  const client = new RawPeer(clientSock, Buffer.alloc(0));
  const upstream = new RawPeer(upstreamSock, Buffer.alloc(0));
  let over = false;
  void done.then(() => (over = true));
  const send = async (peer: RawPeer, bytes: Buffer, read: () => number): Promise<void> => {
    // As an endpoint does, nothing more once it was sent a Close (or hung up
    // on): what it sent anyway would race the relay's end, differently on
    // each path. A Close the relay wrote has arrived after a turn of the loop.
    await sleep(1);
    if (peer.closed || peer.frames.some((f) => f.opcode === 0x8)) return;
    const want = read() + bytes.length;
    peer.send(bytes);
    const deadline = Date.now() + 5_000;
    while (read() < want && !over && !peer.closed && Date.now() < deadline) await sleep(2);
  };
  return {
    core,
    relay,
    client,
    upstream,
    tally,
    done,
    fromClient: (bytes) => send(client, bytes, () => relay.bytesFromClient),
    fromUpstream: (bytes) => send(upstream, bytes, () => relay.bytesFromUpstream),
  };
}

/** What a session showed the world. */
export interface Outcome {
  end: RelayEnd;
  toClient: string;
  toUpstream: string;
  counters: { bytesFromClient: number; bytesFromUpstream: number; messagesFromClient: number; messagesFromUpstream: number };
  tally: { pings: number[]; upstreamSizes: number[]; downstreamSizes: number[] };
}

/** Waits for the session to end (both peers closed) and collects its outcome. */
export async function outcome(s: PairSession, timeoutMs = 10_000): Promise<Outcome> {
  const end = await Promise.race([s.done, sleep(timeoutMs).then(() => assert.fail(`${s.core}: the session did not end within ${timeoutMs}ms`))]);
  await Promise.all([s.client.ended(), s.upstream.ended()]);
  const r = s.relay;
  return {
    end,
    toClient: Buffer.concat(s.client.received).toString('hex'),
    toUpstream: masklessHex(Buffer.concat(s.upstream.received)),
    counters: {
      bytesFromClient: r.bytesFromClient,
      bytesFromUpstream: r.bytesFromUpstream,
      messagesFromClient: r.messagesFromClient,
      messagesFromUpstream: r.messagesFromUpstream,
    },
    tally: {
      pings: [s.tally.pingsSent, s.tally.pingsAnswered, s.tally.pingsTimedOut],
      upstreamSizes: [...s.tally.upstreamSizes],
      downstreamSizes: [...s.tally.downstreamSizes],
    },
  };
}

/**
 * Bytes toward the upstream, with the gateway's own frames (Close, ping)
 * unmasked: their keys are random on every run, so those frames are
 * compared by content. Forwarded client frames keep their bytes.
 */
function masklessHex(bytes: Buffer): string {
  const out: string[] = [];
  let p = 0;
  while (p < bytes.length) {
    const b1 = bytes[p + 1];
    if (b1 === undefined) break;
    const len7 = b1 & 0x7f;
    let q = p + 2;
    let n = len7;
    if (len7 === 126) {
      if (q + 2 > bytes.length) break;
      n = bytes.readUInt16BE(q);
      q += 2;
    } else if (len7 === 127) {
      if (q + 8 > bytes.length) break;
      n = Number(bytes.readBigUInt64BE(q));
      q += 8;
    }
    if ((bytes[p]! & 0x0f) !== 0x8 || !(b1 & 0x80) || q + 4 + n > bytes.length) {
      // Not a Close of the gateway's own (or cut short): as received, up to the next frame.
      const next = Math.min(bytes.length, q + (b1 & 0x80 ? 4 : 0) + n);
      out.push(bytes.subarray(p, next).toString('hex'));
      p = next;
      continue;
    }
    const key = bytes.subarray(q, q + 4);
    const payload = Buffer.from(bytes.subarray(q + 4, q + 4 + n));
    for (let i = 0; i < n; i++) payload[i]! ^= key[i & 3]!;
    out.push(`close(${payload.toString('hex')})`);
    p = q + 4 + n;
  }
  if (p < bytes.length) out.push(bytes.subarray(p).toString('hex'));
  return out.join('');
}

/** Runs `script` through a JavaScript and a native relay with the same limits; returns both outcomes. */
export async function bothWays(
  limits: Partial<RelayLimits>,
  script: (s: PairSession) => Promise<void>,
  early: { toClient?: Buffer; toUpstream?: Buffer } = {},
): Promise<{ js: Outcome; native: Outcome }> {
  const run = async (core: Core): Promise<Outcome> => {
    const s = await pairSession(core, limits, early);
    try {
      await script(s);
      return await outcome(s);
    } finally {
      s.client.socket.destroy();
      s.upstream.socket.destroy();
    }
  };
  return { js: await run('js'), native: await run('native') };
}

/** Both paths showed the same; returns the outcome. */
export async function sameBothWays(
  limits: Partial<RelayLimits>,
  script: (s: PairSession) => Promise<void>,
  early: { toClient?: Buffer; toUpstream?: Buffer } = {},
): Promise<Outcome> {
  const { js, native } = await bothWays(limits, script, early);
  assert.deepEqual(native, js, 'the native core and the JavaScript relay agree');
  return native;
}

/** A peer that answers a Close with the same code once it arrives, as a well-behaved one does. */
export function answerCloses(s: PairSession): void {
  for (const [peer, mask] of [
    [s.client, true],
    [s.upstream, false],
  ] as const) {
    void peer
      .next((f) => f.opcode === 0x8, 0, 15_000)
      .then((f) => {
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1000;
        const body = Buffer.alloc(2);
        body.writeUInt16BE(code === 1005 ? 1000 : code);
        peer.send(closeFrame(body, mask));
        if (!mask) peer.socket.end();
      })
      .catch(() => {});
  }
}

function closeFrame(body: Buffer, mask: boolean): Buffer {
  const head = Buffer.from([0x88, (mask ? 0x80 : 0) | body.length]);
  if (!mask) return Buffer.concat([head, body]);
  const key = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const out = Buffer.from(body);
  for (let i = 0; i < out.length; i++) out[i]! ^= key[i & 3]!;
  return Buffer.concat([head, key, out]);
}
