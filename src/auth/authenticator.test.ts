// The shared suite every authenticator passes: a table of requests and what
// each must answer. A real HTTP server plays the forward-auth service.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, IncomingMessage } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import type { AuthConfig, JwtAuthConfig } from '../config/types.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import { AuthResources } from './auth-resources.js';
import { RouteAuth, type AuthResult } from './route-auth.js';

const SECRET = 'shared-suite-secret-0123456789abcdef';

function request(headers: Record<string, string>, url = '/'): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = 'GET';
  req.url = url;
  req.headers = { host: 'gw.test', ...headers };
  return req;
}

async function token(claims: Record<string, unknown> = {}, exp = Math.floor(Date.now() / 1000) + 60): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp).sign(new TextEncoder().encode(SECRET));
}

const JWT: JwtAuthConfig = {
  secret: SECRET,
  publicKey: undefined,
  jwksUrl: undefined,
  issuer: undefined,
  audience: 'suite',
  from: ['header:authorization', 'query:t', 'cookie:t', 'protocol'],
  forwardClaims: { 'x-user': 'sub' },
  jwksCooldown: 30_000,
  clockSkew: 30_000,
};

interface Case {
  readonly name: string;
  readonly headers: () => Promise<Record<string, string>> | Record<string, string>;
  readonly url?: string;
  /** 'pass', or the error code expected. */
  readonly expect: 'pass' | ErrorCode;
  readonly status?: number;
  readonly check?: (result: AuthResult) => void;
}

interface Suite {
  readonly name: string;
  readonly config: () => AuthConfig;
  /** true: answers without a promise when it can. */
  readonly sync: boolean;
  readonly cases: readonly Case[];
}

let authUrl = '';

const SUITES: readonly Suite[] = [
  {
    name: 'apiKeys',
    config: () => ({ jwt: undefined, forward: undefined, apiKeys: { header: 'x-api-key', keys: ['k-one', 'k-two'] } }),
    sync: true,
    cases: [
      { name: 'a listed key', headers: () => ({ 'x-api-key': 'k-two' }), expect: 'pass' },
      { name: 'no key', headers: () => ({}), expect: 'AUTH_MISSING', status: 401 },
      { name: 'an empty key', headers: () => ({ 'x-api-key': '' }), expect: 'AUTH_MISSING', status: 401 },
      { name: 'a prefix of a key', headers: () => ({ 'x-api-key': 'k-on' }), expect: 'AUTH_INVALID', status: 401 },
      { name: 'a key in another header', headers: () => ({ authorization: 'k-one' }), expect: 'AUTH_MISSING' },
    ],
  },
  {
    name: 'jwt',
    config: () => ({ apiKeys: undefined, forward: undefined, jwt: JWT }),
    sync: false,
    cases: [
      {
        name: 'a bearer token',
        headers: async () => ({ authorization: `Bearer ${await token({ aud: 'suite', sub: 'u1' })}`, 'x-user': 'spoof' }),
        expect: 'pass',
        check: (r) => {
          assert.equal(r.headers?.get('x-user'), 'u1');
          assert.equal(r.claims?.sub, 'u1');
          assert.equal(r.protocol, undefined);
        },
      },
      { name: 'a query token', headers: () => ({}), url: 'QUERY', expect: 'pass' },
      {
        name: 'a protocol entry, taken out of the list',
        headers: async () => ({ 'sec-websocket-protocol': `v1, ${await token({ aud: 'suite' })}, v2` }),
        expect: 'pass',
        check: (r) => {
          assert.equal(r.protocol, 'v1, v2');
          assert.ok(r.headers?.has('x-user'), 'a forwarded claim name is always present, to strip the client header');
          assert.equal(r.headers?.get('x-user'), undefined);
        },
      },
      { name: 'no token', headers: () => ({ 'sec-websocket-protocol': 'v1' }), expect: 'AUTH_MISSING', status: 401 },
      { name: 'an expired token', headers: async () => ({ cookie: `t=${await token({ aud: 'suite' }, 1_000)}` }), expect: 'AUTH_INVALID', status: 401 },
      {
        name: 'the wrong audience',
        headers: async () => ({ authorization: `Bearer ${await token({ aud: 'other' })}` }),
        expect: 'AUTH_FORBIDDEN',
        status: 403,
      },
    ],
  },
  {
    name: 'forward',
    config: () => ({ apiKeys: undefined, jwt: undefined, forward: { url: authUrl, headers: ['authorization'], responseHeaders: ['x-user'], timeout: 500 } }),
    sync: false,
    cases: [
      {
        name: '2xx',
        headers: () => ({ authorization: 'yes', 'x-user': 'spoof' }),
        expect: 'pass',
        check: (r) => assert.equal(r.headers?.get('x-user'), 'from-service'),
      },
      { name: '401 from the service', headers: () => ({ authorization: 'no' }), expect: 'AUTH_DENIED', status: 401 },
      { name: 'a slow service', headers: () => ({ authorization: 'slow' }), expect: 'AUTH_UNAVAILABLE', status: 503 },
    ],
  },
];

void describe('authenticators: the shared suite', () => {
  let resources: AuthResources;
  const server = createServer((req, res) => {
    const auth = req.headers.authorization;
    if (auth === 'yes') {
      res.writeHead(200, { 'x-user': 'from-service' });
      res.end();
    } else if (auth === 'slow') {
      const timer = setTimeout(() => res.end(), 120_000);
      res.on('close', () => clearTimeout(timer));
    } else {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="svc"' });
      res.end('who are you?');
    }
  });
  before(async () => {
    resources = new AuthResources();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    authUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`;
  });
  after(async () => {
    await resources.close();
    server.closeAllConnections();
    server.close();
  });

  for (const suite of SUITES) {
    for (const c of suite.cases) {
      void test(`${suite.name}: ${c.name} → ${c.expect}`, async () => {
        const auth = new RouteAuth(suite.config(), resources);
        const url = c.url === 'QUERY' ? `/x?t=${await token({ aud: 'suite' })}` : (c.url ?? '/');
        const req = request(await c.headers(), url);
        let outcome: AuthResult | Promise<AuthResult> | GatewayError;
        try {
          outcome = auth.run({ req, client: '192.0.2.1', secure: false, signal: undefined });
        } catch (err) {
          outcome = err as GatewayError;
        }
        if (suite.sync) assert.ok(!(outcome instanceof Promise), 'answered without a promise');
        let result: AuthResult | GatewayError;
        try {
          result = await outcome;
        } catch (err) {
          result = err as GatewayError;
        }
        if (c.expect === 'pass') {
          assert.ok(!(result instanceof Error), result instanceof Error ? result.message : '');
          c.check?.(result);
          return;
        }
        assert.ok(result instanceof GatewayError, `expected ${c.expect}`);
        assert.equal(result.code, c.expect, result.message);
        if (c.status !== undefined) assert.equal(result.status, c.status);
        if (result.status === 401 && result.code !== 'AUTH_DENIED') {
          assert.ok(
            result.headers?.some((h) => h.startsWith('WWW-Authenticate: ')),
            'a 401 carries WWW-Authenticate',
          );
        }
        if (result.code === 'AUTH_DENIED') {
          assert.equal(result.answer?.body.toString(), 'who are you?');
          assert.ok(result.answer?.headers.includes('www-authenticate: Basic realm="svc"'));
        }
      });
    }
  }

  void test('an auth service that cannot be reached is a 503, never a pass', async () => {
    const auth = new RouteAuth(
      { apiKeys: undefined, jwt: undefined, forward: { url: 'http://127.0.0.1:1/auth', headers: [], responseHeaders: [], timeout: 500 } },
      resources,
    );
    await assert.rejects(
      Promise.resolve(auth.run({ req: request({}), client: '192.0.2.1', secure: false, signal: undefined })),
      (err: unknown) => err instanceof GatewayError && err.code === 'AUTH_UNAVAILABLE',
    );
  });

  void test('a client that goes away aborts the forward-auth call', async () => {
    const auth = new RouteAuth(
      { apiKeys: undefined, jwt: undefined, forward: { url: authUrl, headers: ['authorization'], responseHeaders: [], timeout: 60_000 } },
      resources,
    );
    const abort = new AbortController();
    const pending = Promise.resolve(auth.run({ req: request({ authorization: 'slow' }), client: '192.0.2.1', secure: false, signal: abort.signal }));
    setTimeout(() => abort.abort(), 50);
    const started = Date.now();
    await assert.rejects(pending, (err: unknown) => err instanceof GatewayError && err.code === 'AUTH_UNAVAILABLE');
    assert.ok(Date.now() - started < 30_000, 'gave up when the client left, not at the 60 s timeout');
  });
});
