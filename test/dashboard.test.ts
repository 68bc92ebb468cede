// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against a real gateway with an admin token and two ws backends.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchTrustingBrowser } from './browser-fixtures.js';
import { rawExchange, startGateway, upgradeRequest, type RunningGateway } from './helpers.js';
import { NO_PER_IP_LIMITS, openTagged, switchableBackend, type SwitchableBackend, type TaggedClient } from './resilience-helpers.js';

const TOKEN = 'dashboard-s3cret';
const WAIT = 20_000;
// The picture in the docs is refreshed on request only: a test run must not change tracked files.
const SCREENSHOT = process.env.UPDATE_DASHBOARD_PNG === '1' ? new URL('../docs/dashboard.png', import.meta.url).pathname : undefined;

function config(targets: readonly string[]): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: "\${ADMIN_TOKEN}" }
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    balance: round-robin
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
    drainPeriod: 200ms
relay: { mode: inspect }
shutdown: { drainTimeout: 0 }
limits: { ${NO_PER_IP_LIMITS} }
`;
}

/** Polls `read` every 100 ms until `ok` holds; after `timeout` fails saying what it last read. */
async function poll<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeout = WAIT): Promise<void> {
  const deadline = Date.now() + timeout;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (ok(last)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout}ms; last saw ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the element's text (trimmed) matches `test`. */
async function textMatches(page: Page, selector: string, test: RegExp, timeout = WAIT): Promise<void> {
  const read = async (): Promise<string> =>
    (
      (await page
        .locator(selector)
        .textContent({ timeout: 1_000 })
        .catch(() => null)) ?? ''
    ).trim();
  await poll(read, (text) => test.test(text), `${selector} to match ${String(test)}`, timeout);
}

/** Waits until `count` elements match `selector`. */
async function rowCount(page: Page, selector: string, count: number): Promise<void> {
  await poll(
    () => page.locator(selector).count(),
    (n) => n === count,
    `${count} × ${selector}`,
  );
}

/** Resolves with the close code, or rejects after `timeoutMs`. */
async function closedWithin(client: TaggedClient, timeoutMs = WAIT): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`client on ${client.backend} not closed within ${timeoutMs}ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.closedP, timeout]);
    return client.closed!.code;
  } finally {
    clearTimeout(timer);
  }
}

void describe('dashboard', () => {
  let a: SwitchableBackend;
  let b: SwitchableBackend;
  let gw: RunningGateway;
  let browser: Browser;
  let page: Page;
  let adminUrl: string;
  const clients: TaggedClient[] = [];
  /** Console errors, page errors and failed requests; the 401s before the token was entered are expected. */
  const problems: string[] = [];
  let tokenEntered = false;

  async function open(n: number): Promise<TaggedClient[]> {
    const opened: TaggedClient[] = [];
    for (let i = 0; i < n; i++) opened.push(await openTagged(gw.url));
    clients.push(...opened);
    return opened;
  }

  before(async () => {
    a = await switchableBackend('a');
    b = await switchableBackend('b');
    gw = await startGateway(config([a.url, b.url]), { ADMIN_TOKEN: TOKEN });
    adminUrl = `http://127.0.0.1:${gw.gw.adminAddress!.port}`;
    browser = await launchTrustingBrowser([]);
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(WAIT);
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const expected = !tokenEntered && /status of 401/.test(msg.text()) && msg.location().url.startsWith(`${adminUrl}/api/`);
      if (!expected) problems.push(`console: ${msg.text()} (${msg.location().url})`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (req) => problems.push(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
  });

  after(async () => {
    for (const c of clients) c.ws.terminate();
    await browser?.close().catch(() => {});
    await gw?.close();
    await a?.close();
    await b?.close();
  });

  void it('serves the page and its files from the admin listener, with a strict CSP and no cache', async () => {
    const files: [string, RegExp][] = [
      ['/', /^text\/html/],
      ['/dashboard.js', /^text\/javascript/],
      ['/dashboard.css', /^text\/css/],
      ['/vendor/uPlot.iife.min.js', /^text\/javascript/],
      ['/vendor/uPlot.min.css', /^text\/css/],
    ];
    for (const [path, type] of files) {
      const res = await fetch(adminUrl + path);
      const body = await res.text();
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type') ?? '', type, path);
      assert.equal(res.headers.get('cache-control'), 'no-cache', path);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'.*script-src 'self'/, path);
      assert.ok(body.length > 100, path);
      const again = await fetch(adminUrl + path, { headers: { 'if-none-match': res.headers.get('etag')! } });
      assert.equal(again.status, 304, `${path} revalidated`);
    }
    const head = await fetch(`${adminUrl}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const html = await (await fetch(`${adminUrl}/`)).text();
    assert.doesNotMatch(html, /<script>|<script[^>]*>[^<]|https?:\/\//, 'no inline script, nothing from another host');
  });

  void it('loads without errors and asks for the token once', async () => {
    await page.goto(`${adminUrl}/`, { timeout: WAIT });
    await page.locator('#token-form').waitFor({ state: 'visible' });
    tokenEntered = true;
    await page.fill('#token', TOKEN);
    await page.click('#token-form button[type=submit]');
    await page.locator('#token-form').waitFor({ state: 'hidden' });
    await textMatches(page, '#status', /^live$/);
    await textMatches(page, '#connection-count', /^0$/);
    assert.equal(await page.evaluate("sessionStorage.getItem('wsgate.adminToken')"), TOKEN);
    assert.deepEqual(problems, []);
  });

  void it('follows the connections that clients open and close', async () => {
    const three = await open(3);
    await textMatches(page, '#active', /^3$/);
    await rowCount(page, '#connections tbody tr', 3);
    await textMatches(page, '#upstreams', /ws:\/\/127\.0\.0\.1/);
    for (const c of three.slice(0, 2)) c.ws.close(1000);
    await Promise.all(three.slice(0, 2).map((c) => closedWithin(c)));
    await textMatches(page, '#active', /^1$/);
    await rowCount(page, '#connections tbody tr', 1);
    three[2]!.ws.close(1000);
    await closedWithin(three[2]!);
    await textMatches(page, '#active', /^0$/);
    assert.deepEqual(problems, []);
  });

  void it("Drain closes the target's clients with 1012 and shows it draining; Undrain restores it", async () => {
    const opened = await open(4);
    const onA = opened.filter((c) => c.backend === 'a');
    const onB = opened.filter((c) => c.backend === 'b');
    assert.equal(onA.length, 2);
    const rowA = page.locator('#upstreams tbody tr', { hasText: a.url });
    await textMatches(page, '#active', /^4$/);
    await rowA.getByRole('button', { name: 'Drain', exact: true }).click();
    assert.deepEqual(await Promise.all(onA.map((c) => closedWithin(c))), [1012, 1012]);
    await textMatches(page, `#upstreams tbody tr[data-key="t:${gw.gw.upstreamStatus()[0]!.targets[0]!.id}"]`, /draining/);
    await textMatches(page, '#active', /^2$/);
    for (const c of onB) assert.equal(c.closed, undefined, 'the other target keeps its clients');

    await rowA.getByRole('button', { name: 'Undrain', exact: true }).click();
    await textMatches(page, `#upstreams tbody tr[data-key="t:${gw.gw.upstreamStatus()[0]!.targets[0]!.id}"]`, /active/);
    assert.equal(gw.gw.upstreamStatus()[0]!.targets[0]!.drained, false);
    for (const c of onB) c.ws.close(1000);
    await Promise.all(onB.map((c) => closedWithin(c)));
    await textMatches(page, '#active', /^0$/);
    assert.deepEqual(problems, []);
  });

  void it('Close on a connection in the list closes that client', async () => {
    const [first] = await open(1);
    await rowCount(page, '#connections tbody tr', 1);
    const [second] = await open(1);
    await rowCount(page, '#connections tbody tr', 2);
    // The list is in the order the connections began: the first row is the first client.
    await page.locator('#connections tbody tr').first().getByRole('button', { name: 'Close' }).click();
    await closedWithin(first!);
    await rowCount(page, '#connections tbody tr', 1);
    await textMatches(page, '#active', /^1$/);
    assert.equal(second!.closed, undefined, 'only that one');
    second!.ws.close(1000);
    await closedWithin(second!);
    assert.deepEqual(problems, []);
  });

  void it('shows live traffic (and, with UPDATE_DASHBOARD_PNG=1, writes docs/dashboard.png)', async () => {
    // A few rejected handshakes, a few closes with different codes, then six clients chatting.
    for (let i = 0; i < 3; i++) await rawExchange(gw.port, upgradeRequest('/', []).replace(/Sec-WebSocket-Key: .*\r\n/, ''), /\r\n\r\n/);
    for (const code of [1000, 1000, 4000]) {
      const [c] = await open(1);
      c!.ws.close(code);
      await closedWithin(c!);
    }
    const chatting = await open(6);
    let n = 0;
    const timer = setInterval(() => {
      for (const c of chatting) if (c.ws.readyState === c.ws.OPEN) c.ws.send(`message ${n++} ${'x'.repeat(n % 200)}`);
    }, 50);
    try {
      await textMatches(page, '#active', /^6$/);
      await textMatches(page, '#message-rate', /^[1-9]/);
      await textMatches(page, '#byte-rate', /^[1-9].* (B|KiB|MiB)$/);
      await textMatches(page, '#latency', /ms \/ .*ms$/);
      await rowCount(page, '#connections tbody tr', 6);
      const invalid = page.locator('#rejections tbody tr', { hasText: 'invalid' });
      await invalid.locator('td').nth(2).filter({ hasText: /^3$/ }).waitFor();
      if (SCREENSHOT !== undefined) {
        // Let the charts gather a few seconds of history for the picture (not an assertion).
        await new Promise((r) => setTimeout(r, 8_000));
        await page.mouse.move(1, 1);
        await page.evaluate('window.scrollTo(0, 0)');
        await page.screenshot({ path: SCREENSHOT, fullPage: false });
      }
    } finally {
      clearInterval(timer);
    }
    assert.deepEqual(problems, []);
  });
});
