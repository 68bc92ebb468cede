import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { acceptUpgrade, eventually, rawServer, readHead, startGateway, upgradeRequest } from './helpers.js';

// Sessions whose two ends flood each other without reading, so the gateway's
// writes toward both back up; then one session reads on while the other
// still waits, and every byte of both must arrive as sent. The relay reads
// every socket into one shared buffer (src/relay/handle-io.ts): a write left
// pointing into it would send what a later read put there instead.

const PAYLOAD = 60_000;
/** 38 MB each way: more than loopback's socket buffers and the gateway's queue hold, so both floods stall. */
const FRAMES = 640;
const BASE = randomBytes(PAYLOAD + 256);

/** Frame i: binary, its index in the first payload bytes, masked with a zero key when a client sends it. */
function floodFrame(i: number, masked: boolean): Buffer {
  const head = masked ? 8 : 4;
  const frame = Buffer.allocUnsafe(head + PAYLOAD);
  frame[0] = 0x82;
  frame[1] = (masked ? 0x80 : 0) | 126;
  frame.writeUInt16BE(PAYLOAD, 2);
  if (masked) frame.writeUInt32BE(0, 4);
  BASE.copy(frame, head, i & 255, (i & 255) + PAYLOAD);
  frame.writeUInt32BE(i, head);
  return frame;
}

interface FloodEnd {
  readonly socket: Socket;
  /** Frames written so far. */
  sent: number;
}

/** Writes the frames with backpressure, and reads nothing until readAll(). */
function flood(socket: Socket, masked: boolean): FloodEnd {
  socket.pause();
  const end: FloodEnd = { socket, sent: 0 };
  const pump = (): void => {
    while (end.sent < FRAMES && !socket.destroyed) {
      if (!socket.write(floodFrame(end.sent++, masked))) return void socket.once('drain', pump);
    }
  };
  pump();
  return end;
}

/** Reads everything the other end flooded; the index of the first frame that arrived wrong, or -1. */
async function readAll(end: FloodEnd, masked: boolean): Promise<number> {
  const frameBytes = (masked ? 8 : 4) + PAYLOAD;
  const chunks: Buffer[] = [];
  let bytes = 0;
  end.socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    bytes += chunk.length;
  });
  end.socket.resume();
  await eventually(() => bytes >= frameBytes * FRAMES || end.socket.destroyed, 30_000, `${FRAMES} frames`);
  const all = Buffer.concat(chunks);
  for (let i = 0; i < FRAMES; i++) {
    if (!floodFrame(i, masked).equals(all.subarray(i * frameBytes, (i + 1) * frameBytes))) return i;
  }
  return all.length === frameBytes * FRAMES ? -1 : FRAMES;
}

/** A backend that floods every upgraded connection and reads nothing until told. */
async function startFloodBackend(): Promise<{ port: number; ends: FloodEnd[]; close(): Promise<void> }> {
  const ends: FloodEnd[] = [];
  const server = await rawServer((s) => void acceptUpgrade(s).then(() => ends.push(flood(s, false))));
  return { port: server.port, ends, close: server.close };
}

/** Has `sent` stopped moving short of the end? Waits until it stops, one way or the other. */
async function stalled(ends: readonly FloodEnd[]): Promise<boolean> {
  let last = '';
  await eventually(
    () => {
      const now = ends.map((e) => e.sent).join(',');
      const still = now === last;
      last = now;
      return still;
    },
    30_000,
    'the floods to stop moving',
  );
  await new Promise((r) => setTimeout(r, 200));
  return ends.every((e) => e.sent < FRAMES);
}

async function dialPlain(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/**
 * A flooding backend and a gateway in front of it (`config` gets the
 * backend's port), checked as below, then both closed.
 */
export async function floodThroughGateway(config: (backendPort: number) => string, dial?: (port: number) => Promise<Socket>): Promise<void> {
  const backend = await startFloodBackend();
  const gw = await startGateway(config(backend.port));
  try {
    await checkFloodBothWays(gw.port, backend, dial);
  } finally {
    await gw.close();
    await backend.close();
  }
}

/**
 * Two sessions through the gateway at `gatewayPort` to `backend`, flooded
 * both ways until everything stalls; then session B is read out by both its
 * ends while A waits, then A. Asserts that all of it arrived intact.
 * `dial` connects a client (a TLS one, say).
 */
async function checkFloodBothWays(
  gatewayPort: number,
  backend: Awaited<ReturnType<typeof startFloodBackend>>,
  dial: (port: number) => Promise<Socket> = dialPlain,
): Promise<void> {
  const clients: FloodEnd[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const s = await dial(gatewayPort);
      s.write(upgradeRequest());
      const head = await readHead(s);
      assert.match(head, /^HTTP\/1.1 101 /);
      clients.push(flood(s, true));
    }
    await eventually(() => backend.ends.length === 2, 10_000, 'both sessions at the backend');
    const [upA, upB] = backend.ends as [FloodEnd, FloodEnd];
    const [downA, downB] = clients as [FloodEnd, FloodEnd];
    assert.ok(await stalled([upA, upB, downA, downB]), 'every flood was held back (the gateway queued writes both ways)');
    const [b1, b2] = await Promise.all([readAll(downB, false), readAll(upB, true)]);
    assert.deepEqual([b1, b2], [-1, -1], 'session B: every frame arrived intact both ways (-1) — else the first bad one');
    const [a1, a2] = await Promise.all([readAll(downA, false), readAll(upA, true)]);
    assert.deepEqual([a1, a2], [-1, -1], 'session A, read last: every frame arrived intact both ways');
  } finally {
    for (const c of clients) c.socket.destroy();
  }
}
