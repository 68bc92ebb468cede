import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, Socket, type AddressInfo } from 'node:net';
import { parseUpgradeHead } from './request-head.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const BASE = ['Host: example.com', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];

function head(lines: readonly string[], requestLine = 'GET /chat?room=1 HTTP/1.1'): string {
  return [requestLine, ...lines].join('\r\n');
}

const socket = new Socket();

void describe('parseUpgradeHead', () => {
  void it('reads a plain upgrade: target, fields as sent, repeated fields combined as Node does', () => {
    const req = parseUpgradeHead(
      head([...BASE, 'Cookie: a=1', 'X-Multi: one', 'cookie: b=2', 'x-multi:two  ', 'Sec-WebSocket-Protocol:\tchat, superchat']),
      socket,
    );
    assert.ok(req);
    assert.equal(req.method, 'GET');
    assert.equal(req.url, '/chat?room=1');
    assert.equal(req.httpVersionMinor, 1);
    assert.equal(req.headers.host, 'example.com');
    assert.equal(req.headers.cookie, 'a=1; b=2');
    assert.equal(req.headers['x-multi'], 'one, two');
    assert.equal(req.headers['sec-websocket-protocol'], 'chat, superchat');
    assert.deepEqual(req.rawHeaders.slice(-4), ['x-multi', 'two', 'Sec-WebSocket-Protocol', 'chat, superchat']);
    assert.equal(req.socket, socket);
  });

  const declined: [string, string][] = [
    ['a POST', head(BASE, 'POST / HTTP/1.1')],
    ['HTTP/1.0', head(BASE, 'GET / HTTP/1.0')],
    ['an absolute-form target', head(BASE, 'GET http://example.com/ HTTP/1.1')],
    ['a space inside the target', head(BASE, 'GET /a b HTTP/1.1')],
    ['a bare LF between fields', head(BASE).replace('\r\nUpgrade', '\nUpgrade')],
    ['a folded field (obs-fold)', head([...BASE, 'X-Long: one', ' two'])],
    ['a space before the colon', head([...BASE, 'X-Bad : 1'])],
    ['a NUL in a value', head([...BASE, 'X-Bad: a\0b'])],
    ['a repeated Host', head([...BASE, 'Host: other.example'])],
    ['a body (Content-Length)', head([...BASE, 'Content-Length: 5'])],
    ['a body (Transfer-Encoding)', head([...BASE, 'Transfer-Encoding: chunked'])],
    ['no Upgrade field', head(BASE.filter((l) => !l.startsWith('Upgrade')))],
    ['no "upgrade" in Connection', head(BASE.map((l) => (l.startsWith('Connection') ? 'Connection: keep-alive' : l)))],
    ['an empty field name', head([...BASE, ': value'])],
    // llhttp drops it from the value, but sees no "upgrade" in "Connection: upgrade\t" (request-head-fuzz.test.ts).
    ['a tab at the end of a value', head([...BASE, 'X-Tab: value\t'])],
    ['an empty Upgrade field', head([...BASE.filter((l) => !l.startsWith('Upgrade')), 'Upgrade: '])],
    ['"upgrade" next to a tab in Connection', head(BASE.map((l) => (l.startsWith('Connection') ? 'Connection: keep-alive,\tupgrade' : l)))],
  ];
  for (const [name, text] of declined) {
    void it(`leaves ${name} to Node's parser`, () => {
      assert.equal(parseUpgradeHead(text, socket), undefined);
    });
  }
});

void describe('parseUpgradeHead agrees with Node’s IncomingMessage', () => {
  let server: Server;
  let port: number;
  let seen: ((req: IncomingMessage) => void) | undefined;
  before(async () => {
    server = createServer();
    server.on('upgrade', (req: IncomingMessage, s: Socket) => {
      seen?.(req);
      s.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  const samples: readonly string[][] = [
    BASE,
    [...BASE, 'Cookie: a=1', 'Accept: x', 'cookie: b=2', 'ACCEPT: y', 'Set-Cookie: s=1', 'set-cookie: s=2'],
    [...BASE, 'X-Trailing:   spaced value  ', 'X-Tabs:\tinner\ttab', 'X-Empty:', 'X-Latin1: caf\xe9'],
    [...BASE, 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits', 'Origin: https://app.example'],
  ];
  for (const [i, lines] of samples.entries()) {
    void it(`sample ${i + 1}: same url, headers and rawHeaders`, async () => {
      const text = head(lines);
      const ours = parseUpgradeHead(text, socket);
      assert.ok(ours, 'taken by the fast path');
      const theirs = new Promise<IncomingMessage>((resolve) => (seen = resolve));
      const client = connect(port, '127.0.0.1');
      client.on('error', () => {});
      client.end(Buffer.from(text + '\r\n\r\n', 'latin1'));
      const req = await theirs;
      assert.equal(ours.url, req.url);
      assert.deepEqual({ ...ours.headers }, { ...req.headers });
      assert.deepEqual(ours.rawHeaders, req.rawHeaders);
    });
  }
});
