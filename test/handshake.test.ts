import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import {
  echo,
  openClient,
  rawExchange,
  simpleConfig,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  type RunningGateway,
  withGateway,
  rawServer,
  readHead,
} from './helpers.js';

void describe('handshake validation (RFC 6455 §4.2.1)', () => {
  const fx = withGateway(startBackend, (backend) => simpleConfig([backend.url], 'limits: { maxHeaderBytes: 4KiB, handshakeTimeout: 500ms }'));

  const cases: [string, string, number][] = [
    ['POST instead of GET', upgradeRequest().replace('GET', 'POST'), 400],
    ['HTTP/1.0', upgradeRequest().replace('HTTP/1.1', 'HTTP/1.0'), 400],
    ['Upgrade is not websocket', upgradeRequest().replace('Upgrade: websocket', 'Upgrade: h2c'), 400],
    ['Connection without upgrade', upgradeRequest().replace('Connection: Upgrade', 'Connection: keep-alive'), 400],
    ['key of 15 bytes', upgradeRequest().replace('dGhlIHNhbXBsZSBub25jZQ==', 'dGhlIHNhbXBsZSBub25j'), 400],
    ['missing key', upgradeRequest().replace('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n', ''), 400],
    ['version 8', upgradeRequest().replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'), 426],
    ['not HTTP at all', 'HELLO THERE\r\n\r\n', 400],
  ];
  for (const [name, request, status] of cases) {
    void it(`${name} → ${status}, backend untouched`, async () => {
      const before = fx.backend.requests.length;
      const answer = await rawExchange(fx.gw.port, request);
      assert.equal(statusOf(answer), status, answer);
      if (status === 426) assert.match(answer, /\r\nSec-WebSocket-Version: 13\r\n/);
      assert.equal(fx.backend.requests.length, before);
    });
  }

  void it('logs the reason of a rejected handshake', async () => {
    await rawExchange(fx.gw.port, upgradeRequest().replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'));
    const line = fx.gw.logs.find((l) => l.msg === 'handshake rejected' && l.status === 426);
    assert.ok(line, 'a log line for the 426');
    assert.match(String(line.reason), /Sec-WebSocket-Version 8/);
  });

  void it('headers over maxHeaderBytes → 431', async () => {
    const answer = await rawExchange(fx.gw.port, upgradeRequest('/', [`X-Big: ${'a'.repeat(8_000)}`]));
    assert.equal(statusOf(answer), 431, answer);
  });

  void it('a slowloris sending one header byte at a time is cut after handshakeTimeout', async () => {
    const socket = connect(fx.gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const request = upgradeRequest();
    let i = 0;
    const drip = setInterval(() => {
      if (i < request.length && !socket.destroyed) socket.write(request[i++]!);
    }, 100);
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    await once(socket, 'close');
    clearInterval(drip);
    assert.ok(i < request.length, 'cut before the head was complete');
    assert.ok(answer === '' || statusOf(answer) === 408, answer);
  });

  void it('a head that arrives in pieces is upgraded, with the bytes sent behind it', async () => {
    const socket = connect(fx.gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    let answer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => (answer = Buffer.concat([answer, d])));
    const request = upgradeRequest('/pieces');
    // A masked text frame "hi" right behind the head, in the same write.
    const frame = Buffer.from([0x81, 0x82, 1, 2, 3, 4, 'h'.charCodeAt(0) ^ 1, 'i'.charCodeAt(0) ^ 2]);
    for (const piece of [request.slice(0, 7), request.slice(7, 40), request.slice(40, -3)]) {
      socket.write(piece);
      await new Promise((r) => setTimeout(r, 30));
    }
    socket.write(Buffer.concat([Buffer.from(request.slice(-3)), frame]));
    const deadline = Date.now() + 10_000;
    while (!answer.includes('\x81\x02hi', 0, 'latin1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    const text = answer.toString('latin1');
    assert.equal(statusOf(text), 101, text);
    assert.ok(text.endsWith('\x81\x02hi'), `the echo of the early frame: ${JSON.stringify(text)}`);
  });

  void it('a client that ends its connection inside the head → 400 and a log line', async () => {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(fx.gw.port, '127.0.0.1');
      let text = '';
      socket.on('error', () => {});
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('close', () => resolve(text));
      socket.end('GET / HTTP/1.1\r\nHost: loc');
    });
    assert.equal(statusOf(answer), 400, answer);
    assert.ok(fx.gw.logs.some((l) => l.msg === 'request rejected' && l.reason === 'HPE_INVALID_EOF_STATE'));
  });
});

void describe('connections still sending their head', () => {
  void it('are closed when the gateway stops', async () => {
    const backend = await startBackend();
    const gw = await startGateway(simpleConfig([backend.url]));
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
    await new Promise((r) => setTimeout(r, 50));
    const closed = once(socket, 'close');
    await gw.close();
    await closed;
    await backend.close();
    assert.equal(backend.requests.length, 0);
  });
});

void describe('routing', () => {
  let a: Backend;
  let b: Backend;
  let c: Backend;
  let gw: RunningGateway;
  before(async () => {
    [a, b, c] = await Promise.all([startBackend(), startBackend(), startBackend()]);
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: tenant, match: { path: /chat, headers: { x-tenant: blue } }, upstream: c }
  - { name: chat, match: { host: chat.example.com, path: /chat }, upstream: a, stripPrefix: true }
  - { name: wild, match: { host: "*.example.com" }, upstream: b }
upstreams:
  a: { targets: [{ url: "${a.url}/base" }] }
  b: { targets: [{ url: "${b.url}" }] }
  c: { targets: [{ url: "${c.url}" }] }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  void it('routes on host, path prefix (segment boundary) and headers; first match wins', async () => {
    const open = async (path: string, headers: Record<string, string>): Promise<void> => {
      const ws = await openClient(`${gw.url}${path}`, { headers });
      assert.equal(await echo(ws, 'hi'), 'hi');
      ws.close();
    };
    await open('/chat/room?x=1', { host: 'chat.example.com' });
    assert.equal(a.requests.at(-1)?.url, '/base/room?x=1', 'stripPrefix and base path applied, query kept');
    await open('/chat?y=2', { host: 'chat.example.com:8080' });
    assert.equal(a.requests.at(-1)?.url, '/base/?y=2');
    await open('/chatty', { host: 'chat.example.com' });
    assert.equal(b.requests.at(-1)?.url, '/chatty', '/chatty is not under /chat: falls to the wildcard route');
    await open('/chat/x', { host: 'chat.example.com', 'x-tenant': 'blue' });
    assert.equal(c.requests.length, 1, 'the header route is listed first and wins');
    assert.equal(a.requests.length, 2);
    await open('/chat/x', { host: 'chat.example.com', 'x-tenant': 'green' });
    assert.equal(c.requests.length, 1, 'a header match is exact: another value falls through');
    assert.equal(a.requests.length, 3);
  });

  void it('no matching route → 404', async () => {
    const answer = await rawExchange(gw.port, upgradeRequest('/', [], 'other.org'));
    assert.equal(statusOf(answer), 404, answer);
    const apex = await rawExchange(gw.port, upgradeRequest('/', [], 'example.com'));
    assert.equal(statusOf(apex), 404, '*.example.com does not match the apex');
  });
});

void describe('forwarding the handshake', () => {
  let backend: Backend;
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend({
      handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false),
    });
    gw = await startGateway(simpleConfig([backend.url], 'trustedProxies: ["10.0.0.0/8"]'));
  });
  after(async () => {
    await gw.close();
    await backend.close();
  });

  void it('passes subprotocols and the upstream choice; the accept key is right for the client', async () => {
    const ws2 = new WebSocket(gw.url, ['chat.v1', 'chat.v2']);
    ws2.on('error', () => {});
    const upgraded = once(ws2, 'upgrade') as Promise<[IncomingMessage]>;
    await once(ws2, 'open');
    const [res] = await upgraded;
    assert.equal(ws2.protocol, 'chat.v2');
    assert.equal(backend.requests.at(-1)?.headers['sec-websocket-protocol'], 'chat.v1,chat.v2');
    assert.ok(res.headers['sec-websocket-accept']);
    ws2.close();
  });

  void it('offers the extensions as the client sent them', async () => {
    const offer = 'permessage-deflate; client_max_window_bits, x-webkit-deflate-frame;  no_context_takeover';
    const answer = await rawExchange(gw.port, upgradeRequest('/', [`Sec-WebSocket-Extensions: ${offer}`]), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    assert.equal(backend.requests.at(-1)?.headers['sec-websocket-extensions'], offer);
  });

  void it('answers with Sec-WebSocket-Accept computed from the client key, over a raw socket', async () => {
    const answer = await rawExchange(gw.port, upgradeRequest(), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    const expected = createHash('sha1').update('dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    assert.match(answer, new RegExp(`Sec-WebSocket-Accept: ${expected.replace(/[+/]/g, '\\$&')}\\r\\n`, 'i'));
  });

  void it('removes hop-by-hop headers and sets forwarding headers; client-sent ones are replaced', async () => {
    await rawExchange(
      gw.port,
      upgradeRequest('/', [
        'Keep-Alive: timeout=5',
        'TE: trailers',
        'Trailer: X-Checksum',
        'Proxy-Connection: keep-alive',
        'X-Secret-Hop: 1',
        'X-Forwarded-For: 6.6.6.6',
        'Forwarded: for=6.6.6.6',
        'X-Forwarded-Host: evil.example',
        'X-Kept: yes',
      ]).replace('Connection: Upgrade', 'Connection: Upgrade, X-Secret-Hop'),
      /\r\n\r\n/,
    );
    const h = backend.requests.at(-1)!.headers;
    for (const name of ['keep-alive', 'te', 'trailer', 'proxy-connection']) assert.equal(h[name], undefined, `${name} is hop-by-hop`);
    assert.equal(h['x-secret-hop'], undefined, 'headers named in Connection are hop-by-hop');
    assert.equal(h.connection, 'Upgrade');
    assert.equal(h.upgrade, 'websocket');
    assert.equal(h['x-kept'], 'yes');
    assert.equal(h['x-forwarded-for'], '127.0.0.1', 'untrusted client: its X-Forwarded-For is replaced');
    assert.equal(h['x-forwarded-host'], 'localhost');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h.forwarded, 'for=127.0.0.1;host="localhost";proto=http');
    assert.equal(h.host, 'localhost', 'the client Host is preserved');
  });

  void it('keeps and extends forwarding headers from a trusted proxy', async () => {
    const trusted = await startGateway(simpleConfig([backend.url], 'trustedProxies: ["127.0.0.0/8"]'));
    try {
      await rawExchange(
        trusted.port,
        upgradeRequest('/', [
          'X-Forwarded-For: 203.0.113.9',
          'X-Forwarded-Proto: https',
          'X-Forwarded-Host: app.example.com',
          'Forwarded: for=203.0.113.9;host=app.example.com;proto=https',
        ]),
        /\r\n\r\n/,
      );
      const h = backend.requests.at(-1)!.headers;
      assert.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
      assert.equal(h['x-forwarded-proto'], 'https');
      assert.equal(h['x-forwarded-host'], 'app.example.com');
      assert.equal(h.forwarded, 'for=203.0.113.9;host=app.example.com;proto=https, for=127.0.0.1;host="localhost";proto=http');
    } finally {
      await trusted.close();
    }
  });

  void it('bytes sent right behind the request head reach the upstream', async () => {
    // A masked text frame "hey" glued to the handshake in a single write.
    const frame = Buffer.from([0x81, 0x83, 1, 2, 3, 4, 'h'.charCodeAt(0) ^ 1, 'e'.charCodeAt(0) ^ 2, 'y'.charCodeAt(0) ^ 3]);
    const answer = await rawExchange(gw.port, Buffer.concat([Buffer.from(upgradeRequest()), frame]), /hey/);
    assert.match(answer, /^HTTP\/1\.1 101/);
    assert.ok(answer.endsWith('\x81\x03hey'), 'the echo of the early frame came back');
  });
});

// Field values may carry bytes beyond ASCII (RFC 9110 §5.5 obs-text; UTF-8 in
// practice). The gateway reads heads as latin1, one character per byte, so
// it must write them the same way, or each such byte goes out as two.
void describe('header bytes beyond ASCII pass both ways unchanged', () => {
  // "café" in UTF-8 and in latin1, as latin1 strings (one character per byte).
  const UTF8 = 'caf\u00c3\u00a9';
  const LATIN1 = 'caf\u00e9';
  for (const host of ['127.0.0.1', 'localhost']) {
    void it(`target by ${host === 'localhost' ? 'name' : 'address'}: request headers, the 101's headers, a non-101 answer`, async () => {
      const heads: string[] = [];
      const srv = await rawServer((s) => {
        void readHead(s).then((text) => {
          heads.push(text);
          if (text.startsWith('GET /no ')) {
            s.end(Buffer.from(`HTTP/1.1 403 Forbidden\r\nX-Why: ${UTF8}\r\nContent-Length: 2\r\n\r\nno`, 'latin1'));
            return;
          }
          const key = /sec-websocket-key: (.*)\r\n/i.exec(text + '\r\n')?.[1] ?? '';
          const accept = createHash('sha1')
            .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
            .digest('base64');
          s.write(
            Buffer.from(
              `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Back: ${UTF8} ${LATIN1}\r\n\r\n`,
              'latin1',
            ),
          );
        });
      });
      const gw = await startGateway(simpleConfig([`ws://${host}:${srv.port}`]));
      try {
        const request = (path: string): Buffer => Buffer.from(upgradeRequest(path, [`X-Name: ${UTF8}`, `X-Latin: ${LATIN1}`]), 'latin1');
        const upgraded = await rawExchange(gw.port, request('/'), /\r\n\r\n/);
        assert.equal(statusOf(upgraded), 101, upgraded);
        assert.ok(upgraded.includes(`\r\nX-Back: ${UTF8} ${LATIN1}\r\n`), `the client got the 101's bytes: ${JSON.stringify(upgraded)}`);
        assert.ok(heads[0]!.includes(`\r\nX-Name: ${UTF8}\r\nX-Latin: ${LATIN1}\r\n`), `the upstream got the request's bytes: ${JSON.stringify(heads[0])}`);
        const refused = await rawExchange(gw.port, request('/no'), /\r\n\r\nno/);
        assert.equal(statusOf(refused), 403, refused);
        assert.ok(refused.includes(`\r\nX-Why: ${UTF8}\r\n`), `the client got the answer's bytes: ${JSON.stringify(refused)}`);
      } finally {
        await gw.close();
        await srv.close();
      }
    });
  }
});
