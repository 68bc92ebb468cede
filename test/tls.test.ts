import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { parseConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway.js';
import { echo, eventually, startBackend, startGateway, type RunningGateway, listenLocal, closeHttp } from './helpers.js';
import { makeCa, NO_OPENSSL, type TestCa } from './tls-fixtures.js';
import { coreSessions } from '../src/relay/native-tunnel.js';
import { floodThroughGateway } from './flood-fixtures.js';

/** The certificate a TLS client is shown, by common name (undefined when the handshake fails). */
async function certName(port: number, options: ConnectionOptions): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = tlsConnect({ port, host: '127.0.0.1', ...options }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(typeof cn === 'string' ? cn : undefined);
    });
    s.on('error', () => resolve(undefined));
  });
}

async function openWss(url: string, ca: Buffer): Promise<WebSocket> {
  const ws = new WebSocket(url, { ca });
  ws.on('error', () => {});
  await once(ws, 'open');
  return ws;
}

/** A tunnel-mode session with TLS on one side: it relays, outside the native core, and ends in the access log. */
async function relaysInJs(gw: RunningGateway, ws: WebSocket): Promise<void> {
  assert.equal(await echo(ws, 'tunnelled'), 'tunnelled');
  assert.equal(coreSessions(), 0);
  ws.close();
  await eventually(() => gw.logs.some((l) => l.msg === 'session closed' && l.bytesIn !== 0), 5_000, 'access log line');
}

void describe('TLS listener', { skip: NO_OPENSSL }, () => {
  let ca: TestCa;
  let backend: { port: number; close(): Promise<void>; requests: IncomingMessage[] };
  let gw: RunningGateway;
  let yaml: (cert: string, key: string) => string;
  let files: { cert: string; key: string };

  before(async () => {
    ca = makeCa();
    files = ca.issue('server', ['localhost', '127.0.0.1'], 'localhost-1');
    const wild = ca.issue('wild', ['*.example.com'], 'wildcard');
    const exact = ca.issue('exact', ['chat.example.com'], 'exact');
    backend = await startBackend();
    yaml = (cert, key) => `
listeners:
  - address: 127.0.0.1:0
    tls:
      cert: ${cert}
      key: ${key}
      sni:
        - { hosts: ["*.example.com"], cert: ${wild.cert}, key: ${wild.key} }
        - { hosts: [chat.example.com], cert: ${exact.cert}, key: ${exact.key} }
      minVersion: TLSv1.3
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${backend.port}" }] } }
shutdown: { drainTimeout: 0 }
`;
    gw = await startGateway(yaml(files.cert, files.key));
  });
  after(async () => {
    await gw.close();
    await backend.close();
    ca.close();
  });

  void it('serves wss:// with the default certificate; the upstream hears proto=https', async () => {
    const ws = await openWss(`wss://localhost:${gw.port}/`, ca.ca);
    assert.equal(await echo(ws, 'over tls'), 'over tls');
    ws.close();
    assert.equal(backend.requests.at(-1)?.headers['x-forwarded-proto'], 'https');
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'localhost' }), 'localhost-1');
  });

  void it('tunnel mode over TLS: the session runs in the JavaScript tunnel (not the native core) and relays as usual', async () => {
    const tunnel = await startGateway(`${yaml(files.cert, files.key)}relay: { mode: tunnel }\n`);
    try {
      await relaysInJs(tunnel, await openWss(`wss://localhost:${tunnel.port}/`, ca.ca));
    } finally {
      await tunnel.close();
    }
  });

  void it('picks SNI certificates: exact name first, then the wildcard, else the default', async () => {
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'chat.example.com' }), 'exact');
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'a.example.com' }), 'wildcard');
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'deep.a.example.com', checkServerIdentity: () => undefined }), 'wildcard');
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'example.com', checkServerIdentity: () => undefined }), 'localhost-1');
    // No SNI at all (an IP address): the default certificate.
    assert.equal(await certName(gw.port, { ca: ca.ca }), 'localhost-1');
  });

  void it('enforces minVersion and offers h2 and http/1.1 by ALPN (http2 is on by default with tls; http2.test.ts has it off)', async () => {
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'localhost', maxVersion: 'TLSv1.2' }), undefined);
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'localhost', ALPNProtocols: ['spdy/3'] }), undefined);
    const alpn = (offer: string[]): Promise<string | false> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ port: gw.port, host: '127.0.0.1', servername: 'localhost', ca: ca.ca, ALPNProtocols: offer }, () => {
          resolve(s.alpnProtocol ?? false);
          s.destroy();
        });
        s.on('error', reject);
      });
    assert.equal(await alpn(['h2', 'http/1.1']), 'h2');
    assert.equal(await alpn(['http/1.1']), 'http/1.1');
  });

  void it('re-reads changed certificate files without dropping open connections; a broken one keeps the old', async () => {
    const ws = await openWss(`wss://localhost:${gw.port}/`, ca.ca);
    const next = ca.issue('server-next', ['localhost', '127.0.0.1'], 'localhost-2');
    copyFileSync(next.key, files.key);
    copyFileSync(next.cert, files.cert);
    await eventually(() => gw.logs.some((l) => l.msg === 'TLS certificates reloaded'), 10_000, 'the reload log line');
    let served: string | undefined;
    for (let i = 0; i < 100 && served !== 'localhost-2'; i++) {
      served = await certName(gw.port, { ca: ca.ca, servername: 'localhost' });
      if (served !== 'localhost-2') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(served, 'localhost-2', 'new connections get the new certificate');
    assert.equal(await echo(ws, 'still here'), 'still here', 'the connection opened before the swap lives on');

    const good = readFileSync(files.cert);
    writeFileSync(files.cert, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await eventually(() => gw.logs.some((l) => l.msg === 'TLS certificates not reloaded; the previous ones stay in service'), 10_000, 'the error log line');
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'localhost' }), 'localhost-2', 'the old certificate stays in service');
    assert.equal(await echo(ws, 'and here'), 'and here');
    writeFileSync(files.cert, good);
    ws.close();
  });

  void it('a config reload (SIGHUP) switches to new certificate files', async () => {
    const alt = ca.issue('alt', ['localhost', '127.0.0.1'], 'alt');
    const ws = await openWss(`wss://localhost:${gw.port}/`, ca.ca);
    const result = await gw.gw.reload(parseConfig(yaml(alt.cert, alt.key), {}));
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(await certName(gw.port, { ca: ca.ca, servername: 'localhost' }), 'alt');
    assert.equal(await echo(ws, 'kept'), 'kept');
    ws.close();
  });

  void it('refuses to start when a certificate cannot be read', async () => {
    await assert.rejects(startGateway(yaml(`${ca.dir}/missing.pem`, files.key)), /TLS certificate: cannot read .*missing\.pem/);
  });
});

interface TlsBackend {
  readonly port: number;
  readonly requests: IncomingMessage[];
  readonly server: HttpsServer;
  close(): Promise<void>;
}

async function startTlsBackend(cert: string, key: string): Promise<TlsBackend> {
  const server = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (_req, res) => res.end('https ok\n'));
  const wss = new WebSocketServer({ server });
  const requests: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    requests.push(req);
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  server.on('tlsClientError', () => {});
  const port = await listenLocal(server);
  return {
    port,
    requests,
    server,
    async close() {
      await closeHttp(server, wss);
    },
  };
}

void describe('TLS listener: backpressure', { skip: NO_OPENSSL }, () => {
  for (const mode of ['tunnel', 'inspect']) {
    void it(`${mode} mode: both ends flood without reading, then read on: every byte arrives as sent`, { timeout: 90_000 }, async () => {
      const ca = makeCa();
      const files = ca.issue('server', ['localhost'], 'flood');
      const config = (port: number): string => `
listeners: [{ address: 127.0.0.1:0, tls: { cert: ${files.cert}, key: ${files.key} } }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${port}" }] } }
limits: { maxBufferedBytes: 256KiB }
relay: { mode: ${mode} }
shutdown: { drainTimeout: 0 }
`;
      const dial = async (port: number): Promise<TLSSocket> => {
        const s = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ca: ca.ca });
        s.on('error', () => {});
        await once(s, 'secureConnect');
        return s;
      };
      try {
        await floodThroughGateway(config, dial);
      } finally {
        ca.close();
      }
    });
  }
});

void describe('upstream TLS (wss:// and https:// targets)', { skip: NO_OPENSSL }, () => {
  let ca: TestCa;
  let backend: TlsBackend;
  before(async () => {
    ca = makeCa();
    // The certificate names only backend.internal: dialing 127.0.0.1 needs `servername`.
    const leaf = ca.issue('backend', ['backend.internal'], 'backend.internal');
    backend = await startTlsBackend(leaf.cert, leaf.key);
  });
  after(async () => {
    await backend.close();
    ca.close();
  });

  const config = (tls: string, scheme = 'wss'): string => `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${scheme}://127.0.0.1:${backend.port}" }], retries: 0${tls === '' ? '' : `, tls: ${tls}`} } }
shutdown: { drainTimeout: 0 }
`;

  void it('verifies the upstream against the CA bundle and servername', async () => {
    const gw = await startGateway(config(`{ ca: ${ca.caFile}, servername: backend.internal }`));
    try {
      const ws = new WebSocket(gw.url);
      ws.on('error', () => {});
      await once(ws, 'open');
      assert.equal(await echo(ws, 'to wss'), 'to wss');
      ws.close();
      assert.equal(
        gw.logs.some((l) => l.level === 40 && String(l.msg).includes('tls.verify')),
        false,
        'no warning while verifying',
      );
    } finally {
      await gw.close();
    }
  });

  void it('tunnel mode to a wss:// target: the session runs in the JavaScript tunnel (not the native core) and relays as usual', async () => {
    const gw = await startGateway(`${config(`{ ca: ${ca.caFile}, servername: backend.internal }`)}relay: { mode: tunnel }\n`);
    try {
      const ws = new WebSocket(gw.url);
      ws.on('error', () => {});
      await once(ws, 'open');
      await relaysInJs(gw, ws);
    } finally {
      await gw.close();
    }
  });

  for (const [name, tls] of [
    ['verification is on by default: an unknown CA fails', '{ servername: backend.internal }'],
    ['a certificate for another name fails', '{ ca: CAFILE, servername: other.internal }'],
    ['no tls block at all: system roots, and the IP is not in the certificate', ''],
  ] as const) {
    void it(`${name} → 502, nothing relayed`, async () => {
      const gw = await startGateway(config(tls.replace('CAFILE', ca.caFile)));
      const seen = backend.requests.length;
      try {
        const ws = new WebSocket(gw.url);
        ws.on('error', () => {});
        const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
        assert.equal(res.statusCode, 502);
        const failed = gw.logs.find((l) => l.msg === 'upstream attempt failed');
        assert.ok(failed, 'the failed dial is logged');
        assert.equal(backend.requests.length, seen);
      } finally {
        await gw.close();
      }
    });
  }

  void it('verify: false connects anyway, and says so at start', async () => {
    const gw = await startGateway(config('{ verify: false }'));
    try {
      const warning = gw.logs.find((l) => l.key === 'upstreams.app.tls.verify');
      assert.ok(warning, 'a warning at start');
      assert.equal(warning.level, 40);
      const ws = new WebSocket(gw.url);
      ws.on('error', () => {});
      await once(ws, 'open');
      assert.equal(await echo(ws, 'unverified'), 'unverified');
      ws.close();
    } finally {
      await gw.close();
    }
  });

  void it('https:// targets: plain HTTP requests are verified the same way', async () => {
    const gw = await startGateway(config(`{ ca: ${ca.caFile}, servername: backend.internal }`, 'https'));
    try {
      const res = await fetch(`http://127.0.0.1:${gw.port}/x`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'https ok\n');
    } finally {
      await gw.close();
    }
  });

  void it('a CA file that cannot be read stops the start', () => {
    assert.throws(() => startGatewaySync(config(`{ ca: ${ca.dir}/nope.pem }`)), /upstreams\.app: upstream tls\.ca: cannot read/);
  });
});

function startGatewaySync(yaml: string): void {
  // createGateway reads key files synchronously: the error comes from the constructor.
  createGateway(parseConfig(yaml, {}));
}
