// Fixtures for tests in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against a wsgate TLS listener: a throwaway CA and server certificate,
// the browser told to trust that certificate by its public key, a test page served
// through the gateway (HTTP passthrough) that drives examples/browser/wsgate-reconnect.js,
// tagged echo backends, and readers of the page's event log. Each piece stands alone;
// startBrowserStack() puts them together.
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { SECRET, hs256 } from './auth-fixtures.js';
import { closeHttp, listenLocal, startGateway, type RunningGateway } from './helpers.js';
import { NO_PER_IP_LIMITS, admin } from './resilience-helpers.js';
import { makeCa, type TestCa } from './tls-fixtures.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ADMIN_TOKEN = 'browser-admin-s3cret';
/** The audience the gateway's JWT routes require. */
export const AUDIENCE = 'wsgate-browser-test';
/** The subprotocol the echo backends choose; a browser that offered protocols fails a 101 without one. */
export const SUBPROTOCOL = 'chat.v1';
const SNIPPET = new URL('../examples/browser/wsgate-reconnect.js', import.meta.url);

// ---- Certificates ----

export interface ServerCert {
  readonly ca: TestCa;
  readonly cert: string;
  readonly key: string;
  /** base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as --ignore-certificate-errors-spki-list takes it. */
  readonly spki: string;
  close(): void;
}

export function spkiHash(certFile: string): string {
  const der = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/** A new CA and a server certificate it signs, for 127.0.0.1 and localhost. */
export function makeServerCert(): ServerCert {
  const ca = makeCa('wsgate browser test CA');
  const { cert, key } = ca.issue('server', ['127.0.0.1', 'localhost']);
  return { ca, cert, key, spki: spkiHash(cert), close: () => ca.close() };
}

// ---- Backends ----

export interface TaggedBackend {
  readonly id: string;
  readonly url: string;
  /** The Sec-WebSocket-Protocol of every upgrade it accepted, in order ("" when none). */
  readonly protocols: string[];
  /** Every text message it received, in order. */
  readonly received: string[];
  close(): Promise<void>;
}

/** A ws echo backend that answers every message with "ID:message" and chooses SUBPROTOCOL when offered. */
export async function taggedEchoBackend(id: string): Promise<TaggedBackend> {
  const server = createServer((_req, res) => res.end(id));
  const wss = new WebSocketServer({ server, perMessageDeflate: false, handleProtocols: (p) => (p.has(SUBPROTOCOL) ? SUBPROTOCOL : false) });
  const protocols: string[] = [];
  const received: string[] = [];
  wss.on('connection', (ws, req) => {
    protocols.push(req.headers['sec-websocket-protocol'] ?? '');
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      if (isBinary) return ws.send(data, { binary: true });
      received.push(String(data));
      ws.send(`${id}:${String(data)}`);
    });
  });
  const port = await listenLocal(server);
  return { id, url: `ws://127.0.0.1:${port}`, protocols, received, close: () => closeHttp(server, wss) };
}

/** One entry of the page's event log (window.wsLog). */
export interface LogEntry {
  /** The name the test gave the connection. */
  readonly conn: string;
  readonly type: 'open' | 'message' | 'close' | 'error';
  readonly at: number;
  /** open: the subprotocol chosen. */
  readonly protocol?: string;
  /** message: the text received. */
  readonly data?: string;
  /** close: the code, and what the snippet does next. */
  readonly code?: number;
  readonly reconnect?: boolean;
  readonly delay?: number;
}

/**
 * The test page: it loads the snippet as a module and offers window.wsTest to the test:
 * open(name, path, protocols, options), send(name, data), close(name). Every callback of the
 * snippet lands in window.wsLog.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>wsgate browser test</title>
<link rel="icon" href="data:,">
<pre id="log"></pre>
<script type="module">
import { connect } from './wsgate-reconnect.js';
const log = (window.wsLog = []);
const conns = new Map();
function record(entry) {
  log.push({ ...entry, at: Date.now() });
  document.getElementById('log').textContent += JSON.stringify(entry) + '\\n';
}
window.wsTest = {
  open(name, path, protocols, options = {}) {
    const url = new URL(path, location.href.replace(/^http/, 'ws'));
    conns.set(name, connect(url.href, {
      ...options,
      protocols,
      onopen: (e) => record({ conn: name, type: 'open', protocol: e.target.protocol }),
      onmessage: (e) => record({ conn: name, type: 'message', data: String(e.data) }),
      onerror: () => record({ conn: name, type: 'error' }),
      onclose: (e, next) => record({ conn: name, type: 'close', code: e.code, reconnect: next.reconnect, delay: next.delay }),
    }));
  },
  send: (name, data) => conns.get(name).send(data),
  close: (name) => conns.get(name).close(),
};
window.wsTestReady = true;
</script>
</html>
`;

export interface PageServer {
  readonly url: string;
  /** Every request it answered. */
  readonly requests: IncomingMessage[];
  close(): Promise<void>;
}

/** An HTTP backend serving the test page at / and the snippet at /wsgate-reconnect.js (read at each request). */
export async function startPageServer(): Promise<PageServer> {
  const requests: IncomingMessage[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(req);
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE_HTML);
    } else if (path === '/wsgate-reconnect.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(readFileSync(SNIPPET));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  const port = await listenLocal(server);
  return { url: `http://127.0.0.1:${port}`, requests, close: () => closeHttp(server) };
}

// ---- The gateway ----

export interface TlsGatewayOptions {
  readonly cert: ServerCert;
  /** The page server's http:// URL: the catch-all route passes plain HTTP through to it. */
  readonly site: string;
  /** ws:// targets of upstream `echo` (route /ws, round-robin, drained at once) and of `limited` (route /limited). */
  readonly echo: readonly string[];
  /** Merged into the TLS listener's entry as they are, e.g. { http2: true }. */
  readonly listener?: Record<string, unknown>;
  /** Limits of route /limited (inspect mode). */
  readonly maxMessageBytes?: string;
  readonly messageRate?: string;
}

export interface TlsGateway extends RunningGateway {
  /** https://127.0.0.1:PORT */
  readonly origin: string;
  /** Drains (or undrains) target `index` of `upstream` through the admin API; throws unless 200. */
  drain(upstream: string, index: number, undrain?: boolean): Promise<void>;
}

/** The generated config: one TLS listener, an admin listener with a token, JWT (from Sec-WebSocket-Protocol) on the WebSocket routes. */
export function tlsGatewayConfig(o: TlsGatewayOptions): string {
  const listener = { address: '127.0.0.1:0', tls: { cert: o.cert.cert, key: o.cert.key }, ...o.listener };
  const targets = o.echo.map((url) => ({ url }));
  const auth = `{ jwt: { secret: "\${JWT_SECRET}", audience: ${AUDIENCE}, from: [protocol] } }`;
  return `
listeners: [${JSON.stringify(listener)}]
admin: { address: 127.0.0.1:0, token: "\${ADMIN_TOKEN}" }
routes:
  - { name: ws, match: { path: /ws }, upstream: echo, auth: ${auth} }
  - name: limited
    match: { path: /limited }
    upstream: limited
    auth: ${auth}
    limits: { maxMessageBytes: ${o.maxMessageBytes ?? '1KiB'}, messageRate: ${o.messageRate ?? '5/s'} }
  - { name: site, match: { path: / }, upstream: site }
upstreams:
  echo: { balance: round-robin, targets: ${JSON.stringify(targets)}, drainPeriod: 0 }
  limited: { targets: ${JSON.stringify(targets)} }
  site: { targets: [{ url: "${o.site}" }] }
limits: { ${NO_PER_IP_LIMITS} }
relay: { mode: inspect }
shutdown: { drainTimeout: 0 }
`;
}

export async function startTlsGateway(o: TlsGatewayOptions): Promise<TlsGateway> {
  const gw = await startGateway(tlsGatewayConfig(o), { JWT_SECRET: SECRET, ADMIN_TOKEN });
  return {
    ...gw,
    origin: `https://127.0.0.1:${gw.port}`,
    async drain(upstream, index, undrain = false) {
      const res = await admin(gw.gw, 'POST', `/api/upstreams/${upstream}/targets/${index}/${undrain ? 'undrain' : 'drain'}`, ADMIN_TOKEN);
      if (res.status !== 200) throw new Error(`${undrain ? 'undrain' : 'drain'} ${upstream}/${index}: ${res.status} ${JSON.stringify(res.body)}`);
    },
  };
}

/** A JWT the gateway's routes accept (HS256, audience AUDIENCE, five minutes). */
export function goodToken(sub = 'browser'): Promise<string> {
  return hs256({ aud: AUDIENCE, sub });
}

// ---- The browser ----

/**
 * Headless Chromium that trusts certificates with these public keys and no others: the SPKI list
 * needs no CA install and no package beyond chromium. playwright-core gives every launch a fresh
 * temporary profile (--user-data-dir), removed on close.
 */
export async function launchTrustingBrowser(spkis: readonly string[], extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...(spkis.length === 0 ? [] : [`--ignore-certificate-errors-spki-list=${spkis.join(',')}`]),
      ...extraArgs,
    ],
  });
}

export interface TestPage {
  readonly page: Page;
  /** Uncaught page errors, and console errors other than the failed handshakes a test expects (they stay in `console`). */
  readonly pageErrors: string[];
  readonly console: string[];
}

/** Opens the test page at `origin` and waits until its module script has run. */
export async function openTestPage(browser: Browser, origin: string, timeout = 20_000): Promise<TestPage> {
  const page = await browser.newPage();
  page.setDefaultTimeout(timeout);
  const pageErrors: string[] = [];
  const console: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.push(msg.text());
  });
  const res = await page.goto(`${origin}/`);
  if (res === null || res.status() !== 200) throw new Error(`the test page answered ${res?.status()}`);
  await page.waitForFunction(() => (globalThis as unknown as { wsTestReady?: boolean }).wsTestReady === true);
  return { page, pageErrors, console };
}

type WsTest = {
  open(name: string, path: string, protocols: readonly string[], options?: Record<string, unknown>): void;
  send(name: string, data: string): boolean;
  close(name: string): void;
};

/** Opens connection `name` to `path` on the page's origin, with the snippet's `options` (numbers, strings, booleans, arrays). */
export async function openConn(page: Page, name: string, path: string, protocols: readonly string[], options: Record<string, unknown> = {}): Promise<void> {
  await page.evaluate(([n, p, pr, o]) => (globalThis as unknown as { wsTest: WsTest }).wsTest.open(n, p, pr, o), [name, path, protocols, options] as const);
}

/** Sends each of `messages` on connection `name`, in one task; resolves with how many the snippet accepted. */
export async function sendOn(page: Page, name: string, ...messages: string[]): Promise<number> {
  return page.evaluate(([n, m]) => m.filter((d) => (globalThis as unknown as { wsTest: WsTest }).wsTest.send(n, d)).length, [name, messages] as const);
}

export async function closeConn(page: Page, name: string): Promise<void> {
  await page.evaluate((n) => (globalThis as unknown as { wsTest: WsTest }).wsTest.close(n), name);
}

/** The page's event log, optionally of one connection only. */
export async function pageLog(page: Page, conn?: string): Promise<LogEntry[]> {
  const all = await page.evaluate(() => (globalThis as unknown as { wsLog: LogEntry[] }).wsLog);
  return conn === undefined ? all : all.filter((e) => e.conn === conn);
}

/**
 * Polls the log of `conn` until `done` holds for it, and returns it; fails after `timeout`
 * showing the log as it was.
 */
export async function waitForLog(page: Page, conn: string, done: (log: LogEntry[]) => boolean, what: string, timeout = 20_000): Promise<LogEntry[]> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const log = await pageLog(page, conn);
    if (done(log)) return log;
    if (Date.now() > deadline) throw new Error(`${conn}: ${what} not within ${timeout}ms; the log: ${JSON.stringify(log)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The entries of `type` in a connection's log. */
export const entries = (log: readonly LogEntry[], type: LogEntry['type']): LogEntry[] => log.filter((e) => e.type === type);

// ---- Everything together ----

export interface BrowserStack {
  readonly cert: ServerCert;
  readonly backends: readonly TaggedBackend[];
  readonly site: PageServer;
  readonly gw: TlsGateway;
  readonly browser: Browser;
  readonly page: TestPage;
  close(): Promise<void>;
}

/** Two tagged backends ("a", "b"), the page server, the TLS gateway (with `listener` options), Chromium and the page. */
export async function startBrowserStack(options: Pick<TlsGatewayOptions, 'listener' | 'maxMessageBytes' | 'messageRate'> = {}): Promise<BrowserStack> {
  const opened: { close(): unknown }[] = [];
  try {
    const cert = makeServerCert();
    opened.push(cert);
    const backends = [await taggedEchoBackend('a'), await taggedEchoBackend('b')];
    opened.push(...backends);
    const site = await startPageServer();
    opened.push(site);
    const gw = await startTlsGateway({ ...options, cert, site: site.url, echo: backends.map((b) => b.url) });
    opened.push(gw);
    const browser = await launchTrustingBrowser([cert.spki]);
    opened.push(browser);
    const page = await openTestPage(browser, gw.origin);
    const close = async (): Promise<void> => {
      // The browser first: its connections then end as the gateway stops, not the other way round.
      for (const c of opened.reverse()) await Promise.resolve(c.close()).catch(() => {});
    };
    return { cert, backends, site, gw, browser, page, close };
  } catch (err) {
    for (const c of opened.reverse()) await Promise.resolve(c.close()).catch(() => {});
    throw err;
  }
}
