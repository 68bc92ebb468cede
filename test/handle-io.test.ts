import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { Port, type PortHandlers } from '../src/relay/handle-io.js';
import { eventually, listenLocal } from './helpers.js';
import { makeCa, NO_OPENSSL, type TestCa } from './tls-fixtures.js';

// handle-io.ts's Port on real loopback sockets, plain and TLS.
// test/stream-io.test.ts runs this file again with WSGATE_RELAY_IO=stream, on
// the public stream API.
const viaHandle = process.env.WSGATE_RELAY_IO !== 'stream';

type Kind = 'tcp' | 'tls';

/** TLS sockets take the stream API: TLSWrap takes one write at a time, and the Writable queues the rest. */
const onHandle = (kind: Kind): boolean => viaHandle && kind === 'tcp';

interface Pair {
  /** The accepted side, driven by a Port. */
  readonly relayed: Socket;
  /** The other end, which the test reads and writes. */
  readonly peer: Socket;
  close(): Promise<void>;
}

/** Runs `body` on a fresh pair and closes it whatever happens. */
async function withPair(kind: Kind, body: (p: Pair) => Promise<void>): Promise<void> {
  const p = await socketPair(kind);
  try {
    await body(p);
  } finally {
    await p.close();
  }
}

let ca: TestCa | undefined;
after(() => ca?.close());

async function socketPair(kind: Kind): Promise<Pair> {
  let server: Server;
  let accepted: Promise<[Socket]>;
  if (kind === 'tcp') {
    server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
    accepted = once(server, 'connection') as Promise<[Socket]>;
  } else {
    ca ??= makeCa();
    const leaf = ca.issue('relayed', ['localhost']);
    server = tlsCreateServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), allowHalfOpen: true });
    accepted = once(server, 'secureConnection') as Promise<[Socket]>;
  }
  const port = await listenLocal(server);
  const tcp = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  tcp.on('error', () => {});
  const peer = kind === 'tcp' ? tcp : tlsConnect({ socket: tcp, ca: ca!.ca, servername: 'localhost' });
  peer.on('error', () => {});
  const [relayed] = await accepted;
  relayed.on('error', () => {});
  return {
    relayed,
    peer,
    async close() {
      relayed.destroy();
      peer.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Collector extends PortHandlers<null> {
  readonly chunks: Buffer[];
  readonly drains: number;
  text(): string;
}

function collector(): Collector {
  const chunks: Buffer[] = [];
  let drains = 0;
  return {
    chunks,
    get drains() {
      return drains;
    },
    chunk: (_port, chunk) => void chunks.push(chunk),
    drain: () => void drains++,
    text: () => Buffer.concat(chunks).toString(),
  };
}

function port(socket: Socket, handlers: PortHandlers<null>): Port<null> {
  const p = new Port(socket, handlers);
  p.owner = null;
  return p;
}

for (const kind of ['tcp', 'tls'] as const) {
  void describe(`handle-io: relayed ${kind} sockets`, { skip: kind === 'tls' && NO_OPENSSL }, () => {
    void it(`the socket is ${onHandle(kind) ? 'driven through its handle' : 'read through its stream API'}; chunks arrive in order, read-ahead bytes first`, () =>
      withPair(kind, async (p) => {
        // Bytes that reach the socket before the relay takes over are buffered by it.
        p.relayed.resume();
        p.relayed.pause();
        p.peer.write('early ');
        await eventually(() => p.relayed.readableLength === 6, 5_000, 'the early bytes to be buffered');
        p.peer.write('more ');
        await eventually(() => p.relayed.readableLength === 11, 5_000, 'more early bytes to be buffered');
        const h = collector();
        const io = port(p.relayed, h);
        assert.equal(io.onHandle, onHandle(kind));
        io.start(Buffer.from('first '));
        p.peer.write('one ');
        p.peer.write('two');
        await eventually(() => h.text() === 'first early more one two', 5_000, 'the chunks in order');
        assert.ok(h.chunks.every((c) => Buffer.isBuffer(c)));
        // Handed over as they were read, not joined into one (a copy).
        assert.deepEqual(h.chunks.slice(0, 3).map(String), ['first ', 'early ', 'more ']);
      }));

    void it('send() writes to the socket; EOF from the peer reaches the socket as its own end event', () =>
      withPair(kind, async (p) => {
        const io = port(p.relayed, collector());
        io.start(undefined);
        const got: Buffer[] = [];
        p.peer.on('data', (c: Buffer) => got.push(c));
        io.send(Buffer.from('hello '));
        io.write(Buffer.from('from the stream '));
        io.send(Buffer.from('and back'));
        await eventually(() => Buffer.concat(got).toString() === 'hello from the stream and back', 5_000, 'the writes in order');
        const ended = once(p.relayed, 'end');
        p.peer.end();
        await ended;
        // Half-open: the relayed socket can still write after the peer's FIN.
        io.send(Buffer.from('!'));
        p.relayed.end();
        await once(p.peer, 'end');
        assert.equal(Buffer.concat(got).toString(), 'hello from the stream and back!');
      }));

    void it(
      "a reset from the peer reaches the socket as its own 'error' (ECONNRESET) and 'close'",
      { skip: kind === 'tls' && "TLS sockets take the stream API: their errors are Node's own" },
      () =>
        withPair(kind, async (p) => {
          port(p.relayed, collector()).start(undefined);
          const errored = once(p.relayed, 'error') as Promise<[NodeJS.ErrnoException]>;
          // (events.once() would reject on the 'error' that comes first.)
          const closed = new Promise((r) => p.relayed.once('close', r));
          p.peer.resetAndDestroy();
          const [err] = await errored;
          assert.equal(err.code, 'ECONNRESET');
          await closed;
        }),
    );

    void it(
      "writes waiting in the socket's queue that fail (the peer reset) reach the socket as its own 'error' and 'close'",
      { skip: kind === 'tls' && "TLS sockets take the stream API: their errors are Node's own" },
      () =>
        withPair(kind, async (p) => {
          const io = port(p.relayed, collector());
          io.start(undefined);
          // Not reading: only the failed writes can tell the socket about the reset.
          io.pause();
          p.peer.pause();
          const chunk = Buffer.alloc(256 * 1024, 1);
          for (let sent = 0; io.buffered === 0 && sent < 256 * 1024 * 1024; sent += chunk.length) io.send(chunk);
          assert.ok(io.buffered > 0, 'writes are waiting');
          const errored = once(p.relayed, 'error') as Promise<[NodeJS.ErrnoException]>;
          const closed = new Promise((r) => p.relayed.once('close', r));
          p.peer.resetAndDestroy();
          const [err] = await errored;
          assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code ?? ''), `got ${err.code}`);
          await closed;
        }),
    );

    void it(
      "a chunk another Port read, sent on after the peer reset, reaches the socket as its own 'error' and 'close'",
      { skip: kind === 'tls' && "TLS sockets take the stream API: their errors are Node's own" },
      () =>
        withPair(kind, (from) =>
          withPair(kind, async (to) => {
            // What `from` reads is sent on through `to`, as a relay does (on a
            // handle: chunks of the shared read buffer, written directly).
            const out = port(to.relayed, collector());
            out.start(undefined);
            out.pause();
            const read: PortHandlers<null> = { chunk: (_p, chunk) => void out.send(chunk), drain: () => {} };
            port(from.relayed, read).start(undefined);
            const errored = once(to.relayed, 'error') as Promise<[NodeJS.ErrnoException]>;
            const closed = new Promise((r) => to.relayed.once('close', r));
            to.peer.resetAndDestroy();
            // The first write after a reset can still be taken; the ones after it fail.
            const timer = setInterval(() => from.peer.write('after the reset'), 20);
            try {
              const [err] = await errored;
              assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code ?? ''), `got ${err.code}`);
              await closed;
            } finally {
              clearInterval(timer);
            }
          }),
        ),
    );

    void it('send() to a destroyed socket is dropped: no throw, no error event', () =>
      withPair(kind, async (p) => {
        const io = port(p.relayed, collector());
        io.start(undefined);
        const errors: Error[] = [];
        p.relayed.on('error', (err: Error) => errors.push(err));
        p.relayed.destroy();
        assert.equal(io.send(Buffer.from('lost')), 0);
        await new Promise((r) => setImmediate(r));
        assert.equal(io.send(Buffer.from('lost again')), 0);
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(errors, []);
      }));

    void it('backpressure: buffered counts what has not gone out; pause() holds chunks back until resume(); drain is reported', () =>
      withPair(kind, async (p) => {
        const h = collector();
        const io = port(p.relayed, h);
        io.start(undefined);
        // The peer does not read: writes to the relayed socket pile up.
        p.peer.pause();
        const chunk = Buffer.alloc(256 * 1024, 1);
        let sent = 0;
        while (io.buffered === 0 && sent < 256 * 1024 * 1024) {
          io.send(chunk);
          sent += chunk.length;
        }
        assert.ok(io.buffered > 0, 'writes were held back');
        let drained = 0;
        p.peer.on('data', (c: Buffer) => (drained += c.length));
        p.peer.resume();
        await eventually(() => h.drains > 0 && io.buffered === 0, 20_000, 'drain');
        await eventually(() => drained === sent, 20_000, 'every byte at the peer');

        io.pause();
        assert.ok(io.paused);
        p.peer.write('held');
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(h.text(), '', 'nothing read while paused');
        io.resume();
        assert.ok(!io.paused);
        await eventually(() => h.text() === 'held', 5_000, 'the held bytes');
      }));
  });
}
