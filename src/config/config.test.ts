import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from './load.js';
import type { Config, Limits } from './types.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(err.message, err.problems.join('\n'));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

const SMALLEST = `listeners: [{ address: 127.0.0.1:8080 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }
`;

const DEFAULT_LIMITS: Limits = {
  maxConnections: 100_000,
  perIp: { maxConnections: 256, handshakeRate: { perSecond: 20 }, handshakeBurst: 40 },
  handshakeTimeout: 10_000,
  maxHeaderBytes: 16 * 1024,
  idleTimeout: 600_000,
  maxLifetime: 0,
  maxMessageBytes: 1024 * 1024,
  messageRate: { perSecond: 0 },
  upstreamMessageRate: { perSecond: 0 },
  maxBufferedBytes: 4 * 1024 * 1024,
};

// The full example of CONFIG.md, verbatim but for one line: `balance: hash`
// instead of least-connections, so the hash key is exercised. The verbatim
// line is tested on its own below.
const FULL_EXAMPLE = `listeners:                      # one or more; all routes are served on every listener
  - address: 0.0.0.0:8080       # host:port; [::]:8080 for IPv6
  - address: 0.0.0.0:8443
    tls:                        # present → this listener speaks TLS (wss:// and https://)
      cert: certs/server.pem    # PEM files; re-read on reload (SIGHUP) without dropping connections
      key: certs/server-key.pem
      sni:                      # optional extra certificates chosen by server name
        - hosts: ["*.example.com"]
          cert: certs/example.pem
          key: certs/example-key.pem
      minVersion: TLSv1.2
    proxyProtocol: false        # true: expect a PROXY protocol v1/v2 header from an L4 load balancer

trustedProxies: []              # CIDRs whose X-Forwarded-For / Forwarded headers are believed

admin:                          # optional; never on a public address by default
  address: 127.0.0.1:9901       # serves /healthz, /readyz, /metrics, the admin API and the dashboard
  token: \${WSGATE_ADMIN_TOKEN:-}  # bearer token required for mutating endpoints when set

routes:                         # first match wins; no match → 404
  - name: chat
    match:
      host: chat.example.com    # optional: exact, or "*.example.com"
      path: /chat               # optional: prefix on a segment boundary ("/chat" matches /chat and /chat/x, not /chatty)
      headers: { x-tenant: blue }   # optional exact header matches
    upstream: chat              # the upstream pool serving this route
    stripPrefix: false          # true: /chat/x reaches the upstream as /x
    allowedOrigins: ["https://chat.example.com"]   # optional; others get 403 at the handshake
    auth:                       # optional; failure → 401 (or 403) before any upstream is touched
      jwt:
        secret: \${JWT_SECRET}   # HS*; or publicKey: file.pem; or jwksUrl: https://idp/.well-known/jwks.json
        issuer: https://idp.example.com
        audience: chat
        from: [header:authorization, query:access_token, cookie:token, protocol]
                                # where to look, in order; \`protocol\` = a Sec-WebSocket-Protocol entry
        forwardClaims: { x-user-id: sub }   # headers set on the upstream request from claims
      apiKeys: { header: x-api-key, keys: ["\${API_KEY}"] }
      forward:                  # forward-auth: ask an HTTP service; 2xx allows, anything else is returned
        url: http://127.0.0.1:9100/auth
        headers: [authorization, cookie]     # request headers copied to the auth call
        responseHeaders: [x-user-id]         # auth response headers copied to the upstream request
        timeout: 2s
    limits: {}                  # optional per-route overrides of the top-level limits

upstreams:
  chat:
    balance: hash  # CONFIG.md: least-connections
    hash: { key: "header:x-user-id" }   # balance: hash only; key: ip | header:NAME | cookie:NAME | query:NAME | claim:NAME
    targets:
      - url: ws://10.0.0.11:3000      # ws:// or http:// (plain), wss:// or https:// (TLS)
        weight: 1
      - url: ws://10.0.0.12:3000
    tls: { ca: certs/ca.pem, servername: backend.internal, verify: true }   # for wss:// targets
    connectTimeout: 5s          # TCP connect + upstream handshake
    retries: 2                  # other targets tried when connect or the upstream handshake fails
    healthCheck:                # active checks; passive ejection works without this block
      type: http                # http | tcp | websocket
      path: /health
      interval: 5s
      timeout: 2s
      healthyThreshold: 2
      unhealthyThreshold: 3

limits:                         # top level; routes may override
  maxConnections: 100000        # over it: 503 at the handshake
  perIp:
    maxConnections: 256         # over it: 429
    handshakeRate: 20/s         # token bucket; over it: 429 with Retry-After
    handshakeBurst: 40
  handshakeTimeout: 10s         # whole request head must arrive within this (slowloris)
  maxHeaderBytes: 16KiB         # over it: 431
  idleTimeout: 10m              # no data either way → closed (close frame 1001 in inspect mode)
  maxLifetime: 0                # 0 = unlimited; else close with 1001 after this (+ jitter)
  maxMessageBytes: 1MiB         # inspect mode: larger message → close 1009 to the client
  messageRate: 0                # inspect mode: messages/s per connection (0 = unlimited); over → close 1008
  maxBufferedBytes: 4MiB        # per direction; over it reading from the other side pauses (backpressure)

relay:
  mode: inspect                 # inspect (frame-aware, default) | tunnel (raw bytes, no frame parsing)
  pingInterval: 30s             # inspect mode: ping idle clients; no pong within pongTimeout → close
  pongTimeout: 10s

shutdown:
  drainTimeout: 30s             # on SIGTERM: stop accepting, send 1001 Going Away, wait this long, then cut

cluster:
  workers: 1                    # N worker processes sharing the listeners, or "auto" (one per core)
  redis: ""                     # redis://host:6379 → limits and counters shared across instances

log:
  level: info                   # trace | debug | info | warn | error
  format: json                  # json | pretty
  accessLog: true               # one line per closed connection
`;

const FULL_ENV = { JWT_SECRET: 'jwt-secret', API_KEY: 'key-1', WSGATE_ADMIN_TOKEN: 'admin-token' };

void describe('parseConfig: the smallest config', () => {
  void test('yields every default', () => {
    const expected: Config = {
      listeners: [{ address: '127.0.0.1:8080', host: '127.0.0.1', port: 8080, tls: undefined, proxyProtocol: false, http2: false, ipAllow: [], ipDeny: [] }],
      trustedProxies: [],
      admin: undefined,
      routes: [
        {
          name: 'route-0',
          match: { host: undefined, path: '/', headers: {} },
          upstream: 'app',
          stripPrefix: false,
          allowedOrigins: undefined,
          allowMissingOrigin: true,
          ipAllow: [],
          ipDeny: [],
          auth: undefined,
          limits: DEFAULT_LIMITS,
        },
      ],
      upstreams: {
        app: {
          name: 'app',
          balance: 'round-robin',
          hash: undefined,
          targets: [{ url: 'ws://127.0.0.1:3000', secure: false, host: '127.0.0.1', port: 3000, basePath: '', weight: 1 }],
          tls: undefined,
          connectTimeout: 5000,
          retries: 2,
          proxyProtocol: false,
          healthCheck: undefined,
          outlier: { consecutiveFailures: 3, baseEjection: 10_000, maxEjection: 300_000, maxEjectionPercent: 50 },
          slowStart: 0,
          drainPeriod: 30_000,
        },
      },
      limits: DEFAULT_LIMITS,
      relay: { mode: 'inspect', pingInterval: 30_000, pongTimeout: 10_000, validateUtf8: false },
      shutdown: { drainTimeout: 30_000 },
      cluster: { workers: 1, redis: '', onRedisError: 'allow' },
      log: { level: 'info', format: 'json', accessLog: true, file: '' },
      watch: false,
      pidFile: '',
      inert: [],
    };
    assert.deepStrictEqual(parseConfig(SMALLEST, {}), expected);
  });

  void test('the result is deeply frozen', () => {
    const config = parseConfig(SMALLEST, {});
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.listeners[0]));
    assert.ok(Object.isFrozen(config.routes[0]?.limits.perIp.handshakeRate));
    assert.ok(Object.isFrozen(config.upstreams.app?.targets));
    assert.throws(() => {
      (config.limits as { maxConnections: number }).maxConnections = 1;
    }, TypeError);
  });

  void test('JSON input is accepted', () => {
    const json = JSON.stringify({
      listeners: [{ address: '127.0.0.1:0' }],
      routes: [{ match: { path: '/' }, upstream: 'app' }],
      upstreams: { app: { targets: [{ url: 'ws://127.0.0.1:3000' }] } },
      limits: { idleTimeout: 5000, maxMessageBytes: '64KiB' },
    });
    const config = parseConfig(json, {});
    assert.equal(config.listeners[0]?.port, 0);
    assert.equal(config.limits.idleTimeout, 5000);
    assert.equal(config.limits.maxMessageBytes, 65_536);
    assert.deepStrictEqual(parseConfig(SMALLEST, {}).upstreams, config.upstreams);
  });
});

void describe('parseConfig: the full example of CONFIG.md', () => {
  void test('parses, with files resolved against baseDir', () => {
    const config = parseConfig(FULL_EXAMPLE, FULL_ENV, '/etc/wsgate');
    assert.equal(config.listeners.length, 2);
    assert.deepStrictEqual(config.listeners[1]?.tls, {
      cert: '/etc/wsgate/certs/server.pem',
      key: '/etc/wsgate/certs/server-key.pem',
      sni: [{ hosts: ['*.example.com'], cert: '/etc/wsgate/certs/example.pem', key: '/etc/wsgate/certs/example-key.pem' }],
      minVersion: 'TLSv1.2',
    });
    assert.deepStrictEqual(config.admin, { address: '127.0.0.1:9901', host: '127.0.0.1', port: 9901, token: 'admin-token', metrics: true });
    const route = config.routes[0];
    assert.equal(route?.name, 'chat');
    assert.deepStrictEqual(route?.match, { host: 'chat.example.com', path: '/chat', headers: { 'x-tenant': 'blue' } });
    assert.deepStrictEqual(route?.allowedOrigins, ['https://chat.example.com']);
    assert.deepStrictEqual(route?.auth, {
      jwt: {
        secret: 'jwt-secret',
        publicKey: undefined,
        jwksUrl: undefined,
        issuer: 'https://idp.example.com',
        audience: 'chat',
        from: ['header:authorization', 'query:access_token', 'cookie:token', 'protocol'],
        forwardClaims: { 'x-user-id': 'sub' },
        jwksCooldown: 30_000,
        clockSkew: 30_000,
      },
      apiKeys: { header: 'x-api-key', keys: ['key-1'] },
      forward: {
        url: 'http://127.0.0.1:9100/auth',
        headers: ['authorization', 'cookie'],
        responseHeaders: ['x-user-id'],
        timeout: 2000,
      },
    });
    assert.deepStrictEqual(route?.limits, DEFAULT_LIMITS);
    const chat = config.upstreams.chat;
    assert.deepStrictEqual(chat?.hash, { source: 'header', name: 'x-user-id' });
    assert.deepStrictEqual(chat?.tls, { ca: '/etc/wsgate/certs/ca.pem', servername: 'backend.internal', verify: true });
    assert.deepStrictEqual(chat?.healthCheck, {
      type: 'http',
      path: '/health',
      interval: 5000,
      timeout: 2000,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
    });
    assert.deepStrictEqual(
      chat?.targets.map((t) => t.url),
      ['ws://10.0.0.11:3000', 'ws://10.0.0.12:3000'],
    );
    assert.deepStrictEqual(config.limits, DEFAULT_LIMITS);
  });

  void test('lists the set-but-not-implemented keys', () => {
    const config = parseConfig(FULL_EXAMPLE, FULL_ENV, '/etc/wsgate');
    assert.deepStrictEqual(config.inert, []);
  });

  void test('verbatim (hash key beside balance: least-connections) it parses too', () => {
    const verbatim = FULL_EXAMPLE.replace('balance: hash  # CONFIG.md: least-connections', 'balance: least-connections');
    const config = parseConfig(verbatim, FULL_ENV);
    assert.equal(config.upstreams.chat?.balance, 'least-connections');
  });

  void test('without its environment variables, each is named at its key', () => {
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(FULL_EXAMPLE, {})),
      [
        'routes[0].auth.jwt.secret: environment variable JWT_SECRET is not set (line 31)',
        'routes[0].auth.apiKeys.keys[0]: environment variable API_KEY is not set (line 37)',
      ],
    );
  });
});

void describe('parseConfig: problems', () => {
  void test('every problem is reported at once, with exact paths, in file order', () => {
    const text = `listeners:
  - address: 0.0.0.0:8080
  - address: nope
trustedProxies: [10.0.0.0/8, 10.0.0.0/33]
routes:
  - upstream: chta
    match: { path: chat }
limits:
  maxConection: 5
  idleTimeout: 10x
upstreams:
  chat:
    balance: fastest
    targets:
      - url: ftp://10.0.0.1:21
        weight: 0
log: { level: loud }
`;
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'listeners[1].address: must be host:port',
        'trustedProxies[1]: must be an IP address or a CIDR such as 10.0.0.0/8',
        'routes[0].upstream: no upstream named "chta" (known: chat)',
        'routes[0].match.path: must start with / (and contain no spaces, ? or #)',
        'limits.maxConection: unknown key (did you mean maxConnections?)',
        'limits.idleTimeout: must be a duration such as 250ms, 10s, 5m or 1h',
        'upstreams.chat.balance: must be one of: round-robin, least-connections, power-of-two, hash',
        'upstreams.chat.targets[0].url: must be ws://, wss://, http:// or https://',
        'upstreams.chat.targets[0].weight: must be at least 1',
        'log.level: must be one of: trace, debug, info, warn, error',
      ],
    );
  });

  void test('unknown keys: did-you-mean when close, plain otherwise, at every level', () => {
    const text = `${SMALLEST}limit: {}
relay: { pingIntervl: 5s, colour: blue }
`.replace('upstream: app', 'upstream: app, stripPrefx: true');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[0].stripPrefx: unknown key (did you mean stripPrefix?)',
        'limit: unknown key (did you mean limits?)',
        'relay.pingIntervl: unknown key (did you mean pingInterval?)',
        'relay.colour: unknown key',
      ],
    );
  });

  void test('a route naming an unknown upstream', () => {
    const text = SMALLEST.replace('upstream: app', 'upstream: ap').replace('{ app:', '{ app: { targets: [{ url: ws://h:1 }] }, web:');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      ['routes[0].upstream: no upstream named "ap" (known: app, web)'],
    );
  });

  void test('a YAML syntax error is reported with its line', () => {
    const problems = problemsOf(() => parseConfig('listeners:\n  - address: 127.0.0.1:0\nroutes: [\nupstreams: {}\n', {}));
    assert.ok(problems.length >= 1);
    assert.match(problems[0] ?? '', /^line \d+: /);
    const dup = problemsOf(() => parseConfig(`${SMALLEST}log: {}\nlog: {}\n`, {}));
    assert.deepStrictEqual(dup, ['line 5: Map keys must be unique']);
    // A quote opened where the stream expects a document: the parser's message
    // quotes the rest of the file (found by config-fuzz); the problem stays short.
    const rest = 'limits:\n  maxConnections: 100000\n'.repeat(40);
    const stray = problemsOf(() => parseConfig(`  - address: 127.0.0.1:0\nroutes: []\n'${rest}`, {}));
    const quoted = stray.find((p) => p.includes('single-quoted-scalar'));
    assert.match(
      quoted ?? '',
      /^line 3: Unexpected single-quoted-scalar token in YAML stream: "'limits:\\n {2}maxConnections: 100000\\n.*…$/,
      stray.join('\n'),
    );
    assert.ok(quoted!.length <= 220, quoted);
  });

  void test('an empty file names the required keys; a non-mapping is refused', () => {
    assert.deepStrictEqual(
      problemsOf(() => parseConfig('', {})),
      ['listeners: is required', 'routes: is required', 'upstreams: is required'],
    );
    assert.deepStrictEqual(
      problemsOf(() => parseConfig('- 1\n', {})),
      ['config: must be a mapping'],
    );
  });

  void test('listeners must not be empty', () => {
    const text = SMALLEST.replace('listeners: [{ address: 127.0.0.1:8080 }]', 'listeners: []');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      ['listeners: must not be empty'],
    );
  });
});

void describe('parseConfig: per-route limits', () => {
  void test('a partial override is merged over the top-level limits, perIp key by key', () => {
    const text = `listeners: [{ address: 127.0.0.1:0 }]
limits: { idleTimeout: 1m, maxMessageBytes: 64KiB, perIp: { maxConnections: 10 } }
routes:
  - { name: a, upstream: app, limits: { idleTimeout: 30s, perIp: { handshakeRate: 600/m } } }
  - { name: b, upstream: app }
upstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }
`;
    const config = parseConfig(text, {});
    const top = config.limits;
    assert.equal(top.idleTimeout, 60_000);
    assert.deepStrictEqual(config.routes[0]?.limits, {
      ...top,
      idleTimeout: 30_000,
      perIp: { maxConnections: 10, handshakeRate: { perSecond: 10 }, handshakeBurst: 40 },
    });
    assert.deepStrictEqual(config.routes[1]?.limits, top);
    assert.deepStrictEqual(config.inert, []);
  });

  void test('override values are validated like the top-level ones', () => {
    const text = SMALLEST.replace('upstream: app', 'upstream: app, limits: { idleTimeout: soon, maxConection: 1 }');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[0].limits.idleTimeout: must be a duration such as 250ms, 10s, 5m or 1h',
        'routes[0].limits.maxConection: unknown key (did you mean maxConnections?)',
      ],
    );
  });

  void test('handshakeTimeout and maxHeaderBytes cannot be set per route: the head is read before routing', () => {
    const text = SMALLEST.replace('upstream: app', 'upstream: app, limits: { handshakeTimeout: 2s, maxHeaderBytes: 4KiB }');
    assert.deepStrictEqual(
      problemsOf(() => parseConfig(text, {})),
      [
        'routes[0].limits.handshakeTimeout: cannot be set per route: the request head is read before its route is known (set limits.handshakeTimeout)',
        'routes[0].limits.maxHeaderBytes: cannot be set per route: the request head is read before its route is known (set limits.maxHeaderBytes)',
      ],
    );
  });
});

void describe('docs/configuration.md', () => {
  void test('its YAML examples are valid', async () => {
    const doc = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    const complete = doc.split('## A complete example')[1]?.match(/```yaml\n([\s\S]*?)```/)?.[1];
    assert.ok(complete !== undefined && blocks.length >= 3);
    assert.deepStrictEqual(parseConfig(blocks[0] ?? '', {}), parseConfig(SMALLEST, {}));
    const config = parseConfig(complete, FULL_ENV, '/etc/wsgate');
    assert.equal(config.routes[0]?.limits.idleTimeout, 1_800_000);
    assert.equal(config.limits.idleTimeout, 600_000);
  });
});

void describe('loadConfig', () => {
  void test('reads the file and resolves relative paths against its folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wsgate-config-'));
    try {
      const file = join(dir, 'wsgate.yaml');
      await writeFile(
        file,
        `listeners:
  - address: 127.0.0.1:0
    tls: { cert: certs/server.pem, key: /abs/key.pem }
routes: [{ upstream: app, auth: { jwt: { publicKey: keys/jwt.pem } } }]
upstreams:
  app:
    targets: [{ url: "wss://backend.internal:8443/base/" }]
    tls: { ca: ../ca.pem }
`,
      );
      const config = await loadConfig(file, {});
      assert.equal(config.listeners[0]?.tls?.cert, join(dir, 'certs/server.pem'));
      assert.equal(config.listeners[0]?.tls?.key, '/abs/key.pem');
      assert.equal(config.routes[0]?.auth?.jwt?.publicKey, join(dir, 'keys/jwt.pem'));
      assert.equal(config.upstreams.app?.tls?.ca, join(dir, '../ca.pem'));
      assert.equal(config.upstreams.app?.targets[0]?.basePath, '/base');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('a missing file is a ConfigError', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wsgate-config-'));
    try {
      await assert.rejects(loadConfig(join(dir, 'nope.yaml'), {}), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.problems[0] ?? '', /nope\.yaml: cannot read the config file/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
