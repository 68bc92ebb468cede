import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from './load.js';
import { parseAddress, parseHashKey, parseTargetUrl } from './values.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

/** A valid config with `extra` YAML appended and string replacements applied. */
function cfg(extra = '', replace: Record<string, string> = {}): string {
  let text = `listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }
${extra}`;
  for (const [from, to] of Object.entries(replace)) text = text.replace(from, to);
  return text;
}

void describe('addresses', () => {
  void test('host:port, [v6]:port, port 0', () => {
    assert.deepStrictEqual(parseAddress('0.0.0.0:8080'), { address: '0.0.0.0:8080', host: '0.0.0.0', port: 8080 });
    assert.deepStrictEqual(parseAddress('[::]:8080'), { address: '[::]:8080', host: '::', port: 8080 });
    assert.deepStrictEqual(parseAddress('localhost:0'), { address: 'localhost:0', host: 'localhost', port: 0 });
    assert.equal(parseAddress('127.0.0.1:65535').port, 65_535);
  });

  for (const bad of ['127.0.0.1', ':8080', '127.0.0.1:65536', '127.0.0.1:-1', '::1:8080', '[nope]:80', '300.1.1.1:80', 'a b:80', '127.0.0.1:80x']) {
    void test(`rejects ${bad}`, () => assert.throws(() => parseAddress(bad), /^ValueError: must be host:port/));
  }

  void test('in a config: the listener and admin addresses are checked, and clashes found', () => {
    const text = cfg('admin: { address: "[::1]:99999" }\n', {
      'listeners: [{ address: 127.0.0.1:0 }]': 'listeners: [{ address: 8080 }, { address: "127.0.0.1:80" }, { address: "127.0.0.1:80" }]',
    });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'listeners[0].address: must be a string',
        'listeners[2].address: same address as listeners[1].address',
        'admin.address: must be host:port with a port from 0 to 65535',
      ],
    );
  });

  void test('admin: present alone means its defaults', () => {
    const config = parseConfig(cfg('admin:\n'), {});
    assert.deepStrictEqual(config.admin, { address: '127.0.0.1:9901', host: '127.0.0.1', port: 9901, token: '', metrics: true });
    assert.deepStrictEqual(config.inert, []);
  });
});

void describe('targets', () => {
  void test('default ports, basePath and secure', () => {
    assert.deepStrictEqual(parseTargetUrl('ws://backend'), { url: 'ws://backend', secure: false, host: 'backend', port: 80, basePath: '' });
    assert.deepStrictEqual(parseTargetUrl('wss://backend/'), { url: 'wss://backend/', secure: true, host: 'backend', port: 443, basePath: '' });
    assert.deepStrictEqual(parseTargetUrl('https://10.0.0.1:8443/api/v1/'), {
      url: 'https://10.0.0.1:8443/api/v1/',
      secure: true,
      host: '10.0.0.1',
      port: 8443,
      basePath: '/api/v1',
    });
    assert.deepStrictEqual(parseTargetUrl('http://[::1]:3000/x'), { url: 'http://[::1]:3000/x', secure: false, host: '::1', port: 3000, basePath: '/x' });
  });

  void test('bad URLs', () => {
    assert.throws(() => parseTargetUrl('ftp://h:21'), /must be ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//);
    assert.throws(() => parseTargetUrl('10.0.0.1:3000'), /must be ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//);
    assert.throws(() => parseTargetUrl('ws://h:1/?a=b'), /query/);
    assert.throws(() => parseTargetUrl('ws://u:p@h:1'), /user name/);
    assert.throws(() => parseTargetUrl('ws://h:0'), /port/);
  });

  void test('targets must not be empty; weight and retries are integers', () => {
    const text = cfg('', {
      'upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }': `upstreams:
  app: { targets: [], retries: -1 }
  web: { targets: [{ url: ws://h:1, weight: 1.5 }], retries: 1.5 }`,
    });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'upstreams.app.targets: must not be empty',
        'upstreams.app.retries: must be at least 0',
        'upstreams.web.targets[0].weight: must be an integer',
        'upstreams.web.retries: must be an integer',
      ],
    );
  });

  void test('upstream names are restricted', () => {
    const text = cfg('', { 'upstreams: { app:': 'upstreams: { "a.b": { targets: [{ url: ws://h:1 }] }, __proto__: { targets: [{ url: ws://h:1 }] }, app:' });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      ['upstreams["a.b"]: upstream name must contain only letters, digits, "_" and "-"', 'upstreams.__proto__: is a reserved name'],
    );
  });
});

void describe('hash keys', () => {
  void test('every source', () => {
    assert.deepStrictEqual(parseHashKey('ip'), { source: 'ip' });
    assert.deepStrictEqual(parseHashKey('header:X-User-Id'), { source: 'header', name: 'x-user-id' });
    assert.deepStrictEqual(parseHashKey('cookie:Session'), { source: 'cookie', name: 'Session' });
    assert.deepStrictEqual(parseHashKey('query:room'), { source: 'query', name: 'room' });
    assert.deepStrictEqual(parseHashKey('claim:sub'), { source: 'claim', name: 'sub' });
  });

  for (const bad of ['', 'ipv4', 'header:', 'header', 'body:x', ':x', 'header:a b']) {
    void test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseHashKey(bad), /must be ip, header:NAME, cookie:NAME, query:NAME or claim:NAME/));
  }

  void test('in a config: balance hash needs a valid hash key', () => {
    const text = cfg('', {
      'upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }': `upstreams:
  app: { balance: hash, hash: { key: "cookie:sid" }, targets: [{ url: ws://h:1 }] }
  b: { balance: hash, targets: [{ url: ws://h:1 }] }
  c: { hash: { key: ip }, targets: [{ url: ws://h:1 }] }
  d: { balance: hash, hash: { key: "session" }, targets: [{ url: ws://h:1 }] }
  e: { balance: hash, hash: {}, targets: [{ url: ws://h:1 }] }`,
    });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'upstreams.b.hash: is required when balance is hash (e.g. hash: { key: "header:x-user-id" })',
        'upstreams.d.hash.key: must be ip, header:NAME, cookie:NAME, query:NAME or claim:NAME',
        'upstreams.e.hash.key: is required',
      ],
    );
    const ok = parseConfig(cfg('', { '{ app: { targets': '{ app: { balance: hash, hash: { key: "header:X-Room" }, targets' }), {});
    assert.deepStrictEqual(ok.upstreams.app?.hash, { source: 'header', name: 'x-room' });
  });
});

void describe('routes', () => {
  void test('host and header names are lower-cased; wildcards kept', () => {
    const config = parseConfig(
      cfg('', { 'match: { path: / }': 'match: { host: "*.Example.COM", path: /chat, headers: { X-Tenant: Blue, X-Version: 2 } }' }),
      {},
    );
    assert.deepStrictEqual(config.routes[0]?.match, { host: '*.example.com', path: '/chat', headers: { 'x-tenant': 'Blue', 'x-version': '2' } });
  });

  void test('bad match values', () => {
    const text = cfg('', { 'match: { path: / }': 'match: { host: "chat.example.com:443", path: chat, headers: { "bad header": x } }' });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[0].match.host: must be a host name such as chat.example.com or *.example.com (no port)',
        'routes[0].match.path: must start with / (and contain no spaces, ? or #)',
        'routes[0].match.headers["bad header"]: is not a valid header name',
      ],
    );
  });

  void test('names default to route-<index> and must be unique', () => {
    const ok = parseConfig(
      cfg('', { 'routes: [{ match: { path: / }, upstream: app }]': 'routes: [{ upstream: app }, { name: chat, upstream: app }, { upstream: app }]' }),
      {},
    );
    assert.deepStrictEqual(
      ok.routes.map((r) => r.name),
      ['route-0', 'chat', 'route-2'],
    );
    const text = cfg('', {
      'routes: [{ match: { path: / }, upstream: app }]':
        'routes: [{ name: chat, upstream: app }, { name: chat, upstream: app }, { name: route-3, upstream: app }, { upstream: app }]',
    });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[1].name: duplicate route name "chat" (also routes[0].name)',
        'routes[3]: its default name "route-3" is already taken by routes[2].name; give this route a name',
      ],
    );
  });

  void test('auth needs a method, and jwt exactly one key source', () => {
    const text = cfg('', {
      'routes: [{ match: { path: / }, upstream: app }]': `routes:
  - { upstream: app, auth: {} }
  - { upstream: app, auth: { jwt: { issuer: me } } }
  - { upstream: app, auth: { jwt: { secret: s, jwksUrl: "https://idp/jwks" } } }
  - { upstream: app, auth: { jwt: { secret: s, from: [body] }, apiKeys: { keys: [] } } }`,
    });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[0].auth: needs at least one of jwt, apiKeys or forward',
        'routes[1].auth.jwt: needs one of secret, publicKey or jwksUrl',
        'routes[2].auth.jwt: set only one of secret, publicKey or jwksUrl (found secret and jwksUrl)',
        'routes[3].auth.jwt.from[0]: must be header:NAME, query:NAME, cookie:NAME or protocol',
        'routes[3].auth.apiKeys.keys: must not be empty',
      ],
    );
  });

  void test('auth defaults and normalisation', () => {
    const config = parseConfig(
      cfg('', {
        'upstream: app }':
          'upstream: app, allowedOrigins: ["HTTPS://Chat.Example.com:443"], auth: { jwt: { jwksUrl: "https://idp/jwks", from: ["header:X-Token"] }, apiKeys: { keys: [k] }, forward: { url: "http://a/auth" } } }',
      }),
      {},
    );
    const route = config.routes[0];
    assert.deepStrictEqual(route?.allowedOrigins, ['https://chat.example.com']);
    assert.deepStrictEqual(route?.auth?.jwt?.from, ['header:x-token']);
    assert.deepStrictEqual(route?.auth?.apiKeys, { header: 'x-api-key', keys: ['k'] });
    assert.deepStrictEqual(route?.auth?.forward, { url: 'http://a/auth', headers: ['authorization', 'cookie'], responseHeaders: [], timeout: 2000 });
    assert.deepStrictEqual(config.inert, []);
  });
});

void describe('other sections', () => {
  void test('trustedProxies take IPs and CIDRs', () => {
    const config = parseConfig(cfg('trustedProxies: [10.0.0.0/8, 192.168.1.1, "::1", "fd00::/8"]\n'), {});
    assert.deepStrictEqual(config.trustedProxies, ['10.0.0.0/8', '192.168.1.1', '::1', 'fd00::/8']);
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('trustedProxies: [10.0.0.0/33, "fd00::/129", localhost, 10.0.0.0/8/8]\n'), {})),
      [
        'trustedProxies[0]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'trustedProxies[1]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'trustedProxies[2]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'trustedProxies[3]: must be an IP address or a CIDR such as 10.0.0.0/8',
      ],
    );
  });

  void test('cluster: workers a positive integer or "auto", redis a redis:// URL, onRedisError allow or deny', () => {
    const auto = parseConfig(cfg('cluster: { workers: auto, redis: "redis://h:6379" }\n'), {});
    assert.deepStrictEqual(auto.cluster, { workers: 'auto', redis: 'redis://h:6379', onRedisError: 'allow' });
    assert.deepStrictEqual(auto.inert, []);
    assert.deepStrictEqual(parseConfig(cfg('cluster: { workers: 3, onRedisError: deny }\n'), {}).cluster, { workers: 3, redis: '', onRedisError: 'deny' });
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('cluster: { redis: "h:6379", onRedisError: maybe }\n'), {})),
      ['cluster.redis: must be a redis:// or rediss:// URL (or empty for none)', 'cluster.onRedisError: must be one of: allow, deny'],
    );
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('cluster: { workers: many }\n'), {})),
      ['cluster.workers: must be a positive integer or "auto"'],
    );
  });

  void test('decimal size units are refused in context', () => {
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('limits: { maxMessageBytes: 1MB, maxHeaderBytes: 0 }\n'), {})),
      [
        'limits.maxMessageBytes: must be a size such as 512B, 64KiB, 1MiB or 1GiB (MB is ambiguous: write MiB for 1024-based units)',
        'limits.maxHeaderBytes: must be at least 1B',
      ],
    );
  });

  void test('types are named, empty values too', () => {
    const text = cfg('relay: { validateUtf8: yes, pingInterval: true }\nlog: { accessLog: }\nlimits: { maxConnections: "10" }\n');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'relay.validateUtf8: must be true or false',
        'relay.pingInterval: must be a duration such as 250ms, 10s, 5m or 1h',
        'log.accessLog: must be true or false (the value is empty)',
        'limits.maxConnections: must be a number',
      ],
    );
  });

  void test('listener TLS and PROXY protocol', () => {
    const text = cfg('', {
      'listeners: [{ address: 127.0.0.1:0 }]': `listeners:
  - { address: 127.0.0.1:0, proxyProtocol: false }
  - { address: 127.0.0.1:0, proxyProtocol: true, tls: { cert: c.pem, key: k.pem, minVersion: TLSv1.3 } }`,
    });
    const config = parseConfig(text, {}, '/srv');
    assert.deepStrictEqual(config.listeners[1]?.tls, { cert: '/srv/c.pem', key: '/srv/k.pem', sni: [], minVersion: 'TLSv1.3' });
    assert.equal(config.listeners[1]?.proxyProtocol, true);
    assert.deepStrictEqual(config.inert, []);
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('', { '127.0.0.1:0 }': '127.0.0.1:0, tls: { cert: c.pem, minVersion: SSLv3 } }' }), {})),
      ['listeners[0].tls.key: is required', 'listeners[0].tls.minVersion: must be one of: TLSv1.2, TLSv1.3'],
    );
  });

  void test('health check defaults', () => {
    const config = parseConfig(cfg('', { '{ app: { targets': '{ app: { healthCheck: { type: tcp }, targets' }), {});
    assert.deepStrictEqual(config.upstreams.app?.healthCheck, {
      type: 'tcp',
      path: '/health',
      interval: 5000,
      timeout: 2000,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
    });
    assert.deepStrictEqual(config.inert, []);
  });
});

void describe('resilience keys', () => {
  const withUpstream = (extra: string): string => cfg('', { '{ app: { targets': `{ app: { ${extra}, targets` });

  void test('outlier, slowStart and drainPeriod: defaults and units', () => {
    const defaults = parseConfig(cfg(), {}).upstreams.app!;
    assert.deepStrictEqual(defaults.outlier, { consecutiveFailures: 3, baseEjection: 10_000, maxEjection: 300_000, maxEjectionPercent: 50 });
    assert.equal(defaults.slowStart, 0);
    assert.equal(defaults.drainPeriod, 30_000);
    const set = parseConfig(
      withUpstream('outlier: { consecutiveFailures: 0, baseEjection: 1s, maxEjection: 1m, maxEjectionPercent: 100 }, slowStart: 30s, drainPeriod: 0'),
      {},
    ).upstreams.app!;
    assert.deepStrictEqual(set.outlier, { consecutiveFailures: 0, baseEjection: 1_000, maxEjection: 60_000, maxEjectionPercent: 100 });
    assert.equal(set.slowStart, 30_000);
    assert.equal(set.drainPeriod, 0);
  });

  void test('outlier values are checked', () => {
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(withUpstream('outlier: { consecutiveFailures: -1, baseEjection: 0, maxEjectionPercent: 101, ejection: 1s }'), {})),
      [
        'upstreams.app.outlier.consecutiveFailures: must be at least 0',
        'upstreams.app.outlier.baseEjection: must be longer than 0',
        'upstreams.app.outlier.maxEjectionPercent: must be at most 100',
        'upstreams.app.outlier.ejection: unknown key',
      ],
    );
  });

  void test('watch and pidFile: off by default; the pid file is resolved against the config folder', () => {
    const defaults = parseConfig(cfg(), {});
    assert.equal(defaults.watch, false);
    assert.equal(defaults.pidFile, '');
    const set = parseConfig(cfg('watch: true\npidFile: run/wsgate.pid\n'), {}, '/etc/wsgate');
    assert.equal(set.watch, true);
    assert.equal(set.pidFile, '/etc/wsgate/run/wsgate.pid');
    assert.equal(parseConfig(cfg('pidFile:\n'), {}).pidFile, '');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(cfg('watch: yes please\n'), {})),
      ['watch: must be true or false'],
    );
  });
});
