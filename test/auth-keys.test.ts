import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import {
  rawExchange,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  type RunningGateway,
  withGateway,
  listenLocal,
  closeHttp,
} from './helpers.js';
import { SECRET, handshake, hs256, noSecretsIn } from './auth-fixtures.js';

void describe('API keys', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, auth: { apiKeys: { header: x-api-key, keys: ["\${K1}", "second-key-value"] } } }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
    { K1: 'first-key-value' },
  );

  void it('either key passes; missing → 401, wrong → 401, both with WWW-Authenticate; keys are never logged', async () => {
    assert.equal((await handshake(fx.gw.port, ['X-Api-Key: first-key-value'])).status, 101);
    assert.equal((await handshake(fx.gw.port, ['X-Api-Key: second-key-value'])).status, 101);
    const missing = await handshake(fx.gw.port);
    assert.equal(missing.status, 401);
    assert.match(missing.text, /WWW-Authenticate: ApiKey realm="wsgate", header="x-api-key"/);
    const wrong = await handshake(fx.gw.port, ['X-Api-Key: first-key-valuf']);
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /WWW-Authenticate: ApiKey/);
    assert.equal(fx.backend.requests.length, 2);
    noSecretsIn(fx.gw.logs, 'first-key-value', 'second-key-value', 'first-key-valuf');
  });

  void it('a refused handshake gives its per-IP slot back at once', async () => {
    const tight = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, auth: { apiKeys: { keys: [only-key] } } }]
upstreams: { app: { targets: [{ url: "${fx.backend.url}" }] } }
limits: { perIp: { maxConnections: 1 } }
shutdown: { drainTimeout: 0 }
`);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await handshake(tight.port, ['X-Api-Key: wrong'])).status, 401);
      assert.equal((await handshake(tight.port, ['X-Api-Key: only-key'])).status, 101);
    } finally {
      await tight.close();
    }
  });
});

interface AuthService {
  readonly url: string;
  readonly calls: IncomingMessage[];
  delay: number;
  close(): Promise<void>;
}

/** Bearer "ok" → 200 with x-user-id; "redirect" → 302; anything else → 403 with a body. */
async function startAuthService(): Promise<AuthService> {
  const state = { calls: [] as IncomingMessage[], delay: 0 };
  const server = createServer((req, res) => {
    state.calls.push(req);
    const answer = (): void => {
      const auth = req.headers.authorization ?? '';
      if (auth === 'Bearer ok') {
        res.writeHead(204, { 'x-user-id': 'carol', 'x-internal': 'not for upstream' });
        res.end();
      } else if (auth === 'Bearer redirect') {
        res.writeHead(302, { location: 'https://login.test/', 'set-cookie': 'state=1' });
        res.end();
      } else {
        // x-why: "café" in UTF-8, one latin1 character per byte (as Node writes header values).
        res.writeHead(403, { 'content-type': 'application/json', 'x-reason': 'denied', 'x-why': 'caf\u00c3\u00a9' });
        res.end('{"error":"nope"}');
      }
    };
    if (state.delay > 0) setTimeout(answer, state.delay);
    else answer();
  });
  const port = await listenLocal(server);
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/check?from=wsgate`,
    close: () => closeHttp(server),
  });
}

void describe('forward auth', () => {
  let backend: Backend;
  let service: AuthService;
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    service = await startAuthService();
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - match: { path: / }
    upstream: app
    auth: { forward: { url: "${service.url}", headers: [authorization], responseHeaders: [x-user-id], timeout: 300ms } }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await backend.close();
    await service.close();
  });

  void it('2xx allows and copies responseHeaders upstream (the client cannot spoof them)', async () => {
    const { status } = await handshake(gw.port, ['Authorization: Bearer ok', 'X-User-Id: mallory', 'Cookie: c=1'], '/room?x=1');
    assert.equal(status, 101);
    const h = backend.requests.at(-1)!.headers;
    assert.equal(h['x-user-id'], 'carol');
    assert.equal(h['x-internal'], undefined, 'only the listed response headers are copied');
    const call = service.calls.at(-1)!;
    assert.equal(call.url, '/check?from=wsgate');
    assert.equal(call.headers.authorization, 'Bearer ok');
    assert.equal(call.headers.cookie, undefined, 'only the listed request headers go to the service');
    assert.equal(call.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(call.headers['x-forwarded-uri'], '/room?x=1');
    assert.equal(call.headers['x-forwarded-method'], 'GET');
  });

  void it('any other answer goes back to the client as is, body included; the upstream is not contacted', async () => {
    const before = backend.requests.length;
    const denied = await rawExchange(gw.port, upgradeRequest('/', ['Authorization: Bearer no']), /nope"\}/);
    assert.equal(statusOf(denied), 403);
    assert.match(denied, /\r\nx-reason: denied\r\n/i);
    assert.ok(denied.includes('\r\nx-why: caf\u00c3\u00a9\r\n'), `header bytes beyond ASCII as sent: ${JSON.stringify(denied)}`);
    assert.match(denied, /\r\ncontent-type: application\/json\r\n/i);
    assert.ok(denied.endsWith('{"error":"nope"}'), denied);
    const redirect = await rawExchange(gw.port, upgradeRequest('/', ['Authorization: Bearer redirect']));
    assert.equal(statusOf(redirect), 302);
    assert.match(redirect, /\r\nlocation: https:\/\/login\.test\/\r\n/i);
    assert.match(redirect, /\r\nset-cookie: state=1\r\n/i);
    assert.equal(backend.requests.length, before);
    const line = gw.logs.findLast((l) => l.msg === 'handshake rejected');
    assert.equal(line?.code, 'AUTH_DENIED');
    assert.equal(line?.status, 302);
  });

  void it('slower than its timeout → 503', async () => {
    service.delay = 1_000;
    try {
      const { status } = await handshake(gw.port, ['Authorization: Bearer ok']);
      assert.equal(status, 503);
      assert.match(String(gw.logs.findLast((l) => l.msg === 'handshake rejected')?.reason), /no answer within 300ms/);
    } finally {
      service.delay = 0;
    }
  });

  void it('the auth service down → 503, never a pass', async () => {
    await service.close();
    const before = backend.requests.length;
    const { status, text } = await handshake(gw.port, ['Authorization: Bearer ok']);
    assert.equal(status, 503, text);
    assert.equal(backend.requests.length, before);
    const res = await fetch(`http://127.0.0.1:${gw.port}/plain`, { headers: { authorization: 'Bearer ok' } });
    assert.equal(res.status, 503);
  });
});

void describe('several methods on one route', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, auth: { apiKeys: { keys: [svc-key] }, jwt: { secret: "${SECRET}" } } }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('every configured method must pass', async () => {
    const token = await hs256({ sub: 'x' });
    assert.equal((await handshake(fx.gw.port, ['X-Api-Key: svc-key', `Authorization: Bearer ${token}`])).status, 101);
    assert.equal((await handshake(fx.gw.port, [`Authorization: Bearer ${token}`])).status, 401);
    assert.equal((await handshake(fx.gw.port, ['X-Api-Key: svc-key'])).status, 401);
    assert.equal(fx.backend.requests.length, 1);
  });
});
