import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { WebSocketServer } from 'ws';
import fc from 'fast-check';
import { parseProxyHeader } from '../src/listener/proxy-protocol.js';
import type { Peer } from '../src/listener/peer-address.js';
import {
  eventually,
  rawExchange,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  type RunningGateway,
  withGateway,
  listenLocal,
} from './helpers.js';
import { makeCa, NO_OPENSSL, type TestCa } from './tls-fixtures.js';
import { frame } from './inspect-fixtures.js';
import { NO_PER_IP_LIMITS } from './resilience-helpers.js';

const V2_SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2Header(src: readonly number[], sport: number): Buffer {
  const b = Buffer.alloc(28);
  V2_SIG.copy(b);
  b[12] = 0x21;
  b[13] = 0x11;
  b.writeUInt16BE(12, 14);
  Buffer.from([...src, 10, 0, 0, 1]).copy(b, 16);
  b.writeUInt16BE(sport, 24);
  b.writeUInt16BE(443, 26);
  return b;
}

void describe('PROXY protocol on a listener', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0, proxyProtocol: true, ipDeny: [203.0.113.99] }]
routes:
  - { name: main, match: { path: / }, upstream: app, ipDeny: [203.0.113.66] }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { handshakeTimeout: 500ms }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('v1: the source address is the client everywhere (forwarding headers included)', async () => {
    const answer = await rawExchange(fx.gw.port, `PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n${upgradeRequest()}`, /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    const h = fx.backend.requests.at(-1)!.headers;
    assert.equal(h['x-forwarded-for'], '203.0.113.7');
    assert.equal(h.forwarded, 'for=203.0.113.7;host="localhost";proto=http');
  });

  void it('v1 in its own packet, the request later; and TCP6', async () => {
    const socket = connect(fx.gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n');
    await new Promise((r) => setTimeout(r, 50));
    socket.write(upgradeRequest());
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    assert.equal(statusOf(chunk.toString()), 101);
    assert.equal(fx.backend.requests.at(-1)!.headers['x-forwarded-for'], '2001:db8::7');
  });

  void it('v2 (binary), glued to the request', async () => {
    const answer = await rawExchange(fx.gw.port, Buffer.concat([v2Header([198, 51, 100, 9], 40_000), Buffer.from(upgradeRequest())]), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    assert.equal(fx.backend.requests.at(-1)!.headers['x-forwarded-for'], '198.51.100.9');
  });

  void it('v2 LOCAL (a balancer health check) keeps the connection address', async () => {
    const local = Buffer.alloc(16);
    V2_SIG.copy(local);
    local[12] = 0x20;
    const answer = await rawExchange(fx.gw.port, Buffer.concat([local, Buffer.from(upgradeRequest())]), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    assert.equal(fx.backend.requests.at(-1)!.headers['x-forwarded-for'], '127.0.0.1');
  });

  void it('route and listener IP lists see the PROXY source', async () => {
    const denied = await rawExchange(fx.gw.port, `PROXY TCP4 203.0.113.66 10.0.0.1 1 443\r\n${upgradeRequest()}`, /\r\n\r\n/);
    assert.equal(statusOf(denied), 403);
    const before = fx.backend.requests.length;
    const closed = await rawExchange(fx.gw.port, `PROXY TCP4 203.0.113.99 10.0.0.1 1 443\r\n${upgradeRequest()}`);
    assert.equal(closed, '', 'the listener list closes the connection without an answer');
    assert.equal(fx.backend.requests.length, before);
  });

  void it('a connection without a valid header is closed, and logged', async () => {
    const before = fx.backend.requests.length;
    assert.equal(await rawExchange(fx.gw.port, upgradeRequest()), '');
    assert.equal(await rawExchange(fx.gw.port, `PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n${upgradeRequest()}`), '');
    assert.equal(fx.backend.requests.length, before);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'PROXY protocol header invalid; connection closed' && /6 fields/.test(String(l.reason))));
    assert.ok(fx.gw.logs.some((l) => l.msg === 'PROXY protocol header invalid; connection closed' && /no PROXY protocol header/.test(String(l.reason))));
  });

  void it('a header that never completes is cut after handshakeTimeout', async () => {
    const socket = connect(fx.gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('PROXY TCP4 1.2.3.4');
    await once(socket, 'close');
    await eventually(() => fx.gw.logs.some((l) => l.reason === 'no complete PROXY header in time'));
  });
});

/** A PROXY header as a balancer would send it, and the address it names (undefined: the connection's own). */
const anyHeader: fc.Arbitrary<{ header: Buffer; source: string | undefined }> = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 65_535 })).map(([a, p]) => ({ header: Buffer.from(`PROXY TCP4 ${a} 10.0.0.1 ${p} 443\r\n`), source: a })),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65_535 })).map(([a, p]) => ({ header: Buffer.from(`PROXY TCP6 ${a} ::1 ${p} 443\r\n`), source: a })),
  fc.constant({ header: Buffer.from('PROXY UNKNOWN\r\n'), source: undefined }),
  fc
    .record({
      family: fc.constantFrom(0, 1, 2, 3),
      command: fc.constantFrom(0, 1),
      address: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      tlvs: fc.uint8Array({ maxLength: 64 }),
    })
    .map(({ family, command, address, tlvs }) => {
      const block = Buffer.alloc([0, 12, 36, 216][family]!);
      Buffer.from(address).copy(block, 0, 0, Math.min(16, block.length));
      const header = Buffer.concat([V2_SIG, Buffer.from([0x20 | command, (family << 4) | 1, 0, 0]), block, tlvs]);
      header.writeUInt16BE(header.length - 16, 14);
      const parsed = parseProxyHeader(header);
      return { header, source: parsed.status === 'done' ? parsed.source?.address : undefined };
    }),
);

/** Writes `data` cut at `cuts`, a turn of the event loop apart; resolves with everything read until `until` matches or the gateway closes. */
async function exchangeInPieces(port: number, data: Buffer, cuts: readonly number[], until: RegExp): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let text = '';
  const answered = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer; got ${JSON.stringify(text)}`)), 10_000);
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (until.test(text)) done();
    });
    socket.on('close', done);
  });
  await once(socket, 'connect');
  let at = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b)) {
    if (cut <= at) continue;
    socket.write(data.subarray(at, cut));
    at = cut;
    await new Promise((r) => setTimeout(r, 1));
  }
  if (!socket.destroyed) socket.write(data.subarray(at));
  return answered;
}

void describe('PROXY protocol listener fuzz', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0, proxyProtocol: true }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { handshakeTimeout: 2s, ${NO_PER_IP_LIMITS} }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('any valid header, in any chunking: the client is who it names, and the request and a frame behind it arrive intact', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(anyHeader, fc.array(fc.nat(), { maxLength: 5 }), async ({ header, source }, cuts) => {
        const text = `echo-${++n}`;
        const data = Buffer.concat([header, Buffer.from(upgradeRequest()), frame(1, text, { mask: true })]);
        const answer = await exchangeInPieces(fx.gw.port, data, cuts, new RegExp(text));
        assert.equal(statusOf(answer), 101, answer);
        assert.ok(answer.endsWith(text), 'the frame behind the request came back');
        const xff = fx.backend.requests.at(-1)!.headers['x-forwarded-for'];
        assert.equal(xff, source ?? '127.0.0.1');
      }),
      { numRuns: 25 },
    );
  });

  void it('a damaged header: the connection closes unanswered and nothing reaches the backend; the listener keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(anyHeader, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.array(fc.nat(), { maxLength: 4 }), async ({ header }, at, byte, cuts) => {
        const damaged = Buffer.from(header);
        damaged[at % damaged.length] = byte;
        const verdict = parseProxyHeader(Buffer.concat([damaged, Buffer.from(upgradeRequest())]));
        fc.pre(verdict.status === 'invalid');
        const before = fx.backend.requests.length;
        const answer = await exchangeInPieces(fx.gw.port, Buffer.concat([damaged, Buffer.from(upgradeRequest())]), cuts, /\r\n\r\n/);
        assert.equal(answer, '');
        assert.equal(fx.backend.requests.length, before);
      }),
      { numRuns: 25 },
    );
    const answer = await rawExchange(fx.gw.port, `PROXY TCP4 192.0.2.1 10.0.0.1 1 443\r\n${upgradeRequest()}`, /\r\n\r\n/);
    assert.equal(statusOf(answer), 101);
  });
});

interface ProxyFront {
  readonly port: number;
  readonly seen: (Peer | undefined)[];
  close(): Promise<void>;
}

/** A backend's front door that reads the PROXY header, then hands the connection to `server` (as an L4 balancer-aware server would). */
async function proxyFront(server: { emit(event: 'connection', socket: Socket): boolean }, tls = false): Promise<ProxyFront> {
  const seen: (Peer | undefined)[] = [];
  const sockets = new Set<Socket>();
  const front: NetServer = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseProxyHeader(buf);
      if (parsed.status === 'more') return;
      socket.off('data', onData);
      socket.pause();
      if (parsed.status === 'invalid') {
        seen.push({ address: `invalid: ${parsed.reason}`, port: 0 });
        socket.destroy();
        return;
      }
      seen.push(parsed.source);
      if (parsed.length < buf.length) socket.unshift(buf.subarray(parsed.length));
      server.emit('connection', socket);
      // HTTP reads on once the flow resumes; TLS takes the buffered bytes and the handle over itself.
      if (!tls) socket.resume();
    };
    socket.on('data', onData);
  });
  const port = await listenLocal(front);
  return {
    port,
    seen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => front.close(() => r()));
    },
  };
}

void describe('PROXY protocol to upstreams (upstreams.X.proxyProtocol)', () => {
  let backend: Backend;
  let front: ProxyFront;
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    front = await proxyFront(backend.server);
    gw = await startGateway(config());
  });
  const config = (extra = ''): string => `
listeners: [{ address: 127.0.0.1:0 }, { address: 127.0.0.1:0, proxyProtocol: true }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${front.port}" }], proxyProtocol: true } }
shutdown: { drainTimeout: 0 }
${extra}`;
  after(async () => {
    await gw.close();
    await front.close();
    await backend.close();
  });

  void it('every upstream connection starts with a v2 header naming the client', async () => {
    const answer = await rawExchange(gw.port, upgradeRequest(), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    const seen = front.seen.at(-1);
    assert.equal(seen?.address, '127.0.0.1');
    assert.ok(seen !== undefined && seen.port > 0, 'the client port is passed on');
  });

  void it('a client that came in with PROXY protocol is passed on as that client', async () => {
    const second = gw.gw.addresses[1]!.port;
    const answer = await rawExchange(second, `PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n${upgradeRequest()}`, /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    assert.deepEqual(front.seen.at(-1), { address: '203.0.113.7', port: 51_000 });
  });

  void it('in tunnel mode too, where plain targets are dialed on a bare TCP handle', async () => {
    const tunnel = await startGateway(config('relay: { mode: tunnel }'));
    try {
      const second = tunnel.gw.addresses[1]!.port;
      const answer = await rawExchange(second, `PROXY TCP4 203.0.113.8 10.0.0.1 51001 443\r\n${upgradeRequest()}`, /\r\n\r\n/);
      assert.equal(statusOf(answer), 101, answer);
      assert.deepEqual(front.seen.at(-1), { address: '203.0.113.8', port: 51_001 });
    } finally {
      await tunnel.close();
    }
  });
});

void describe('PROXY protocol with TLS', { skip: NO_OPENSSL }, () => {
  let ca: TestCa;
  let backend: Backend;
  let tlsFront: ProxyFront;
  let tlsBackendClose: () => Promise<void>;
  let gw: RunningGateway;
  before(async () => {
    ca = makeCa();
    const server = ca.issue('gw', ['localhost', '127.0.0.1']);
    const up = ca.issue('up', ['backend.internal']);
    backend = await startBackend();
    // A wss:// backend behind a PROXY-reading front door.
    const https = createHttpsServer({ cert: readFileSync(up.cert), key: readFileSync(up.key) });
    const wss = new WebSocketServer({ server: https });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(m)));
    https.listen(0, '127.0.0.1');
    await once(https, 'listening');
    tlsFront = await proxyFront(https, true);
    tlsBackendClose = async () => {
      for (const c of wss.clients) c.terminate();
      https.closeAllConnections();
      await new Promise<void>((r) => https.close(() => r()));
    };
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0, proxyProtocol: true, tls: { cert: ${server.cert}, key: ${server.key} } }]
routes:
  - { name: plain, match: { path: /plain }, upstream: plain }
  - { name: secure, match: { path: / }, upstream: secure }
upstreams:
  plain: { targets: [{ url: "${backend.url}" }] }
  secure: { targets: [{ url: "wss://127.0.0.1:${tlsFront.port}" }], proxyProtocol: true, tls: { ca: ${ca.caFile}, servername: backend.internal } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await tlsFront.close();
    await tlsBackendClose();
    await backend.close();
    ca.close();
  });

  /** PROXY header on the TCP connection, then TLS, then the handshake; resolves to the status. */
  async function handshakeOverTls(path: string, source: string): Promise<number> {
    const raw = connect(gw.port, '127.0.0.1');
    raw.on('error', () => {});
    await once(raw, 'connect');
    raw.write(`PROXY TCP4 ${source} 10.0.0.1 40000 443\r\n`);
    const s = tlsConnect({ socket: raw, servername: 'localhost', ca: ca.ca });
    s.on('error', () => {});
    await once(s, 'secureConnect');
    s.write(upgradeRequest(path));
    const [chunk] = (await once(s, 'data')) as [Buffer];
    s.destroy();
    return statusOf(chunk.toString());
  }

  void it('a TLS listener reads the PROXY header before the TLS handshake', async () => {
    assert.equal(await handshakeOverTls('/plain', '192.0.2.44'), 101);
    const h = backend.requests.at(-1)!.headers;
    assert.equal(h['x-forwarded-for'], '192.0.2.44');
    assert.equal(h['x-forwarded-proto'], 'https');
  });

  void it('a wss:// upstream gets the PROXY header before its TLS handshake', async () => {
    assert.equal(await handshakeOverTls('/', '192.0.2.45'), 101);
    assert.deepEqual(tlsFront.seen.at(-1), { address: '192.0.2.45', port: 40_000 });
  });
});
