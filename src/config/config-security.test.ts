import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from './load.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

const BASE = `listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }
`;

void describe('security keys', () => {
  void test('defaults: open IP lists, missing Origin allowed, no PROXY to upstreams, JWT cooldown and skew 30 s', () => {
    const config = parseConfig(BASE.replace('upstream: app }', 'upstream: app, auth: { jwt: { jwksUrl: "https://idp/jwks" } } }'), {});
    assert.deepEqual(config.listeners[0]?.ipAllow, []);
    assert.deepEqual(config.listeners[0]?.ipDeny, []);
    const route = config.routes[0]!;
    assert.equal(route.allowMissingOrigin, true);
    assert.deepEqual(route.ipAllow, []);
    assert.deepEqual(route.ipDeny, []);
    assert.equal(route.auth?.jwt?.jwksCooldown, 30_000);
    assert.equal(route.auth?.jwt?.clockSkew, 30_000);
    assert.equal(config.upstreams.app?.proxyProtocol, false);
  });

  void test('set values are parsed', () => {
    const text = `listeners: [{ address: 127.0.0.1:0, ipAllow: [10.0.0.0/8, "fd00::/8"], ipDeny: [10.9.9.9] }]
routes:
  - match: { path: / }
    upstream: app
    allowedOrigins: ["https://*.example.com"]
    allowMissingOrigin: false
    ipAllow: [192.0.2.0/24]
    ipDeny: ["2001:db8::1"]
    auth: { jwt: { secret: s, jwksCooldown: 5m, clockSkew: 0 } }
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }], proxyProtocol: true } }
`;
    const config = parseConfig(text, {});
    assert.deepEqual(config.listeners[0]?.ipAllow, ['10.0.0.0/8', 'fd00::/8']);
    assert.deepEqual(config.listeners[0]?.ipDeny, ['10.9.9.9']);
    const route = config.routes[0]!;
    assert.deepEqual(route.allowedOrigins, ['https://*.example.com']);
    assert.equal(route.allowMissingOrigin, false);
    assert.deepEqual(route.ipAllow, ['192.0.2.0/24']);
    assert.deepEqual(route.ipDeny, ['2001:db8::1']);
    assert.equal(route.auth?.jwt?.jwksCooldown, 300_000);
    assert.equal(route.auth?.jwt?.clockSkew, 0);
    assert.equal(config.upstreams.app?.proxyProtocol, true);
    assert.deepEqual(config.inert, []);
  });

  void test('bad values are named at their keys', () => {
    const text = `listeners: [{ address: 127.0.0.1:0, ipAllow: [10.0.0.0/33], ipDeny: [somehost] }]
routes: [{ match: { path: / }, upstream: app, allowMissingOrigin: maybe, ipDeny: ["::1/129"], auth: { jwt: { secret: s, jwksCooldown: soon } } }]
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }], proxyProtocol: v2 } }
`;
    assert.deepEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'listeners[0].ipAllow[0]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'listeners[0].ipDeny[0]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'routes[0].allowMissingOrigin: must be true or false',
        'routes[0].ipDeny[0]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'routes[0].auth.jwt.jwksCooldown: must be a duration such as 250ms, 10s, 5m or 1h',
        'upstreams.app.proxyProtocol: must be true or false',
      ],
    );
  });

  void test('no security key is listed as not implemented any more', () => {
    const text = `listeners: [{ address: 127.0.0.1:0, proxyProtocol: true, tls: { cert: c.pem, key: k.pem } }]
routes: [{ match: { path: / }, upstream: app, allowedOrigins: ["https://a.test"], auth: { apiKeys: { keys: [k] } }, limits: { perIp: { maxConnections: 5 } } }]
upstreams: { app: { targets: [{ url: wss://127.0.0.1:3000 }], tls: { verify: false } } }
limits: { perIp: { handshakeRate: 5/s } }
`;
    assert.deepEqual(parseConfig(text, {}).inert, []);
  });
});
