import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, type JWTPayload } from 'jose';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway.js';
import { echo, startBackend, startGateway, type Backend, type RunningGateway, listenLocal, closeHttp } from './helpers.js';
import { SECRET, handshake, hs256, noSecretsIn, now, signWith, unsigned } from './auth-fixtures.js';

void describe('JWT with a shared secret (HS256)', () => {
  let backend: Backend;
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend({ handleProtocols: (p) => (p.has('chat.v1') ? 'chat.v1' : false) });
    gw = await startGateway(
      `
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - name: chat
    match: { path: / }
    upstream: app
    auth:
      jwt:
        secret: \${JWT_SECRET}
        issuer: https://idp.test
        audience: chat
        from: [header:authorization, query:access_token, cookie:token, protocol]
        forwardClaims: { x-user-id: sub, x-tenant: org.id }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
      { JWT_SECRET: SECRET },
    );
  });
  after(async () => {
    await gw.close();
    await backend.close();
  });

  const good = (extra: JWTPayload = {}, exp?: number): Promise<string> => hs256({ iss: 'https://idp.test', aud: 'chat', sub: 'alice', ...extra }, { exp });

  void it('a valid token passes; claims become upstream headers; client-sent ones are replaced', async () => {
    const token = await good({ org: { id: 'blue' } });
    const ws = new WebSocket(gw.url, { headers: { authorization: `Bearer ${token}`, 'x-user-id': 'mallory', 'x-tenant': 'red' } });
    ws.on('error', () => {});
    await once(ws, 'open');
    assert.equal(await echo(ws, 'hi'), 'hi');
    ws.close();
    const h = backend.requests.at(-1)!.headers;
    assert.equal(h['x-user-id'], 'alice');
    assert.equal(h['x-tenant'], 'blue', 'a dotted claim name walks into objects');
    assert.equal(h.authorization, `Bearer ${token}`, 'the token itself still reaches the upstream');
    noSecretsIn(gw.logs, token, SECRET);
  });

  void it('a spoofed claim header is removed even when the claim is missing', async () => {
    const token = await good({ sub: undefined });
    const before = backend.requests.length;
    const { status } = await handshake(gw.port, [`Authorization: Bearer ${token}`, 'X-User-Id: mallory', 'X-Tenant: red']);
    assert.equal(status, 101);
    assert.equal(backend.requests.length, before + 1);
    const h = backend.requests.at(-1)!.headers;
    assert.equal(h['x-user-id'], undefined);
    assert.equal(h['x-tenant'], undefined);
  });

  const failures: [string, () => Promise<readonly string[]>, number, RegExp][] = [
    ['no token at all', async () => [], 401, /^WWW-Authenticate: Bearer realm="wsgate"\r$/m],
    ['a Basic Authorization header is no bearer token', async () => ['Authorization: Basic YTpi'], 401, /WWW-Authenticate: Bearer/],
    [
      'a bad signature',
      async () => [`Authorization: Bearer ${await hs256({ iss: 'https://idp.test', aud: 'chat' }, { secret: 'another-secret-another-secret-xx' })}`],
      401,
      /error="invalid_token"/,
    ],
    ['a malformed token', async () => ['Authorization: Bearer not.a.jwt'], 401, /error="invalid_token"/],
    ['expired beyond the clock skew', async () => [`Authorization: Bearer ${await good({}, now() - 120)}`], 401, /invalid_token/],
    ['not valid yet (nbf) beyond the skew', async () => [`Authorization: Bearer ${await good({ nbf: now() + 120 })}`], 401, /invalid_token/],
    ['no exp claim', async () => [`Authorization: Bearer ${await hs256({ iss: 'https://idp.test', aud: 'chat' }, { exp: null })}`], 401, /invalid_token/],
    ['another audience (genuine token, wrong route)', async () => [`Authorization: Bearer ${await good({ aud: 'billing' })}`], 403, /^HTTP\/1\.1 403/],
    ['another issuer', async () => [`Authorization: Bearer ${await good({ iss: 'https://evil.test' })}`], 403, /^HTTP\/1\.1 403/],
    ['alg none', async () => [`Authorization: Bearer ${unsigned({ iss: 'https://idp.test', aud: 'chat', exp: now() + 60 })}`], 401, /invalid_token/],
  ];
  for (const [name, headers, status, answer] of failures) {
    void it(`${name} → ${status}, the upstream is never contacted`, async () => {
      const before = backend.requests.length;
      const { status: got, text } = await handshake(gw.port, await headers());
      assert.equal(got, status, text);
      assert.match(text, answer);
      assert.equal(backend.requests.length, before);
      const line = gw.logs.findLast((l) => l.msg === 'handshake rejected');
      assert.equal(line?.status, status);
      assert.match(String(line?.reason), /jwt/);
    });
  }

  void it('exp within the clock skew still passes', async () => {
    const { status } = await handshake(gw.port, [`Authorization: Bearer ${await good({}, now() - 5)}`]);
    assert.equal(status, 101);
  });

  void it('looks in `from` order: query, cookie; the first token found is the one checked', async () => {
    const token = await good();
    assert.equal((await handshake(gw.port, [], `/?access_token=${token}`)).status, 101);
    assert.equal((await handshake(gw.port, [`Cookie: a=1; token=${token}`])).status, 101);
    // A bad header token is not rescued by a good query token.
    assert.equal((await handshake(gw.port, ['Authorization: Bearer bad.bad.bad'], `/?access_token=${token}`)).status, 401);
    const logged = JSON.stringify(gw.logs.filter((l) => l.msg === 'handshake rejected'));
    assert.equal(logged.includes(token), false, 'query tokens are not logged with the path');
  });

  void it('a token in Sec-WebSocket-Protocol passes and is removed before the upstream chooses', async () => {
    const token = await good();
    const ws = new WebSocket(gw.url, ['chat.v1', token]);
    ws.on('error', () => {});
    await once(ws, 'open');
    assert.equal(ws.protocol, 'chat.v1');
    assert.equal(backend.requests.at(-1)!.headers['sec-websocket-protocol'], 'chat.v1');
    ws.close();
    // The token alone: the header is dropped entirely.
    await handshake(gw.port, [`Sec-WebSocket-Protocol: ${token}`]);
    assert.equal(backend.requests.at(-1)!.headers['sec-websocket-protocol'], undefined);
  });

  void it('plain HTTP requests on the route need the token too', async () => {
    const res = await fetch(`http://127.0.0.1:${gw.port}/page`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /Bearer/);
    const ok = await fetch(`http://127.0.0.1:${gw.port}/page`, { headers: { authorization: `Bearer ${await good()}`, 'x-user-id': 'mallory' } });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'http ok\n');
  });
});

void describe('JWT with a public key file (RS256, ES256)', () => {
  let backend: Backend;
  let dir: string;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    dir = mkdtempSync(join(tmpdir(), 'wsgate-jwt-'));
    writeFileSync(join(dir, 'rsa.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'ec.pem'), ec.publicKey.export({ type: 'spki', format: 'pem' }));
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: rsa, match: { path: /rsa }, upstream: app, auth: { jwt: { publicKey: ${join(dir, 'rsa.pem')} } } }
  - { name: ec, match: { path: /ec }, upstream: app, auth: { jwt: { publicKey: ${join(dir, 'ec.pem')} } } }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  });

  void it('RS256 and PS256 with an RSA key; ES256 with a P-256 key', async () => {
    for (const [path, key, alg] of [
      ['/rsa', rsa.privateKey, 'RS256'],
      ['/rsa', rsa.privateKey, 'PS256'],
      ['/ec', ec.privateKey, 'ES256'],
    ] as const) {
      const token = await signWith(key, alg, { sub: 'bob' });
      assert.equal((await handshake(gw.port, [`Authorization: Bearer ${token}`], path)).status, 101, `${alg} on ${path}`);
    }
  });

  void it('a key of the wrong type, or the public key used as an HMAC secret, is refused (401)', async () => {
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${await signWith(ec.privateKey, 'ES256', {})}`], '/rsa')).status, 401);
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const confused = await hs256({ sub: 'x' }, { secret: pem });
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${confused}`], '/rsa')).status, 401);
  });

  void it('a key file that cannot be read stops the start, and a reload with one changes nothing', async () => {
    const broken = `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, auth: { jwt: { publicKey: ${join(dir, 'missing.pem')} } } }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
`;
    assert.throws(() => createGateway(parseConfig(broken, {})), /routes\[0\]\.auth\.jwt\.publicKey: cannot read .*missing\.pem/);
    const result = await gw.gw.reload(parseConfig(broken, {}));
    assert.equal(result.ok, false);
    const token = await signWith(rsa.privateKey, 'RS256', {});
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${token}`], '/rsa')).status, 101, 'the running config stays');
  });
});

interface Jwks {
  readonly url: string;
  fetches: number;
  keys: object[];
  close(): Promise<void>;
}

async function startJwks(): Promise<Jwks> {
  const state = { fetches: 0, keys: [] as object[] };
  const server: Server = createServer((_req, res) => {
    state.fetches++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  const port = await listenLocal(server);
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    close: () => closeHttp(server),
  });
}

void describe('JWT from a JWKS URL that rotates its keys', () => {
  let backend: Backend;
  let jwks: Jwks;
  let gw: RunningGateway;
  const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const k2 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = async (pair: typeof k1, kid: string): Promise<object> => ({ ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' });

  before(async () => {
    backend = await startBackend();
    jwks = await startJwks();
    jwks.keys = [await jwk(k1, 'k1')];
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: eager, match: { path: /eager }, upstream: app, auth: { jwt: { jwksUrl: "${jwks.url}", jwksCooldown: 0 } } }
  - { name: lazy, match: { path: /lazy }, upstream: app, auth: { jwt: { jwksUrl: "${jwks.url}", jwksCooldown: 1h } } }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await backend.close();
    await jwks.close();
  });

  void it('fetches once, then serves known kids from the cache', async () => {
    const t1 = await signWith(k1.privateKey, 'ES256', { sub: 'a' }, 'k1');
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t1}`], '/eager')).status, 101);
    const fetched = jwks.fetches;
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t1}`], '/eager')).status, 101);
    assert.equal(jwks.fetches, fetched, 'no fetch for a known kid');
  });

  void it('an unknown kid refetches (after the cooldown) and picks up the rotated key; the retired key stops working', async () => {
    jwks.keys = [await jwk(k2, 'k2')];
    const t2 = await signWith(k2.privateKey, 'ES256', { sub: 'b' }, 'k2');
    const before = jwks.fetches;
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t2}`], '/eager')).status, 101);
    assert.equal(jwks.fetches, before + 1);
    const t1 = await signWith(k1.privateKey, 'ES256', { sub: 'a' }, 'k1');
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t1}`], '/eager')).status, 401);
  });

  void it('within the cooldown, made-up kids cause no fetches at all', async () => {
    const t2 = await signWith(k2.privateKey, 'ES256', {}, 'k2');
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t2}`], '/lazy')).status, 101);
    const before = jwks.fetches;
    for (let i = 0; i < 20; i++) {
      const forged = await signWith(k1.privateKey, 'ES256', {}, `made-up-${i}`);
      assert.equal((await handshake(gw.port, [`Authorization: Bearer ${forged}`], '/lazy')).status, 401);
    }
    assert.equal(jwks.fetches, before);
  });

  void it('the JWKS server down while a kid is unknown → 503, never a pass', async () => {
    await jwks.close();
    const k3 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const t3 = await signWith(k3.privateKey, 'ES256', {}, 'k3');
    const { status, text } = await handshake(gw.port, [`Authorization: Bearer ${t3}`], '/eager');
    assert.equal(status, 503, text);
    const line = gw.logs.findLast((l) => l.msg === 'handshake rejected');
    assert.equal(line?.code, 'AUTH_UNAVAILABLE');
    // Known kids keep working from the cache.
    const t2 = await signWith(k2.privateKey, 'ES256', {}, 'k2');
    assert.equal((await handshake(gw.port, [`Authorization: Bearer ${t2}`], '/eager')).status, 101);
  });
});

void describe('verified claims feed the hash balancer (hash.key: claim:NAME)', () => {
  let a: Backend;
  let b: Backend;
  let gw: RunningGateway;
  before(async () => {
    [a, b] = await Promise.all([startBackend(), startBackend()]);
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, auth: { jwt: { secret: "${SECRET}" } } }]
upstreams: { app: { balance: hash, hash: { key: "claim:sub" }, targets: [{ url: "${a.url}" }, { url: "${b.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a.close(), b.close()]);
  });

  void it('one subject always lands on one target', async () => {
    for (const sub of ['alice', 'bob', 'carol']) {
      const token = await hs256({ sub });
      const before = [a.requests.length, b.requests.length];
      for (let i = 0; i < 8; i++) assert.equal((await handshake(gw.port, [`Authorization: Bearer ${token}`])).status, 101);
      const grew = [a.requests.length - before[0]!, b.requests.length - before[1]!];
      assert.ok(grew.includes(8) && grew.includes(0), `${sub}: ${grew.join('/')}`);
    }
  });
});
