import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rawExchange, startBackend, statusOf, upgradeRequest, withGateway } from './helpers.js';
import { SECRET, hs256 } from './auth-fixtures.js';
import { scrape } from './metrics-fixtures.js';

// A field that may appear once, sent twice: Node's parser keeps the first for
// the gateway's routing and auth, while every raw line would go on to the
// backend, which may read the other one. RFC 9112 §3.2 asks for a 400 on two
// Hosts; the gateway refuses every repeated single-valued field (docs/security.md).

void describe('a repeated single-valued field is refused with 400', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes:
  - { name: a, match: { host: a.example }, upstream: app }
  - { name: b, match: { host: b.example }, upstream: app }
  - name: secure
    match: { host: secure.example }
    upstream: app
    auth: { jwt: { secret: "\${JWT_SECRET}", from: [header:authorization] } }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
    { JWT_SECRET: SECRET },
  );

  /** A raw upgrade with the given field lines (Host included) instead of the usual Host. */
  const upgrade = (lines: readonly string[]): string => upgradeRequest('/', lines).replace('Host: localhost\r\n', '');
  const untouched = async (request: string): Promise<string> => {
    const before = fx.backend.requests.length + fx.backend.plain.length;
    const answer = await rawExchange(fx.gw.port, request);
    assert.equal(fx.backend.requests.length + fx.backend.plain.length, before, 'the backend saw the request');
    return answer;
  };

  const upgrades: [string, string[], RegExp][] = [
    ['two Hosts naming different routes', ['Host: a.example', 'Host: b.example'], /repeated host header/],
    ['"Host" and "host"', ['Host: a.example', 'host: a.example'], /repeated host header/],
    ['two empty Hosts', ['Host: ', 'Host: '], /repeated host header/],
    ['two Authorizations, the first valid', ['Host: secure.example', 'Authorization: Bearer VALID', 'AUTHORIZATION: Bearer forged'], /repeated authorization/],
    ['two Content-Types', ['Host: a.example', 'Content-Type: text/plain', 'Content-Type: text/html'], /repeated content-type/],
  ];
  for (const [name, lines, reason] of upgrades) {
    void it(`upgrade with ${name} → 400, a log line, counted as invalid; the backend never sees it`, async () => {
      const token = await hs256({ sub: 'alice' });
      const before = (await scrape(fx.gw.gw)).get('wsgate_handshakes_total', { route: '', outcome: 'invalid' }) ?? 0;
      const answer = await untouched(upgrade(lines.map((l) => l.replace('VALID', token))));
      assert.equal(statusOf(answer), 400, answer);
      const line = fx.gw.logs.findLast((l) => l.msg === 'handshake rejected');
      assert.equal(line?.code, 'HANDSHAKE_MALFORMED');
      assert.match(String(line?.reason), reason);
      assert.equal((await scrape(fx.gw.gw)).get('wsgate_handshakes_total', { route: '', outcome: 'invalid' }), before + 1);
    });
  }

  void it('the same fields once each pass (the route and its auth work)', async () => {
    const token = await hs256({ sub: 'alice' });
    for (const lines of [['Host: a.example'], ['Host: b.example'], ['Host: secure.example', `Authorization: Bearer ${token}`]]) {
      const answer = await rawExchange(fx.gw.port, upgrade(lines), /\r\n\r\n/);
      assert.equal(statusOf(answer), 101, answer);
    }
    const answer = await rawExchange(fx.gw.port, upgrade(['Host: secure.example', 'Authorization: Bearer forged']), /\r\n\r\n/);
    assert.equal(statusOf(answer), 401, answer);
  });

  void it('repeated list fields are combined, not refused (Cookie, Sec-WebSocket-Protocol, X-*)', async () => {
    const lines = ['Host: a.example', 'Cookie: a=1', 'Cookie: b=2', 'X-Tag: one', 'X-Tag: two', 'Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: json'];
    const answer = await rawExchange(fx.gw.port, upgrade(lines), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    const seen = fx.backend.requests.at(-1)!;
    assert.equal(seen.headers.cookie, 'a=1; b=2');
    assert.equal(seen.headers['x-tag'], 'one, two');
  });

  void it('two Sec-WebSocket-Keys → 400 (Node joins them into one value that is no key)', async () => {
    const answer = await untouched(upgrade(['Host: a.example', 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==']));
    assert.equal(statusOf(answer), 400, answer);
  });

  const plains: [string, string[], RegExp][] = [
    ['two Hosts', ['Host: a.example', 'Host: b.example'], /repeated host header/],
    ['"HOST" and "Host", both empty', ['HOST: ', 'Host: '], /repeated host header/],
    ['two Authorizations', ['Host: secure.example', 'Authorization: Bearer VALID', 'Authorization: Bearer forged'], /repeated authorization header/],
  ];
  for (const [name, lines, reason] of plains) {
    void it(`plain HTTP request with ${name} → 400, a log line, counted; the backend never sees it`, async () => {
      const token = await hs256({ sub: 'alice' });
      const before = (await scrape(fx.gw.gw)).get('wsgate_http_requests_total', { route: '', code: '400' }) ?? 0;
      const head = ['GET /status HTTP/1.1', ...lines.map((l) => l.replace('VALID', token)), '', ''].join('\r\n');
      const answer = await untouched(head);
      assert.equal(statusOf(answer), 400, answer);
      const line = fx.gw.logs.findLast((l) => l.msg === 'request rejected');
      assert.equal(line?.code, 'HANDSHAKE_MALFORMED');
      assert.match(String(line?.reason), reason);
      assert.equal((await scrape(fx.gw.gw)).get('wsgate_http_requests_total', { route: '', code: '400' }), before + 1);
    });
  }

  void it('a plain request with one Host passes through', async () => {
    const answer = await rawExchange(fx.gw.port, 'GET /status HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(answer), 200, answer);
    assert.match(answer, /http ok/);
  });
});
