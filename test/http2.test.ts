// WebSockets over HTTP/2 (RFC 8441): the handshake through the same
// pipeline as HTTP/1.1 (validation, auth, origin, routing, limits), the
// upstream's view, both relay modes, many WebSockets on one connection,
// HTTP passthrough over h2, and the listener's ALPN. Closes, resets,
// backpressure and shutdown are in http2-lifecycle.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { closeHttp, echo, eventually, listenLocal, startBackend, startGateway, type Backend, type RunningGateway } from './helpers.js';
import { frame } from './inspect-fixtures.js';
import { SECRET, hs256 } from './auth-fixtures.js';
import { adminJson, scrape } from './metrics-fixtures.js';
import type { ConnectionPage } from '../src/admin/stats.js';
import { NO_OPENSSL } from './tls-fixtures.js';
import { h2Client, h2Request, openWs, refusal, tlsFiles, tlsListener, type H2Client, type TlsFiles } from './http2-fixtures.js';
import type { RawPeer } from './inspect-fixtures.js';

/** Sends a masked text frame and waits for the echo. */
async function echoOver(peer: RawPeer, text: string): Promise<void> {
  const from = peer.frames.length;
  peer.send(frame(1, text));
  const f = await peer.next((x) => x.opcode === 1, from);
  assert.equal(f.payload.toString(), text);
  assert.equal(f.masked, false, 'server frames are not masked');
}

function gatewayYaml(files: TlsFiles, backend: Backend, rest = '', mode = 'inspect'): string {
  return `${tlsListener(files)}routes:
  - name: chat
    match: { host: localhost, path: /chat }
    upstream: app
    allowedOrigins: ["https://app.example"]
    auth:
      jwt:
        secret: \${JWT_SECRET}
        from: [protocol, header:authorization]
  - name: echo
    match: { path: / }
    upstream: app
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { perIp: { maxConnections: 1000, handshakeRate: 0 } }
relay: { mode: ${mode} }
admin: { address: 127.0.0.1:0 }
shutdown: { drainTimeout: 0 }
${rest}`;
}

void describe('WebSockets over HTTP/2: the handshake', { skip: NO_OPENSSL }, () => {
  let files: TlsFiles;
  let backend: Backend;
  let gw: RunningGateway;
  let c: H2Client;

  before(async () => {
    files = tlsFiles();
    backend = await startBackend({ handleProtocols: (p) => (p.has('chat.v1') ? 'chat.v1' : false) });
    gw = await startGateway(gatewayYaml(files, backend), { JWT_SECRET: SECRET });
    c = await h2Client(gw.port, files.ca.ca);
  });
  after(async () => {
    c.close();
    await gw.close();
    await backend.close();
    files.ca.close();
  });

  void it('relays frames both ways; the upstream sees an ordinary HTTP/1.1 upgrade with its own valid key', async () => {
    const before = backend.requests.length;
    const { peer, answer } = await openWs(c, '/room?x=1', { origin: 'https://anywhere.example', cookie: 'a=1', 'x-custom': 'yes' });
    assert.equal(answer.headers['sec-websocket-accept'], undefined, 'RFC 8441: no accept header on the 200');
    await echoOver(peer, 'over h2');
    await echoOver(peer, 'x'.repeat(70_000));
    const req = backend.requests[before]!;
    assert.equal(req.url, '/room?x=1');
    assert.equal(req.headers.host, `localhost:${gw.port}`, 'Host from :authority');
    assert.equal(req.headers.upgrade, 'websocket');
    assert.equal(req.headers['sec-websocket-version'], '13');
    assert.match(req.headers['sec-websocket-key'] ?? '', /^[A-Za-z0-9+/]{22}==$/, 'a fresh Sec-WebSocket-Key');
    assert.equal(req.headers['x-forwarded-proto'], 'https');
    assert.equal(req.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(req.headers.cookie, 'a=1');
    assert.equal(req.headers['x-custom'], 'yes');
    assert.equal(
      Object.keys(req.headers).some((h) => h.startsWith(':')),
      false,
      'no pseudo-header reaches the upstream',
    );
    const list = await adminJson<ConnectionPage>(gw.gw.adminAddress!.port, 'GET', '/api/connections');
    assert.deepEqual(
      list.body.connections.map((x) => x.protocol),
      ['h2'],
      'the connection list says how the client came',
    );
    peer.send(frame(8, Buffer.from([0x03, 0xe8]), {}));
    const close = await peer.closeFrame();
    assert.equal(close.code, 1000);
    await eventually(
      () => gw.logs.some((l) => l.msg === 'session closed' && l.protocol === 'h2' && l.route === 'echo'),
      5_000,
      'access log line with protocol h2',
    );
    const m = await scrape(gw.gw);
    assert.ok((m.get('wsgate_http2_websockets_total', { route: 'echo' }) ?? 0) >= 1);
  });

  void it('two split cookie fields reach the upstream as one Cookie (RFC 9113 §8.2.3)', async () => {
    const before = backend.requests.length;
    const { peer } = await openWs(c, '/', { cookie: ['a=1', 'b=2'] });
    await echoOver(peer, 'cookies');
    assert.equal(backend.requests[before]!.headers.cookie, 'a=1; b=2');
    peer.socket.destroy();
  });

  void it('a JWT in Sec-WebSocket-Protocol passes and is taken out; the upstream’s choice comes back on the 200', async () => {
    const token = await hs256({ sub: 'alice' });
    const before = backend.requests.length;
    const { peer, answer } = await openWs(c, '/chat', { 'sec-websocket-protocol': `chat.v1, ${token}`, origin: 'https://app.example' });
    assert.equal(answer.headers['sec-websocket-protocol'], 'chat.v1');
    assert.equal(backend.requests[before]!.headers['sec-websocket-protocol'], 'chat.v1');
    await echoOver(peer, 'authenticated');
    peer.socket.destroy();
  });

  void it('a missing or invalid JWT is 401 on the stream, before any upstream is touched', async () => {
    const before = backend.requests.length;
    const missing = await refusal(c, '/chat', { origin: 'https://app.example' });
    assert.equal(missing.status, 401);
    assert.match(missing.body, /Unauthorized/);
    const invalid = await refusal(c, '/chat', { origin: 'https://app.example', 'sec-websocket-protocol': 'chat.v1, aaa.bbb.ccc' });
    assert.equal(invalid.status, 401);
    assert.equal(backend.requests.length, before);
    // The refusal is the session's end: the connection itself stays usable.
    const { peer } = await openWs(c, '/');
    await echoOver(peer, 'still fine');
    peer.socket.destroy();
  });

  void it('an Origin the route does not allow is 403', async () => {
    const token = await hs256({ sub: 'alice' });
    const r = await refusal(c, '/chat', { origin: 'https://evil.example', 'sec-websocket-protocol': token });
    assert.equal(r.status, 403);
    assert.match(r.body, /origin not allowed/);
  });

  void it('no route is 404: routes match :authority as they match Host', async () => {
    const gw404 = await startGateway(
      `${tlsListener(files)}routes: [{ match: { host: localhost, path: /only }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
    );
    const c2 = await h2Client(gw404.port, files.ca.ca);
    try {
      assert.equal((await refusal(c2, '/elsewhere')).status, 404);
      assert.equal((await refusal(c2, '/only', {}, `127.0.0.1:${gw404.port}`)).status, 404);
      const ok = await openWs(c2, '/only');
      await echoOver(ok.peer, 'routed by authority');
      ok.peer.socket.destroy();
    } finally {
      c2.close();
      await gw404.close();
    }
  });

  void it('Sec-WebSocket-Version other than 13 is 426 with sec-websocket-version: 13', async () => {
    const r = await refusal(c, '/', { 'sec-websocket-version': '8' });
    assert.equal(r.status, 426);
    assert.equal(r.headers['sec-websocket-version'], '13');
  });

  void it('CONNECT without :protocol, or with another :protocol, or :scheme http, is 400', async () => {
    const plain = c.session.request({ ':method': 'CONNECT', ':authority': `localhost:${gw.port}` });
    plain.on('error', () => {});
    const [head] = (await once(plain, 'response')) as [Record<string, unknown>];
    assert.equal(head[':status'], 400);
    plain.destroy();
    assert.equal((await refusal(c, '/', { ':protocol': 'chat' })).status, 400);
    assert.equal((await refusal(c, '/', { ':scheme': 'http' })).status, 400);
    const logged = gw.logs.filter((l) => l.msg === 'handshake rejected' && l.status === 400).map((l) => String(l.reason));
    assert.ok(logged.some((r) => /without :protocol/.test(r)));
    assert.ok(logged.some((r) => /:protocol "chat" is not websocket/.test(r)));
  });

  void it('a Host field that disagrees with :authority is 400 (RFC 9113 §8.3.1)', async () => {
    assert.equal((await refusal(c, '/', { host: 'other.example' })).status, 400);
  });

  void it('100 WebSockets on one HTTP/2 connection all echo', async () => {
    const peers = await Promise.all(Array.from({ length: 100 }, () => openWs(c, '/').then((w) => w.peer)));
    await Promise.all(peers.map((p, i) => echoOver(p, `ws #${i}`)));
    for (const p of peers) p.socket.destroy();
    const m = await scrape(gw.gw);
    assert.ok((m.get('wsgate_http2_websockets_total', { route: 'echo' }) ?? 0) >= 100);
  });

  void it('an HTTP/1.1 client on the same listener still upgrades (ALPN http/1.1), counted as no HTTP/2 WebSocket', async () => {
    const m0 = await scrape(gw.gw);
    const ws = new WebSocket(`wss://localhost:${gw.port}/`, { ca: files.ca.ca });
    ws.on('error', () => {});
    await once(ws, 'open');
    assert.equal(await echo(ws, 'h1'), 'h1');
    ws.close();
    await once(ws, 'close');
    const m1 = await scrape(gw.gw);
    assert.equal(m1.get('wsgate_http2_websockets_total', { route: 'echo' }), m0.get('wsgate_http2_websockets_total', { route: 'echo' }));
    await eventually(() => gw.logs.some((l) => l.msg === 'session closed' && l.protocol === 'http/1.1'), 5_000, 'an http/1.1 access log line');
  });

  void it('ALPN offers h2 then http/1.1', async () => {
    assert.equal(await alpn(gw.port, files, ['h2', 'http/1.1']), 'h2');
    assert.equal(await alpn(gw.port, files, ['http/1.1']), 'http/1.1');
  });
});

void describe('WebSockets over HTTP/2: tunnel mode, limits, upstream answers', { skip: NO_OPENSSL }, () => {
  let files: TlsFiles;
  let backend: Backend;
  let answers: { server: Server; port: number };
  let gw: RunningGateway;
  let c: H2Client;

  before(async () => {
    files = tlsFiles();
    backend = await startBackend();
    // A backend that refuses upgrades with a body, by length or chunked.
    const server = createServer((_req, res) => res.end('plain'));
    server.on('upgrade', (req: IncomingMessage, socket) => {
      socket.on('error', () => {});
      socket.on('end', () => socket.end());
      if (req.url?.endsWith('/badaccept'))
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
        );
      else if (req.url?.endsWith('/chunked'))
        socket.end('HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nX-Why: chunks\r\n\r\n5\r\nno wa\r\n3;ext=1\r\ny!\n\r\n0\r\n\r\n');
      else socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\nX-Why: policy\r\nConnection: close\r\n\r\nnot today\n');
    });
    answers = { server, port: await listenLocal(server) };
    gw = await startGateway(`${tlsListener(files)}routes:
  - { name: refuses, match: { path: /refuse }, upstream: refusing }
  - { name: echo, match: { path: / }, upstream: app }
upstreams:
  app: { targets: [{ url: "${backend.url}" }] }
  refusing: { targets: [{ url: "ws://127.0.0.1:${answers.port}" }], retries: 0 }
limits: { perIp: { maxConnections: 3, handshakeRate: 0 } }
relay: { mode: tunnel }
admin: { address: 127.0.0.1:0 }
shutdown: { drainTimeout: 0 }
`);
    c = await h2Client(gw.port, files.ca.ca);
  });
  after(async () => {
    c.close();
    await gw.close();
    await closeHttp(answers.server);
    await backend.close();
    files.ca.close();
  });

  void it('tunnel mode relays over the stream (no file descriptor: the JavaScript tunnel)', async () => {
    const { peer } = await openWs(c, '/');
    await echoOver(peer, 'tunnelled over h2');
    await echoOver(peer, 'y'.repeat(200_000));
    peer.socket.destroy();
    await eventually(() => gw.logs.some((l) => l.msg === 'session closed' && l.protocol === 'h2' && Number(l.bytesIn) > 200_000), 5_000, 'access log');
  });

  void it('perIp.maxConnections counts streams: the 4th WebSocket on the same connection is 429', async () => {
    const open = await Promise.all([openWs(c, '/'), openWs(c, '/'), openWs(c, '/')]);
    const fourth = await refusal(c, '/');
    assert.equal(fourth.status, 429);
    assert.match(fourth.body, /too many connections/);
    // Plain requests are not sessions: they still pass.
    assert.equal((await h2Request(c, { ':path': '/hello' })).status, 200);
    open[0]!.peer.socket.destroy();
    await eventually(() => gw.logs.filter((l) => l.msg === 'session closed' && l.status === 101).length >= 2, 5_000, 'the first session to end');
    const again = await openWs(c, '/');
    await echoOver(again.peer, 'a place was free again');
    for (const w of [...open, again]) w.peer.socket.destroy();
    await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'every session to end');
  });

  void it('an upstream that refuses the upgrade: its status, headers and body reach the client, by length or chunked', async () => {
    const byLength = await refusal(c, '/refuse');
    assert.equal(byLength.status, 403);
    assert.equal(byLength.headers['x-why'], 'policy');
    assert.equal(byLength.headers.connection, undefined);
    assert.equal(byLength.body, 'not today\n');
    const chunked = await refusal(c, '/refuse/chunked');
    assert.equal(chunked.status, 403);
    assert.equal(chunked.headers['x-why'], 'chunks');
    assert.equal(chunked.headers['transfer-encoding'], undefined);
    assert.equal(chunked.body, 'no way!\n');
  });

  void it('the upstream’s Sec-WebSocket-Accept is checked against the gateway’s own key: a wrong one is 502', async () => {
    const r = await refusal(c, '/refuse/badaccept');
    assert.equal(r.status, 502);
    assert.match(r.body, /Bad Gateway/);
  });

  void it('HTTP passthrough over h2: GET and POST reach the route’s upstream; no hop-by-hop field comes back', async () => {
    const before = backend.plain.length;
    const get = await h2Request(c, { ':path': '/page?q=1', 'x-trace': 'abc' });
    assert.equal(get.status, 200);
    assert.equal(get.body, 'http ok\n');
    assert.equal(get.headers.connection, undefined);
    assert.equal(get.headers['keep-alive'], undefined);
    const seen = backend.plain[before]!;
    assert.equal(seen.url, '/page?q=1');
    assert.equal(seen.headers.host, `localhost:${gw.port}`);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-trace'], 'abc');
    assert.equal(
      seen.rawHeaders.some((h) => h.startsWith(':')),
      false,
    );
    // A body without Content-Length (HTTP/2 frames it) still reaches the upstream.
    const bodies: string[] = [];
    backend.server.prependListener('request', (req: IncomingMessage) => {
      let b = '';
      req.on('data', (d: Buffer) => (b += d.toString()));
      req.on('end', () => bodies.push(b));
    });
    const post = await h2Request(c, { ':path': '/submit', ':method': 'POST' }, 'payload over h2');
    assert.equal(post.status, 200);
    await eventually(() => bodies.includes('payload over h2'), 5_000, 'the POST body upstream');
  });

  void it('a refused plain request over h2 is answered without Connection (the catalogue text)', async () => {
    const gwNoRoute = await startGateway(`${tlsListener(files)}routes: [{ match: { path: /x }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
    const c2 = await h2Client(gwNoRoute.port, files.ca.ca);
    try {
      const r = await h2Request(c2, { ':path': '/nothing-here' });
      assert.equal(r.status, 404);
      assert.equal(r.headers.connection, undefined);
      assert.match(r.body, /Not Found/);
    } finally {
      c2.close();
      await gwNoRoute.close();
    }
  });
});

void describe('listeners[].http2', { skip: NO_OPENSSL }, () => {
  let files: TlsFiles;
  before(() => {
    files = tlsFiles();
  });
  after(() => files.ca.close());

  void it('http2: false offers only http/1.1 by ALPN, as before', async () => {
    const backend = await startBackend();
    const gw = await startGateway(`${tlsListener(files, false)}routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
    try {
      assert.equal(await alpn(gw.port, files, ['h2', 'http/1.1']), 'http/1.1');
      // A client that offers nothing else is refused (no_application_protocol), as before.
      await assert.rejects(alpn(gw.port, files, ['h2']), /no application protocol/);
      const ws = new WebSocket(`wss://localhost:${gw.port}/`, { ca: files.ca.ca });
      ws.on('error', () => {});
      await once(ws, 'open');
      assert.equal(await echo(ws, 'h1 only'), 'h1 only');
      ws.close();
    } finally {
      await gw.close();
      await backend.close();
    }
  });

  void it('behind PROXY protocol, an HTTP/2 WebSocket and request are the header’s client; SNI certificates serve h2 too', async () => {
    const wild = files.ca.issue('wild', ['*.example.com'], 'wildcard');
    const backend = await startBackend();
    const gw = await startGateway(`listeners:
  - address: 127.0.0.1:0
    proxyProtocol: true
    tls: { cert: ${files.cert}, key: ${files.key}, sni: [{ hosts: ["*.example.com"], cert: ${wild.cert}, key: ${wild.key} }] }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
    try {
      const tcp = netConnect(gw.port, '127.0.0.1');
      tcp.on('error', () => {});
      await once(tcp, 'connect');
      tcp.write('PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n');
      const session = h2connect(`https://chat.example.com:${gw.port}`, {
        createConnection: () => tlsConnect({ socket: tcp, servername: 'chat.example.com', ca: files.ca.ca, ALPNProtocols: ['h2'] }),
      });
      session.on('error', () => {});
      await once(session, 'remoteSettings');
      assert.equal((session.socket as unknown as TLSSocket).getPeerCertificate().subject.CN, 'wildcard');
      const c2: H2Client = { session, socket: session.socket as unknown as TLSSocket, port: gw.port, goaways: [], close: () => session.destroy() };
      const before = backend.requests.length;
      const { peer } = await openWs(c2, '/');
      await echoOver(peer, 'proxied');
      assert.equal(backend.requests[before]!.headers['x-forwarded-for'], '203.0.113.7');
      const get = await h2Request(c2, { ':path': '/page' });
      assert.equal(get.status, 200);
      assert.equal(backend.plain.at(-1)!.headers['x-forwarded-for'], '203.0.113.7');
      session.destroy();
    } finally {
      await gw.close();
      await backend.close();
    }
  });

  void it('defaults: on with tls, off without; http2: true without tls is a config error', () => {
    const routes = `routes: [{ match: { path: / }, upstream: app }]\nupstreams: { app: { targets: [{ url: "ws://127.0.0.1:1" }] } }\n`;
    assert.equal(parseConfig(`${tlsListener(files)}${routes}`).listeners[0]!.http2, true);
    assert.equal(parseConfig(`listeners: [{ address: 127.0.0.1:0 }]\n${routes}`).listeners[0]!.http2, false);
    assert.throws(
      () => parseConfig(`listeners: [{ address: 127.0.0.1:0, http2: true }]\n${routes}`),
      (err: unknown) => err instanceof ConfigError && /listeners\[0\]\.http2: needs tls/.test(err.message),
    );
  });
});

/** The protocol ALPN settles on when the client offers `offer` (false: none). */
async function alpn(port: number, files: TlsFiles, offer: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ca: files.ca.ca, ALPNProtocols: offer }, () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.on('error', reject);
  });
}
