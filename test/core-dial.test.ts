import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { dialUpstream, discardAnswer, type DialOptions, type DialResult } from '../src/upstream/connect.js';
import { canDialInCore } from '../src/upstream/core-dial.js';
import { nativeModule } from '../src/relay/native-module.js';
import type { GatewayError } from '../src/errors.js';
import { listenLocal } from './helpers.js';

// Dials by the native module (native/dial.c, src/upstream/core-dial.ts), the
// way sessions bound for a relay core are dialed: driven directly against
// raw upstreams, for what the gateway tests cannot see (the bytes the
// upstream receives, answers cut at every place, what happens to the
// connection once nobody wants it).

const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const SWITCH = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`;
const REQUEST =
  'GET /chat HTTP/1.1\r\nHost: up\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

interface Upstream {
  readonly port: number;
  /** Every connection accepted, in order. */
  readonly sockets: Socket[];
  /** What each connection sent, as latin1. */
  readonly received: string[];
  close(): Promise<void>;
}

/** An upstream that calls `onHead` once a whole request head (plus whatever came with it) is in. */
async function upstream(onHead: (s: Socket, received: string) => void, host = '127.0.0.1'): Promise<Upstream> {
  const sockets: Socket[] = [];
  const received: string[] = [];
  const server: Server = createServer((s) => {
    const i = sockets.push(s) - 1;
    received[i] = '';
    s.on('error', () => {});
    let answered = false;
    s.on('data', (chunk) => {
      received[i] += chunk.toString('latin1');
      if (!answered && received[i]!.includes('\r\n\r\n')) {
        answered = true;
        onHead(s, received[i]!);
      }
    });
  });
  const port = await listenLocal(server, host);
  return {
    port,
    sockets,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function options(port: number, extra: Partial<DialOptions> = {}, host = '127.0.0.1'): DialOptions {
  const url = host.includes(':') ? `ws://[${host}]:${port}` : `ws://${host}:${port}`;
  return {
    target: { url, secure: false, host, port, basePath: '', weight: 1 },
    request: REQUEST,
    accept: ACCEPT,
    timeout: 5_000,
    maxHeadBytes: 8192,
    tls: undefined,
    ...extra,
  };
}

function dial(opts: DialOptions): Promise<{ err: GatewayError | undefined; result: DialResult | undefined }> {
  return new Promise((resolve) => {
    dialUpstream(opts, (err, result) => resolve({ err, result }), true, true);
  });
}

async function closed(s: Socket): Promise<void> {
  if (!s.destroyed)
    await Promise.race([once(s, 'close'), new Promise((_, reject) => setTimeout(() => reject(new Error('upstream connection not closed')), 5_000))]);
}

void describe('dials by the native module', { skip: !canDialInCore() && 'the native module is not built' }, () => {
  void it('writes the request once connected, reads a 101 cut anywhere (behind a 100 Continue), and keeps what follows it', async () => {
    const answer = `HTTP/1.1 100 Continue\r\n\r\n${SWITCH}\x81\x02hi`;
    for (const cut of [1, 10, 27, 60, answer.length - 3]) {
      const up = await upstream((s) => {
        s.write(answer.slice(0, cut), 'latin1');
        setTimeout(() => s.write(answer.slice(cut), 'latin1'), 20);
      });
      try {
        const { err, result } = await dial(options(up.port));
        assert.equal(err, undefined);
        assert.equal(result!.kind, 'upgraded');
        assert.ok(result!.core !== undefined, 'the connection is still in the module, for a core to take');
        // What came in the read that completed the head; the rest is the relay's to read.
        const headEnd = answer.length - 4;
        assert.equal(result!.rest?.toString('latin1'), cut <= headEnd ? '\x81\x02hi' : answer.slice(headEnd, cut), `cut at ${cut}`);
        assert.equal(up.received[0], REQUEST);
        discardAnswer(result!);
        await closed(up.sockets[0]!);
      } finally {
        await up.close();
      }
    }
  });

  void it("keeps what followed each 101 as its own: a later dial's read does not change an earlier one's", async () => {
    // Both answers are read into the one buffer the module shares with JavaScript for reads.
    const ups = await Promise.all(['first', 'second'].map((word) => upstream((s) => s.write(`${SWITCH}\x81\x06${word}`, 'latin1'))));
    try {
      const first = await dial(options(ups[0]!.port));
      const second = await dial(options(ups[1]!.port));
      assert.equal(first.result!.rest?.toString('latin1'), '\x81\x06first');
      assert.equal(second.result!.rest?.toString('latin1'), '\x81\x06second');
      for (const d of [first, second]) discardAnswer(d.result!);
    } finally {
      await Promise.all(ups.map((u) => u.close()));
    }
  });

  void it('sends the PROXY protocol header first, then the request, byte for byte', async () => {
    const header = Buffer.from('PROXY TCP4 10.0.0.1 127.0.0.1 4000 80\r\n', 'latin1');
    const up = await upstream((s) => s.write(SWITCH));
    try {
      const { result } = await dial(options(up.port, { proxyHeader: header }));
      assert.equal(result!.kind, 'upgraded');
      assert.equal(up.received[0], header.toString('latin1') + REQUEST);
      discardAnswer(result!);
    } finally {
      await up.close();
    }
  });

  void it('over IPv6 too', async (t) => {
    let up: Upstream;
    try {
      up = await upstream((s) => s.write(SWITCH), '::1');
    } catch {
      t.skip('no IPv6 loopback here');
      return;
    }
    try {
      const { err, result } = await dial(options(up.port, {}, '::1'));
      assert.equal(err, undefined);
      assert.equal(result!.kind, 'upgraded');
      discardAnswer(result!);
      await closed(up.sockets[0]!);
    } finally {
      await up.close();
    }
  });

  void it('a refused connect, an upstream that closes or resets before answering, and garbage are errors, each with its code', async () => {
    const dead = createServer();
    const deadPort = await listenLocal(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const refused = await dial(options(deadPort));
    assert.equal(refused.err?.code, 'UPSTREAM_REFUSED');
    assert.match(refused.err!.message, /connect ECONNREFUSED 127\.0\.0\.1:\d+/);

    const closes = await upstream((s) => s.end());
    const resets = await upstream((s) => s.resetAndDestroy());
    const garbage = await upstream((s) => s.write('SSH-2.0-OpenSSH\r\n\r\n'));
    try {
      assert.equal((await dial(options(closes.port))).err?.code, 'UPSTREAM_RESET');
      assert.equal((await dial(options(resets.port))).err?.code, 'UPSTREAM_RESET');
      const bad = await dial(options(garbage.port));
      assert.equal(bad.err?.code, 'UPSTREAM_BAD_RESPONSE');
      // The gateway closed its end of what it could not use.
      await closed(garbage.sockets[0]!);
    } finally {
      await closes.close();
      await resets.close();
      await garbage.close();
    }
  });

  void it('no answer within the timeout: the dial fails and the connection is closed', async () => {
    const silent = await upstream(() => {});
    try {
      const { err } = await dial(options(silent.port, { timeout: 200 }));
      assert.equal(err?.code, 'UPSTREAM_TIMEOUT');
      await closed(silent.sockets[0]!);
    } finally {
      await silent.close();
    }
  });

  void it('an answer other than 101 comes with a socket that reads the rest of its body', async () => {
    const up = await upstream((s) => {
      s.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nfor');
      setTimeout(() => s.end('bidden!'), 30);
    });
    try {
      const { result } = await dial(options(up.port));
      assert.equal(result!.kind, 'answered');
      assert.equal(result!.head.status, 403);
      let body = result!.rest?.toString('latin1') ?? '';
      const socket = result!.socket;
      socket.on('data', (chunk: Buffer) => (body += chunk.toString('latin1')));
      socket.resume();
      await once(socket, 'end');
      assert.equal(body, 'forbidden!');
      socket.destroy();
    } finally {
      await up.close();
    }
  });

  void it('a dial the module is done with stands for nothing: used again, it is refused, never freed memory', async () => {
    const up = await upstream((s) => s.write(SWITCH, 'latin1'));
    try {
      const { result } = await dial(options(up.port));
      const ref = result!.core!;
      discardAnswer(result!);
      await closed(up.sockets[0]!);
      // The module frees a dial on a later turn of the loop; JavaScript may still hold its handle.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 20));
      // (npm run test:asan runs this on a sanitized build, where a read of freed memory fails the run.)
      const mod = nativeModule() as { dialRelease(d: unknown): number; dialClose(d: unknown): void };
      assert.equal(mod.dialRelease(ref), -1);
      mod.dialClose(ref);
    } finally {
      await up.close();
    }
  });

  void it('setDialEvents without a read buffer is refused with a TypeError, and dials go on as before', async () => {
    const mod = nativeModule() as { setDialEvents(...args: unknown[]): void };
    // Checked before anything is replaced: the module keeps the handler and buffer it has.
    assert.throws(() => mod.setDialEvents(() => {}), TypeError);
    assert.throws(() => mod.setDialEvents(() => {}, Buffer.alloc(0)), TypeError);
    const up = await upstream((s) => s.write(`${SWITCH}\x81\x02ok`, 'latin1'));
    try {
      const { err, result } = await dial(options(up.port));
      assert.equal(err, undefined);
      assert.equal(result!.rest?.toString('latin1'), '\x81\x02ok');
      discardAnswer(result!);
    } finally {
      await up.close();
    }
  });

  void it('abort() while the upstream thinks: nothing is reported, and the connection is closed', async () => {
    let headIn!: () => void;
    const gotHead = new Promise<void>((r) => (headIn = r));
    const up = await upstream(() => headIn());
    try {
      let reported = false;
      const d = dialUpstream(options(up.port), () => (reported = true), true, true);
      await gotHead;
      d.abort();
      await closed(up.sockets[0]!);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(reported, false);
    } finally {
      await up.close();
    }
  });
});
