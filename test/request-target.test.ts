import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rawExchange, startBackend, statusOf, upgradeRequest, withGateway } from './helpers.js';

// An absolute-form target ("GET http://host/path") names its resource by its
// own authority (RFC 9112 §3.2.2). Routing by Host and path must read the same
// resource the backend will: such a target is taken, as origin form, only when
// its authority is the Host; anything else is a 400 the backend never sees.

void describe('request targets in absolute form', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - name: admin
    match: { path: /admin }
    upstream: app
    auth: { apiKeys: { keys: ["\${KEY}"] } }
  - { name: public, match: { path: / }, upstream: app }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
    { KEY: 'k-123' },
  );

  const seen = (): number => fx.backend.requests.length + fx.backend.plain.length;

  void it('an upgrade to "http://HOST/admin" is routed as /admin: its auth applies (401 without the key)', async () => {
    const before = seen();
    const answer = await rawExchange(fx.gw.port, upgradeRequest('http://a.example/admin', [], 'a.example'));
    assert.equal(statusOf(answer), 401, answer);
    assert.equal(seen(), before, 'the backend saw the request');
  });

  void it('with the key it is accepted, and the backend reads the target in origin form', async () => {
    const answer = await rawExchange(fx.gw.port, upgradeRequest('ws://A.Example:8080/admin?x=1', ['X-Api-Key: k-123'], 'a.example:8080'), /\r\n\r\n/);
    assert.equal(statusOf(answer), 101, answer);
    assert.equal(fx.backend.requests.at(-1)!.url, '/admin?x=1');
  });

  const refused: [string, string, string][] = [
    ['an authority other than Host', 'http://b.example/admin', /another host than Host/.source],
    ['userinfo in the authority', 'http://u@a.example/admin', /not in origin or absolute form/.source],
    ['authority form', 'a.example:80', /not in origin or absolute form/.source],
    ['a scheme wsgate does not serve', 'ftp://a.example/admin', /not in origin or absolute form/.source],
  ];
  for (const [name, target, reason] of refused) {
    void it(`an upgrade with ${name} → 400, logged; the backend never sees it`, async () => {
      const before = seen();
      const answer = await rawExchange(fx.gw.port, upgradeRequest(target, [], 'a.example'));
      assert.equal(statusOf(answer), 400, answer);
      assert.equal(seen(), before, 'the backend saw the request');
      assert.match(String(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.reason), new RegExp(reason));
    });
  }

  void it('plain HTTP: "http://HOST/admin" needs the key; another authority → 400', async () => {
    const plain = (target: string, extra = ''): string => `GET ${target} HTTP/1.1\r\nHost: a.example\r\n${extra}Connection: close\r\n\r\n`;
    const before = seen();
    assert.equal(statusOf(await rawExchange(fx.gw.port, plain('http://a.example/admin'))), 401);
    assert.equal(statusOf(await rawExchange(fx.gw.port, plain('http://b.example/admin', 'X-Api-Key: k-123\r\n'))), 400);
    assert.equal(seen(), before, 'the backend saw a refused request');
    assert.equal(statusOf(await rawExchange(fx.gw.port, plain('http://a.example/admin?q', 'X-Api-Key: k-123\r\n'))), 200);
    assert.equal(fx.backend.plain.at(-1)!.url, '/admin?q');
  });
});
