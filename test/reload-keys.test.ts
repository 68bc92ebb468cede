import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import { parseConfig } from '../src/config/load.js';
import {
  echo,
  eventually,
  freePort,
  openClient,
  rawExchange,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  type RunningGateway,
} from './helpers.js';
import { NO_PER_IP_LIMITS } from './resilience-helpers.js';
import { configFile, jsonLines, printed, startWsgate } from './process-helpers.js';
import { makeCa, NO_OPENSSL, type Issued, type TestCa } from './tls-fixtures.js';

// Every key a reload applies (docs/operations.md, "Reload"), one at a time:
// a gateway with connections open, a reload that changes only that key, its
// effect on a new connection, and the open connections still exchanging
// messages. The listener must stay bound through all of them (no refusal
// window). Then the keys a reload refuses, naming them, with nothing changed.

/** What a row's config sets besides the fixed route and upstream. */
interface Parts {
  /** More keys of the one listener ("proxyProtocol: true"). */
  readonly listener?: string;
  /** More keys of the listener's tls block (TLS rows only). */
  readonly tls?: string;
  /** Keys of `limits` (perIp replaces the test's own, unlimited one). */
  readonly limits?: string;
  /** More top-level keys. */
  readonly top?: string;
}

interface Certs {
  readonly ca: TestCa;
  readonly server: Issued;
  readonly chat: Issued;
}

function yaml(backend: Backend, p: Parts, certs: Certs | undefined): string {
  const tls = certs === undefined ? '' : `, tls: { cert: ${certs.server.cert}, key: ${certs.server.key}${p.tls === undefined ? '' : `, ${p.tls}`} }`;
  const limits = [p.limits?.includes('perIp') ? '' : NO_PER_IP_LIMITS, p.limits ?? ''].filter((s) => s !== '').join(', ');
  return `
listeners: [{ address: 127.0.0.1:0${tls}${p.listener === undefined ? '' : `, ${p.listener}`} }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { ${limits} }
shutdown: { drainTimeout: 0 }
${p.top ?? ''}
`;
}

/** How a client reaches the listener: plain, over TLS, or behind a PROXY v1 header. */
type Reach = 'plain' | 'tls' | 'proxy';

interface Ctx {
  readonly gw: RunningGateway;
  readonly backend: Backend;
  readonly certs: Certs | undefined;
}

interface Row {
  readonly key: string;
  readonly tls?: boolean;
  readonly before: Parts;
  readonly after: Parts;
  /** How the connections opened before the reload come in (default: over TLS on TLS rows, else plain). */
  readonly reach?: Reach;
  /** What holds before the reload and must not after: shows the check below can fail. */
  readonly pre?: (c: Ctx) => Promise<void>;
  /** The key's effect on new connections. */
  readonly post: (c: Ctx) => Promise<void>;
  /** More than an echo from each connection opened before (their settings are the old ones). */
  readonly old?: (c: Ctx, open: readonly WebSocket[]) => Promise<void>;
}

const PROXY_V1 = 'PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n';
const BIG_HEAD = upgradeRequest('/', [`X-Pad: ${'a'.repeat(8 * 1024)}`]);
const BIG_POST = `POST /big HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(8 * 1024)}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
/** The old handshakeTimeout: a slow client must be cut well before it. */
const OLD_TIMEOUT_MS = 30_000;

async function openOld(c: Ctx, reach: Reach): Promise<WebSocket> {
  const port = c.gw.port;
  if (reach === 'tls') return openClient(`wss://localhost:${port}/`, { ca: c.certs!.ca.ca, perMessageDeflate: false });
  if (reach === 'plain') return openClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  return openClient(`ws://127.0.0.1:${port}/`, {
    perMessageDeflate: false,
    createConnection: () => {
      const s = netConnect(port, '127.0.0.1');
      s.write(PROXY_V1);
      return s;
    },
  });
}

/** Everything the gateway answers to `data` sent over TLS, until it closes (or `until` matches). */
function tlsExchange(c: Ctx, data: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port: c.gw.port, host: '127.0.0.1', servername: 'localhost', ca: c.certs!.ca.ca }, () => s.write(data));
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no end within 20 s; got ${JSON.stringify(text.slice(0, 200))}`));
    }, 20_000);
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(text);
    };
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (until?.test(text)) done();
    });
    s.on('close', done);
  });
}

/** Whether a TLS handshake with these options succeeds, and the certificate's common name. */
function tlsHandshake(c: Ctx, options: ConnectionOptions): Promise<string | false> {
  return new Promise((resolve) => {
    const s = tlsConnect({ port: c.gw.port, host: '127.0.0.1', servername: 'localhost', ca: c.certs!.ca.ca, ...options }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(typeof cn === 'string' ? cn : '');
    });
    s.on('error', () => resolve(false));
  });
}

/** How long `fn` took, and what it returned. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const at = Date.now();
  const out = await fn();
  return [out, Date.now() - at];
}

/** A raw connection that sends `data` (maybe nothing) and waits for the gateway to close it; ms until then. */
async function msUntilClosed(port: number, data: string): Promise<number> {
  const s: Socket = netConnect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  const at = Date.now();
  if (data !== '') s.write(data);
  const timer = setTimeout(() => s.destroy(), 20_000);
  await once(s, 'close');
  clearTimeout(timer);
  return Date.now() - at;
}

async function handshake(c: Ctx, extra: readonly string[] = []): Promise<number> {
  return statusOf(await rawExchange(c.gw.port, upgradeRequest('/', extra), /\r\n\r\n/));
}

/** Sessions of the gateway back to `n`: everything before has been counted and logged. */
function sessionsBackTo(c: Ctx, n: number): Promise<void> {
  return eventually(() => c.gw.gw.stats().sessions === n, 10_000, `sessions back to ${n}`);
}

/** Sends `n` messages at once; resolves with the close code, or 0 when all n came back. */
async function burst(ws: WebSocket, n: number, size = 8): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const onMessage = (): void => {
      if (++got < n) return;
      ws.off('message', onMessage);
      ws.off('close', onClose);
      resolve(0);
    };
    const onClose = (code: number): void => {
      ws.off('message', onMessage);
      resolve(code);
    };
    ws.on('message', onMessage);
    ws.once('close', onClose);
    for (let i = 0; i < n; i++) ws.send('x'.repeat(size));
  });
}

async function closeCode(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return -1;
  const [code] = (await once(ws, 'close')) as [number];
  return code;
}

const rows: Row[] = [
  {
    key: 'limits.maxHeaderBytes (an upgrade head, read by the gateway’s own reader)',
    before: { limits: 'maxHeaderBytes: 16KiB' },
    after: { limits: 'maxHeaderBytes: 4KiB' },
    pre: async (c) => assert.equal(statusOf(await rawExchange(c.gw.port, BIG_HEAD, /\r\n\r\n/)), 101),
    post: async (c) => assert.equal(statusOf(await rawExchange(c.gw.port, BIG_HEAD, /\r\n\r\n/)), 431),
  },
  {
    key: 'limits.maxHeaderBytes (a plain HTTP request, read by Node’s parser)',
    before: { limits: 'maxHeaderBytes: 16KiB' },
    after: { limits: 'maxHeaderBytes: 4KiB' },
    pre: async (c) => assert.equal(statusOf(await rawExchange(c.gw.port, BIG_POST, /\r\n\r\n/)), 200),
    post: async (c) => assert.equal(statusOf(await rawExchange(c.gw.port, BIG_POST, /\r\n\r\n/)), 431),
  },
  {
    key: 'limits.maxHeaderBytes (TLS listener)',
    tls: true,
    before: { limits: 'maxHeaderBytes: 16KiB' },
    after: { limits: 'maxHeaderBytes: 4KiB' },
    pre: async (c) => assert.equal(statusOf(await tlsExchange(c, BIG_HEAD, /\r\n\r\n/)), 101),
    post: async (c) => assert.equal(statusOf(await tlsExchange(c, BIG_HEAD, /\r\n\r\n/)), 431),
  },
  {
    key: 'limits.handshakeTimeout (a slow upgrade head)',
    before: { limits: `handshakeTimeout: ${OLD_TIMEOUT_MS}ms` },
    after: { limits: 'handshakeTimeout: 500ms' },
    post: async (c) => {
      const [answer, ms] = await timed(() => rawExchange(c.gw.port, 'GET / HTTP/1.1\r\nHost: localhost\r\n', undefined, 20_000));
      assert.equal(statusOf(answer), 408, answer);
      assert.ok(ms < OLD_TIMEOUT_MS / 3, `408 after ${ms} ms`);
    },
  },
  {
    key: 'limits.handshakeTimeout (a slow plain HTTP request, Node’s parser)',
    before: { limits: `handshakeTimeout: ${OLD_TIMEOUT_MS}ms` },
    after: { limits: 'handshakeTimeout: 500ms' },
    post: async (c) => {
      const [answer, ms] = await timed(() => rawExchange(c.gw.port, 'POST / HTTP/1.1\r\nHost: localhost\r\n', undefined, 20_000));
      assert.equal(statusOf(answer), 408, answer);
      assert.ok(ms < OLD_TIMEOUT_MS / 3, `408 after ${ms} ms`);
    },
  },
  {
    key: 'limits.handshakeTimeout (a TLS handshake that never starts)',
    tls: true,
    before: { limits: `handshakeTimeout: ${OLD_TIMEOUT_MS}ms` },
    after: { limits: 'handshakeTimeout: 500ms' },
    post: async (c) => {
      const ms = await msUntilClosed(c.gw.port, '');
      assert.ok(ms < OLD_TIMEOUT_MS / 3, `closed after ${ms} ms`);
    },
  },
  {
    key: 'limits.handshakeTimeout (a slow head over TLS)',
    tls: true,
    before: { limits: `handshakeTimeout: ${OLD_TIMEOUT_MS}ms` },
    after: { limits: 'handshakeTimeout: 500ms' },
    post: async (c) => {
      const [answer, ms] = await timed(() => tlsExchange(c, 'GET / HTTP/1.1\r\nHost: localhost\r\n'));
      assert.equal(statusOf(answer), 408, answer);
      assert.ok(ms < OLD_TIMEOUT_MS / 3, `408 after ${ms} ms`);
    },
  },
  {
    key: 'limits.handshakeTimeout (a PROXY header that never completes)',
    reach: 'proxy',
    before: { listener: 'proxyProtocol: true', limits: `handshakeTimeout: ${OLD_TIMEOUT_MS}ms` },
    after: { listener: 'proxyProtocol: true', limits: 'handshakeTimeout: 500ms' },
    post: async (c) => {
      const ms = await msUntilClosed(c.gw.port, 'PROXY TCP4 1.2.3.4');
      assert.ok(ms < OLD_TIMEOUT_MS / 3, `closed after ${ms} ms`);
    },
  },
  {
    key: 'listeners[].ipDeny',
    before: {},
    after: { listener: 'ipDeny: [127.0.0.1]' },
    pre: async (c) => assert.equal(await handshake(c), 101),
    post: async (c) => assert.equal(await rawExchange(c.gw.port, upgradeRequest()), '', 'closed without an answer'),
  },
  {
    key: 'listeners[].ipAllow',
    before: {},
    after: { listener: 'ipAllow: [10.0.0.0/8]' },
    post: async (c) => assert.equal(await rawExchange(c.gw.port, upgradeRequest()), '', 'closed without an answer'),
  },
  {
    key: 'listeners[].proxyProtocol off → on (in place)',
    before: {},
    after: { listener: 'proxyProtocol: true' },
    pre: async (c) => assert.equal(await handshake(c), 101),
    post: async (c) => {
      const answer = await rawExchange(c.gw.port, `${PROXY_V1}${upgradeRequest()}`, /\r\n\r\n/);
      assert.equal(statusOf(answer), 101, answer);
      assert.equal(c.backend.requests.at(-1)!.headers['x-forwarded-for'], '203.0.113.7');
      assert.equal(await rawExchange(c.gw.port, upgradeRequest()), '', 'no PROXY header: closed');
    },
  },
  {
    key: 'listeners[].proxyProtocol on → off (in place)',
    reach: 'proxy',
    before: { listener: 'proxyProtocol: true' },
    after: {},
    pre: async (c) => assert.equal(await rawExchange(c.gw.port, upgradeRequest()), ''),
    post: async (c) => {
      assert.equal(await handshake(c), 101);
      assert.equal(c.backend.requests.at(-1)!.headers['x-forwarded-for'], '127.0.0.1');
    },
  },
  {
    key: 'listeners[].tls.minVersion',
    tls: true,
    before: { tls: 'minVersion: TLSv1.2' },
    after: { tls: 'minVersion: TLSv1.3' },
    pre: async (c) => assert.equal(await tlsHandshake(c, { maxVersion: 'TLSv1.2' }), 'localhost'),
    post: async (c) => {
      assert.equal(await tlsHandshake(c, { maxVersion: 'TLSv1.2' }), false, 'a TLSv1.2-only client fails');
      assert.equal(await tlsHandshake(c, {}), 'localhost');
    },
  },
  {
    key: 'listeners[].tls.sni',
    tls: true,
    before: {},
    after: { tls: 'sni: [{ hosts: [chat.example.com], cert: CHAT_CERT, key: CHAT_KEY }]' },
    pre: async (c) => assert.equal(await tlsHandshake(c, { servername: 'chat.example.com', checkServerIdentity: () => undefined }), 'localhost'),
    post: async (c) => assert.equal(await tlsHandshake(c, { servername: 'chat.example.com' }), 'chat'),
  },
  {
    key: 'limits.idleTimeout (and the idle sweeper’s tick)',
    before: { limits: 'idleTimeout: 10m' },
    after: { limits: 'idleTimeout: 300ms' },
    pre: (c) => {
      assert.equal(sweeperTick(c), 1_000);
      return Promise.resolve();
    },
    post: async (c) => {
      // One tick serves every idle timeout: fine enough for the shortest.
      assert.equal(sweeperTick(c), 50);
      const ws = await openClient(c.gw.url, { perMessageDeflate: false });
      assert.equal(await closeCode(ws), 1001);
    },
    old: async () => {
      // Quiet for longer than the new timeout: the old one (10m) still holds them.
      await new Promise((r) => setTimeout(r, 1_200));
    },
  },
  {
    key: 'limits.maxLifetime',
    before: {},
    after: { limits: 'maxLifetime: 400ms' },
    post: async (c) => {
      const ws = await openClient(c.gw.url, { perMessageDeflate: false });
      assert.equal(await closeCode(ws), 1001);
    },
    old: () => new Promise((r) => setTimeout(r, 1_000)),
  },
  {
    key: 'limits.perIp.maxConnections',
    before: { limits: 'perIp: { maxConnections: 1000, handshakeRate: 0 }' },
    after: { limits: 'perIp: { maxConnections: 2, handshakeRate: 0 }' },
    pre: async (c) => assert.equal(await handshake(c), 101),
    post: async (c) => assert.equal(await handshake(c), 429),
  },
  {
    key: 'limits.perIp.handshakeRate and handshakeBurst',
    before: { limits: 'perIp: { maxConnections: 1000, handshakeRate: 0 }' },
    after: { limits: 'perIp: { maxConnections: 1000, handshakeRate: 1/m, handshakeBurst: 1 }' },
    post: async (c) => {
      assert.equal(await handshake(c), 101);
      assert.equal(await handshake(c), 429);
    },
  },
  {
    key: 'limits.maxMessageBytes',
    before: {},
    after: { limits: 'maxMessageBytes: 1KiB' },
    post: async (c) => {
      const ws = await openClient(c.gw.url, { perMessageDeflate: false });
      assert.equal(await burst(ws, 1, 4_096), 1009);
    },
    old: async (_c, open) => {
      for (const ws of open) assert.equal(await burst(ws, 1, 4_096), 0, 'a message over the new limit still passes');
    },
  },
  {
    key: 'limits.messageRate',
    before: {},
    after: { limits: 'messageRate: 2/s' },
    post: async (c) => {
      const ws = await openClient(c.gw.url, { perMessageDeflate: false });
      assert.equal(await burst(ws, 20), 1008);
    },
    old: async (_c, open) => {
      for (const ws of open) assert.equal(await burst(ws, 20), 0, 'twenty at once still pass');
    },
  },
  {
    key: 'relay.pingInterval',
    before: {},
    after: { top: 'relay: { pingInterval: 200ms }' },
    post: async (c) => {
      const ws = await openClient(c.gw.url, { perMessageDeflate: false });
      await once(ws, 'ping');
      ws.terminate();
    },
    old: async (_c, open) => {
      let pings = 0;
      for (const ws of open) ws.on('ping', () => pings++);
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(pings, 0, 'the old interval (30s) still holds them');
    },
  },
  {
    key: 'trustedProxies',
    before: {},
    after: { top: 'trustedProxies: [127.0.0.1]' },
    pre: async (c) => {
      assert.equal(await handshake(c, ['X-Forwarded-For: 203.0.113.5']), 101);
      assert.equal(c.backend.requests.at(-1)!.headers['x-forwarded-for'], '127.0.0.1');
    },
    post: async (c) => {
      assert.equal(await handshake(c, ['X-Forwarded-For: 203.0.113.5']), 101);
      assert.match(String(c.backend.requests.at(-1)!.headers['x-forwarded-for']), /^203\.0\.113\.5\b/);
    },
  },
  {
    key: 'log.accessLog',
    before: { top: 'log: { accessLog: false }' },
    after: { top: 'log: { accessLog: true }' },
    pre: async (c) => {
      const n = c.gw.gw.stats().sessions;
      (await openClient(c.gw.url)).close();
      await sessionsBackTo(c, n);
      assert.equal(c.gw.logs.filter((l) => l.msg === 'session closed').length, 0);
    },
    post: async (c) => {
      (await openClient(c.gw.url)).close();
      await eventually(() => c.gw.logs.some((l) => l.msg === 'session closed'), 10_000, 'an access log line');
    },
  },
];

function sweeperTick(c: Ctx): number {
  return (c.gw.gw as unknown as { sweeper: { tickMs: number } }).sweeper.tickMs;
}

/** Keys a running gateway cannot take on: the reload is refused, naming each, and nothing changes. */
const RESTART_ONLY: readonly (readonly [key: string, top: string])[] = [
  ['cluster.workers', 'cluster: { workers: 2 }'],
  ['cluster.redis', 'cluster: { redis: "redis://127.0.0.1:1" }'],
  ['cluster.onRedisError', 'cluster: { onRedisError: deny }'],
  ['log.file', `log: { file: ${join(tmpdir(), 'wsgate-reload-keys.log')} }`],
  ['log.format', 'log: { format: pretty }'],
  ['pidFile', `pidFile: ${join(tmpdir(), 'wsgate-reload-keys.pid')}`],
];

void describe('reload: every key it applies, one at a time, under open connections', { timeout: 120_000 }, () => {
  let backend: Backend;
  let certs: Certs | undefined;
  before(async () => {
    backend = await startBackend();
    if (NO_OPENSSL === false) {
      const ca = makeCa();
      certs = { ca, server: ca.issue('server', ['localhost', '127.0.0.1'], 'localhost'), chat: ca.issue('chat', ['chat.example.com'], 'chat') };
    }
  });
  after(async () => {
    await backend.close();
    certs?.ca.close();
  });

  const text = (p: Parts, tls: boolean): string => {
    const out = yaml(backend, p, tls ? certs : undefined);
    return certs === undefined ? out : out.replace('CHAT_CERT', certs.chat.cert).replace('CHAT_KEY', certs.chat.key);
  };

  for (const row of rows) {
    void it(row.key, { skip: row.tls === true ? NO_OPENSSL : false, timeout: 60_000 }, async () => {
      const tls = row.tls === true;
      const gw = await startGateway(text(row.before, tls));
      const c: Ctx = { gw, backend, certs };
      const open: WebSocket[] = [];
      try {
        for (let i = 0; i < 3; i++) open.push(await openOld(c, row.reach ?? (tls ? 'tls' : 'plain')));
        await row.pre?.(c);
        const result = await gw.gw.reload(parseConfig(text(row.after, tls), {}));
        assert.equal(result.ok, true, JSON.stringify(result));
        // Applied in place: the listener stayed bound, and nothing was refused meanwhile.
        assert.deepEqual(result.ok && [result.listenersAdded, result.listenersRemoved], [[], []]);
        assert.equal(gw.gw.addresses[0]!.port, gw.port);
        await row.post(c);
        await row.old?.(c, open);
        for (const [i, ws] of open.entries()) {
          assert.equal(ws.readyState, WebSocket.OPEN, `connection ${i} opened before the reload is still open`);
          assert.equal(await echo(ws, `still here ${i}`), `still here ${i}`);
        }
      } finally {
        for (const ws of open) ws.terminate();
        await gw.close();
      }
    });
  }

  for (const [key, top] of RESTART_ONLY) {
    void it(`${key}: the reload is refused, naming it; nothing changes`, async () => {
      const gw = await startGateway(text({}, false));
      const c: Ctx = { gw, backend, certs };
      const open: WebSocket[] = [];
      try {
        for (let i = 0; i < 2; i++) open.push(await openOld(c, 'plain'));
        // The same reload also lowers maxConnections to the two open: applied, it would refuse the next one.
        const result = await gw.gw.reload(parseConfig(text({ limits: 'maxConnections: 2', top }, false), {}));
        const problem = `${key}: cannot change while the gateway runs; restart it to apply`;
        assert.deepEqual(result, { ok: false, errors: [problem] });
        assert.ok(gw.logs.some((l) => l.level === 50 && l.msg === `reload rejected: ${problem}`));
        assert.equal(await handshake(c), 101, 'the running config (no maxConnections of 2) stays');
        for (const ws of open) assert.equal(await echo(ws, 'kept'), 'kept');
      } finally {
        for (const ws of open) ws.terminate();
        await gw.close();
      }
    });
  }
});

void describe('reload in cluster mode: the primary refuses what it cannot change', { timeout: 90_000 }, () => {
  void it('cluster.workers: refused by the primary, naming it; the workers keep the running config', async (t) => {
    const backend = await startBackend();
    const port = await freePort();
    const config = (workers: number, limits: string): string => `
listeners: [{ address: 127.0.0.1:${port} }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { ${NO_PER_IP_LIMITS}${limits} }
cluster: { workers: ${workers} }
shutdown: { drainTimeout: 0 }
`;
    const file = await configFile(config(2, ''));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const open: WebSocket[] = [];
    try {
      for (let i = 0; i < 2; i++) open.push(await openClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false }));
      await writeFile(file, config(3, ', maxConnections: 2'));
      gw.child.kill('SIGHUP');
      const problem = 'cluster.workers: cannot change while the gateway runs; restart it to apply';
      await printed(gw, 'reload rejected; the running configuration stays in place');
      const lines = jsonLines(gw.out());
      assert.ok(
        lines.some((l) => l.msg === `reload rejected: ${problem}` && l.worker === undefined),
        'the primary names the key',
      );
      assert.equal(lines.filter((l) => l.msg === 'config reloaded').length, 0, 'no worker reloaded');
      assert.equal(statusOf(await rawExchange(port, upgradeRequest(), /\r\n\r\n/)), 101);
      for (const ws of open) assert.equal(await echo(ws, 'kept'), 'kept');
    } finally {
      for (const ws of open) ws.terminate();
      gw.child.kill('SIGTERM');
      await Promise.race([gw.exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
      await backend.close();
    }
  });
});
