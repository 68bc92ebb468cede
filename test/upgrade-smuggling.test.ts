import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { eventually, listenLocal, startGateway, statusOf, upgradeRequest, type RunningGateway } from './helpers.js';

// Upgrade smuggling: a client sends an upgrade request and, behind it, a
// second request meant for the upstream (say GET /admin, which a front proxy
// would never let through). If the gateway took a refused upgrade for a
// successful one, or kept relaying after the upstream said no, those bytes
// would reach the upstream as a request of their own. Every upstream here
// logs every byte it receives, and the check is that each of its connections
// saw exactly one request head: the gateway's rebuilt upgrade request.

const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: backend\r\n\r\n';
const LATER = 'GET /admin/later HTTP/1.1\r\nHost: backend\r\n\r\n';

interface LoggingUpstream {
  readonly port: number;
  /** Everything each connection received, in order of arrival. */
  readonly received: string[];
  readonly open: Set<Socket>;
  close(): Promise<void>;
}

/** A raw upstream: answers the first request head on each connection with `answer(head)`, and logs every byte. */
async function loggingUpstream(answer: (head: string, socket: Socket) => void): Promise<LoggingUpstream> {
  const received: string[] = [];
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    const i = received.push('') - 1;
    open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => open.delete(socket));
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      received[i] += chunk.toString('latin1');
      const end = received[i]!.indexOf('\r\n\r\n');
      if (!answered && end !== -1) {
        answered = true;
        answer(received[i]!.slice(0, end), socket);
      }
    });
  });
  const port = await listenLocal(server);
  return {
    port,
    received,
    open,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function acceptOf(head: string): string {
  const key = /sec-websocket-key: *(.*)/i.exec(head)?.[1]?.trim() ?? '';
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

const ANSWERS: Record<string, (head: string, socket: Socket) => void> = {
  '200 with a body': (_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello'),
  '403 with a body': (_h, s) => s.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nbanned\n'),
  // No length: the body runs until the upstream closes, which it does only after the client's later bytes went out.
  '200 that stays open, its body ending with the connection': (_h, s) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one ');
    setTimeout(() => s.end('part two'), 500);
  },
  '101 with a wrong Sec-WebSocket-Accept': (_h, s) =>
    s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3JvbmcgYWNjZXB0IGtleQ==\r\n\r\n'),
  '101 without Upgrade: websocket': (h, s) =>
    s.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(h)}\r\n\r\n`),
  '101 with Upgrade: h2c': (h, s) =>
    s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(h)}\r\n\r\n`),
  // Interim answers are not the answer: the gateway reads on for the final one (or times out).
  '100 Continue, then nothing': (_h, s) => s.write('HTTP/1.1 100 Continue\r\n\r\n'),
  '103 Early Hints, then a 403': (_h, s) => {
    s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
    setTimeout(() => s.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'), 20);
  },
};

interface ClientRun {
  /** What the client read, until the gateway closed the connection. */
  readonly answer: string;
  /** The later bytes were written after the answer began (false: the gateway had closed by then). */
  readonly wroteLater: boolean;
}

/**
 * Writes the upgrade request with SMUGGLED glued behind it, waits for the
 * gateway's answer, writes LATER, and reads until the gateway closes.
 * The client never half-closes on its own: only the gateway may end this.
 */
async function smuggle(port: number, path = '/'): Promise<ClientRun> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  let answer = '';
  let wroteLater = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString('latin1');
    if (!wroteLater && socket.writable) {
      wroteLater = true;
      socket.write(LATER);
    }
  });
  socket.write(upgradeRequest(path) + SMUGGLED);
  // The gateway ends its side once it has answered; the client then stops too.
  await Promise.race([ended, closed]);
  socket.end();
  const timer = setTimeout(() => socket.destroy(), 10_000);
  await closed;
  clearTimeout(timer);
  return { answer, wroteLater };
}

function config(port: number, mode: 'inspect' | 'tunnel', extra = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${port}" }], retries: 0${extra} } }
relay: { mode: ${mode} }
limits: { perIp: { maxConnections: 1000, handshakeRate: 0 } }
shutdown: { drainTimeout: 0 }
`;
}

/** Each upstream connection received one request head, the gateway's upgrade request, and not a byte more. */
function assertOneHeadEach(up: LoggingUpstream): void {
  assert.ok(up.received.length > 0, 'the upstream was asked');
  for (const got of up.received) {
    assert.match(got, /^GET \/ HTTP\/1\.1\r\n/, got);
    assert.equal(got.indexOf('\r\n\r\n'), got.length - 4, `bytes behind the upgrade request reached the upstream:\n${JSON.stringify(got)}`);
    assert.doesNotMatch(got, /\/admin/);
  }
}

for (const mode of ['inspect', 'tunnel'] as const) {
  void describe(`upgrade smuggling, ${mode} mode: a refused upgrade never opens a tunnel`, () => {
    for (const [name, answer] of Object.entries(ANSWERS)) {
      void it(`upstream answers ${name}: the client's later bytes never reach it`, async () => {
        const up = await loggingUpstream(answer);
        const gw = await startGateway(config(up.port, mode, name.startsWith('100') ? ', connectTimeout: 500ms' : ''));
        try {
          const run = await smuggle(gw.port);
          const status = statusOf(run.answer);
          assert.notEqual(status, 101, run.answer);
          assert.ok(status >= 200, run.answer);
          assert.ok(run.wroteLater, 'the client wrote again once the answer began');
          // Nothing the gateway relays may follow the answer: the answer is all the client gets.
          assert.ok(!run.answer.includes('/admin'), run.answer);
          // Everything the gateway opened to the upstream is closed; what it received is final.
          await eventually(() => up.open.size === 0, 10_000, 'the upstream connections to close');
          assertOneHeadEach(up);
          // The pipelined request was not served by the gateway either (no passthrough to the same upstream).
          assert.equal(gw.logs.filter((l) => l.msg === 'http passthrough attempt failed' || l.method === 'GET').length, 0);
        } finally {
          await gw.close();
          await up.close();
        }
      });
    }

    void it('with retries, the refused attempt is dropped and only the next target sees the client’s bytes, as WebSocket data', async () => {
      const bad = await loggingUpstream(ANSWERS['101 with a wrong Sec-WebSocket-Accept']!);
      const good = await loggingUpstream((h, s) =>
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(h)}\r\n\r\n`),
      );
      const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${bad.port}" }, { url: "ws://127.0.0.1:${good.port}" }], retries: 1, balance: round-robin } }
relay: { mode: ${mode} }
shutdown: { drainTimeout: 0 }
`);
      const socket = connect(gw.port, '127.0.0.1');
      socket.on('error', () => {});
      try {
        await once(socket, 'connect');
        socket.write(upgradeRequest() + SMUGGLED);
        const [chunk] = (await once(socket, 'data')) as [Buffer];
        assert.equal(statusOf(chunk.toString('latin1')), 101);
        socket.write(LATER);
        if (mode === 'tunnel') {
          // Raw bytes after a real 101 are the tunnel's to carry, to the target that said yes.
          await eventually(() => good.received.join('').includes(LATER), 10_000, 'the tunnel to carry the bytes');
          assert.ok(good.received.join('').includes(SMUGGLED));
        } else {
          // Inspect mode reads them as frames, finds none valid, and closes (1002): the upstream gets a close frame, not them.
          await once(socket, 'close');
          await eventually(() => good.open.size === 0, 10_000, 'the relay to close');
          assert.doesNotMatch(good.received.join(''), /admin/);
        }
        await eventually(() => bad.open.size === 0, 10_000, 'the refused attempt to close');
        assertOneHeadEach(bad);
      } finally {
        socket.destroy();
        await gw.close();
        await bad.close();
        await good.close();
      }
    });
  });
}

void describe('a refused upgrade leaves nothing open', () => {
  /** Sends an upgrade; resolves once the answer's status line is in, with the socket and a promise of the gateway's end. */
  async function refusedUpgrade(port: number): Promise<{ socket: Socket; answer: () => string; ended: Promise<void> }> {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => {});
    await once(socket, 'connect');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    socket.write(upgradeRequest());
    await eventually(() => text.includes('\r\n'), 10_000, 'the answer');
    return { socket, answer: () => text, ended };
  }

  for (const mode of ['inspect', 'tunnel'] as const) {
    void it(`${mode}: a 204 or 304 without a length is complete at its head (no body to wait for)`, async () => {
      for (const status of ['204 No Content', '304 Not Modified']) {
        const up = await loggingUpstream((_h, s) => s.write(`HTTP/1.1 ${status}\r\nETag: "x"\r\n\r\n`));
        const gw = await startGateway(config(up.port, mode));
        try {
          const { socket, answer, ended } = await refusedUpgrade(gw.port);
          await ended;
          socket.destroy();
          assert.equal(statusOf(answer()), Number(status.slice(0, 3)));
          await eventually(() => up.open.size === 0, 10_000, 'the upstream connection to close');
        } finally {
          await gw.close();
          await up.close();
        }
      }
    });

    void it(`${mode}: a client that resets during an answer of unknown length takes the upstream connection with it`, async () => {
      const up = await loggingUpstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreaming…'));
      const gw = await startGateway(config(up.port, mode));
      try {
        const { socket } = await refusedUpgrade(gw.port);
        assert.equal(up.open.size, 1);
        socket.resetAndDestroy();
        await eventually(() => up.open.size === 0, 10_000, 'the upstream connection to close');
      } finally {
        await gw.close();
        await up.close();
      }
    });

    void it(`${mode}: an answer whose upstream falls silent is cut after idleTimeout`, async () => {
      const up = await loggingUpstream((_h, s) => s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthen nothing'));
      const gw = await startGateway(config(up.port, mode).replace('handshakeRate: 0 }', 'handshakeRate: 0 }, idleTimeout: 500ms'));
      try {
        const { socket, answer, ended } = await refusedUpgrade(gw.port);
        await ended;
        socket.destroy();
        assert.ok(answer().endsWith('then nothing'), answer());
        await eventually(() => up.open.size === 0, 10_000, 'the upstream connection to close');
      } finally {
        await gw.close();
        await up.close();
      }
    });
  }
});

void describe('interim (1xx) upstream answers', () => {
  void it('are skipped: a 101 behind a 100 and a 103, in one read or several, completes the upgrade', async () => {
    for (const split of [false, true]) {
      const up = await loggingUpstream((h, s) => {
        const interim = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n';
        const final = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(h)}\r\n\r\n`;
        if (!split) return void s.write(interim + final);
        s.write(interim.slice(0, 30));
        setTimeout(() => s.write(interim.slice(30)), 20);
        setTimeout(() => s.write(final), 40);
      });
      const gw = await startGateway(config(up.port, 'inspect'));
      try {
        const socket = connect(gw.port, '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write(upgradeRequest());
        const [chunk] = (await once(socket, 'data')) as [Buffer];
        socket.destroy();
        const answer = chunk.toString('latin1');
        assert.equal(statusOf(answer), 101, answer);
        assert.doesNotMatch(answer, /100 Continue|Early Hints/);
      } finally {
        await gw.close();
        await up.close();
      }
    }
  });
});

void describe('upgrade smuggling: the test can see a leak', () => {
  let up: LoggingUpstream;
  let gw: RunningGateway;
  before(async () => {
    up = await loggingUpstream((h, s) =>
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptOf(h)}\r\n\r\n`),
    );
    gw = await startGateway(config(up.port, 'tunnel'));
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  void it('after a genuine 101 in tunnel mode, the same bytes do reach the upstream (so the checks above would catch them)', async () => {
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(upgradeRequest() + SMUGGLED);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    assert.equal(statusOf(chunk.toString('latin1')), 101);
    socket.write(LATER);
    await eventually(() => (up.received[0] ?? '').includes(LATER), 10_000, 'the bytes to arrive');
    socket.destroy();
    assert.throws(() => assertOneHeadEach(up), /bytes behind the upgrade request reached the upstream/);
  });
});
