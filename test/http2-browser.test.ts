// A real browser over HTTP/2: headless Chromium loads the test page from wsgate's TLS listener
// with `http2: true` (ALPN h2, HTTP passthrough over h2), then opens its WebSocket through the
// page's own HTTP/2 connection (extended CONNECT, RFC 8441). The metrics show it rode HTTP/2:
// wsgate_http2_websockets_total counts it, and no HTTP/1.1 upgrade is counted beside it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NO_OPENSSL } from './tls-fixtures.js';
import { scrape } from './metrics-fixtures.js';
import { eventually } from './helpers.js';
import { SUBPROTOCOL, closeConn, entries, goodToken, openConn, sendOn, startBrowserStack, waitForLog, type BrowserStack } from './browser-fixtures.js';

void describe('a browser through wsgate over HTTP/2', { skip: NO_OPENSSL }, () => {
  let stack: BrowserStack;
  before(async () => {
    stack = await startBrowserStack({ listener: { http2: true } });
  });
  after(async () => {
    await stack?.close();
  });

  void it('loads the page over h2 (passthrough on HTTP/2 streams)', async () => {
    const { page } = stack.page;
    // In the page: the navigation entry's nextHopProtocol (Node's types do not know browser entry types).
    const protocol = await page.evaluate(
      () => (performance.getEntriesByType('navigation' as never)[0] as unknown as { nextHopProtocol: string }).nextHopProtocol,
    );
    assert.equal(protocol, 'h2');
    for (const r of stack.site.requests) assert.equal(r.headers['x-forwarded-proto'], 'https');
  });

  void it('opens its WebSocket on the page’s HTTP/2 connection: counted as an HTTP/2 WebSocket, not an HTTP/1.1 upgrade', async () => {
    const { page } = stack.page;
    const before = await scrape(stack.gw.gw);
    const token = await goodToken('h2-browser');
    await openConn(page, 'h2', '/ws', [SUBPROTOCOL, token]);
    const opened = await waitForLog(page, 'h2', (l) => entries(l, 'open').length === 1, 'open');
    assert.equal(entries(opened, 'open')[0]!.protocol, SUBPROTOCOL, 'the subprotocol chosen upstream comes back on the 200');
    assert.equal(await sendOn(page, 'h2', 'over h2'), 1);
    const log = await waitForLog(page, 'h2', (l) => entries(l, 'message').length === 1, 'the echo');
    assert.match(entries(log, 'message')[0]!.data!, /^[ab]:over h2$/);

    const after = await scrape(stack.gw.gw);
    const h2 = (after.get('wsgate_http2_websockets_total', { route: 'ws' }) ?? 0) - (before.get('wsgate_http2_websockets_total', { route: 'ws' }) ?? 0);
    const all = after.sum('wsgate_connections_total', { route: 'ws' }) - before.sum('wsgate_connections_total', { route: 'ws' });
    assert.equal(h2, 1, 'one WebSocket over HTTP/2');
    assert.equal(all, 1, 'and no HTTP/1.1 upgrade beside it');

    await closeConn(page, 'h2');
    await waitForLog(page, 'h2', (l) => entries(l, 'close').length === 1, 'the close');
    await eventually(() => stack.gw.logs.some((l) => l.msg === 'session closed' && l.route === 'ws' && l.protocol === 'h2'), 10_000, 'the access log line');
  });
});
