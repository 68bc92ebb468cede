// Raw WebSocket peers for the inspect-relay tests: a client and an upstream
// that speak frames written by hand, so invalid ones can be sent and every
// byte the gateway forwards can be checked. Independent of src/relay on
// purpose: the tests must not share the code under test.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { rawServer, upgradeRequest } from './helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export interface FrameSpec {
  fin?: boolean;
  rsv1?: boolean;
  /** true: a random key (client frames); false: unmasked; or a given key. */
  mask?: boolean | Buffer;
}

/** One frame, byte for byte. */
export function frame(opcode: number, payload: Buffer | string = '', spec: FrameSpec = {}): Buffer {
  const body = Buffer.from(payload);
  const n = body.length;
  const key = spec.mask === false ? undefined : Buffer.isBuffer(spec.mask) ? spec.mask : randomBytes(4);
  const head: number[] = [((spec.fin ?? true) ? 0x80 : 0) | (spec.rsv1 ? 0x40 : 0) | opcode];
  const maskBit = key ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (n < 126) head.push(maskBit | n);
  else if (n < 0x10000) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(n);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(n));
  }
  const out = Buffer.from(body);
  if (key) for (let i = 0; i < out.length; i++) out[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), ext, key ?? Buffer.alloc(0), out]);
}

export function closePayload(code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason)]);
}

export interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  /** Unmasked. */
  payload: Buffer;
}

export function closeOf(f: Frame): { code: number; reason: string } {
  return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005, reason: f.payload.subarray(2).toString() };
}

/** One end of a WebSocket connection after the handshake, reading frames as they come. */
export class RawPeer {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  /** Every byte received after the handshake, as received. */
  readonly received: Buffer[] = [];
  receivedBytes = 0;
  closed = false;
  #chunks: Buffer[] = [];
  #len = 0;
  #waiters = new Set<() => void>();

  constructor(socket: Socket, rest: Buffer) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.#feed(d));
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    if (rest.length > 0) this.#feed(rest);
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  /** Waits for a frame matching `match` (searching from frame index `from`). */
  async next(match: (f: Frame) => boolean = () => true, from = 0, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.slice(from).find(match);
      if (f) return f;
      if (this.closed) throw new Error(`connection closed; frames: ${this.describe()}`);
      if (Date.now() > deadline) throw new Error(`no such frame within ${timeoutMs}ms; frames: ${this.describe()}`);
      await this.#wait(deadline - Date.now());
    }
  }

  /** The Close frame received (waits for it). */
  async closeFrame(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    return closeOf(await this.next((f) => f.opcode === 8, 0, timeoutMs));
  }

  /** Waits until the TCP connection is closed. */
  async ended(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`connection still open after ${timeoutMs}ms`);
      await this.#wait(deadline - Date.now());
    }
  }

  /** Waits until at least `n` bytes have been received. */
  async receivedAtLeast(n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.receivedBytes < n) {
      if (Date.now() > deadline || this.closed) throw new Error(`got ${this.receivedBytes} of ${n} bytes`);
      await this.#wait(deadline - Date.now());
    }
  }

  describe(): string {
    return JSON.stringify(this.frames.map((f) => ({ op: f.opcode, fin: f.fin, len: f.payload.length, head: f.payload.subarray(0, 40).toString('latin1') })));
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, ms));
      this.#waiters.add(done);
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #feed(chunk: Buffer): void {
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    this.#chunks.push(chunk);
    this.#len += chunk.length;
    for (;;) {
      if (this.#len < 2) break;
      const peek = Buffer.concat(this.#chunks, Math.min(this.#len, 14));
      const len7 = peek[1]! & 0x7f;
      const masked = (peek[1]! & 0x80) !== 0;
      const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const headLen = 2 + extra + (masked ? 4 : 0);
      if (this.#len < headLen) break;
      const n = len7 === 126 ? peek.readUInt16BE(2) : len7 === 127 ? Number(peek.readBigUInt64BE(2)) : len7;
      if (this.#len < headLen + n) break;
      const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#len);
      const payload = Buffer.from(all.subarray(headLen, headLen + n));
      if (masked) {
        const key = all.subarray(headLen - 4, headLen);
        for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
      }
      this.frames.push({ fin: (peek[0]! & 0x80) !== 0, rsv1: (peek[0]! & 0x40) !== 0, opcode: peek[0]! & 0x0f, masked, payload });
      const rest = all.subarray(headLen + n);
      this.#chunks = rest.length > 0 ? [rest] : [];
      this.#len = rest.length;
    }
    this.#wake();
  }
}

/** Connects to the gateway, does the opening handshake by hand, and returns the peer after the 101. */
export async function rawClient(port: number, path = '/', headers: readonly string[] = []): Promise<RawPeer> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.setNoDelay(true);
  await once(socket, 'connect');
  socket.write(upgradeRequest(path, headers));
  const { head, rest } = await readHead(socket);
  if (!/^HTTP\/1\.1 101 /.test(head)) throw new Error(`expected a 101, got ${head}`);
  return new RawPeer(socket, rest);
}

async function readHead(socket: Socket): Promise<{ head: string; rest: Buffer }> {
  let buf = Buffer.alloc(0);
  for (;;) {
    const end = buf.indexOf('\r\n\r\n');
    if (end >= 0) return { head: buf.toString('latin1', 0, end), rest: buf.subarray(end + 4) };
    const chunk = socket.read() as Buffer | null;
    if (chunk !== null) {
      buf = Buffer.concat([buf, chunk]);
      continue;
    }
    if (socket.readableEnded || socket.destroyed) throw new Error(`closed before the head; got ${buf.toString('latin1')}`);
    await Promise.race([once(socket, 'readable'), once(socket, 'close')]);
  }
}

export interface RawUpstream {
  readonly port: number;
  readonly url: string;
  /** Connections that completed the handshake, in order. */
  readonly peers: RawPeer[];
  /** Waits for the n-th (0-based) connection. */
  peer(n?: number): Promise<RawPeer>;
  close(): Promise<void>;
}

/** A backend that answers the upgrade by hand and then only records frames (and runs `onPeer`). */
export async function rawUpstream(onPeer: (p: RawPeer) => void = () => {}, extraHead = ''): Promise<RawUpstream> {
  const peers: RawPeer[] = [];
  const server = await rawServer((s) => {
    s.setNoDelay(true);
    void (async () => {
      const { head, rest } = await readHead(s);
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1] ?? '';
      const accept = createHash('sha1')
        .update(key + GUID)
        .digest('base64');
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extraHead}\r\n`);
      const p = new RawPeer(s, rest);
      peers.push(p);
      onPeer(p);
    })().catch(() => s.destroy());
  });
  return {
    port: server.port,
    url: `ws://127.0.0.1:${server.port}`,
    peers,
    async peer(n = 0) {
      const deadline = Date.now() + 10_000;
      while (peers.length <= n) {
        if (Date.now() > deadline) throw new Error(`no upstream connection #${n}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return peers[n]!;
    },
    close: server.close,
  };
}

/** The gateway config for these tests: inspect mode, explicitly. */
export function inspectConfig(targets: readonly string[], limits = '', relay = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
limits: { ${/maxMessageBytes/.test(limits) ? limits : `maxMessageBytes: 32MiB${limits ? `, ${limits}` : ''}`} }
relay: { mode: inspect${relay ? `, ${relay}` : ''} }
shutdown: { drainTimeout: 0 }
log: { level: info }
`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
