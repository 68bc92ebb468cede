// A real browser end to end: headless Chromium loads a page over https from wsgate's TLS
// listener (HTTP passthrough to a page server), opens wss:// with a JWT in
// Sec-WebSocket-Protocol through examples/browser/wsgate-reconnect.js, and sees what
// wsgate's close codes do to it: a drain (1012) moves it to the other backend, the
// inspect-mode limits close it (1009, 1008), a bad token fails the handshake (1006).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hs256 } from './auth-fixtures.js';
import { NO_OPENSSL } from './tls-fixtures.js';
import {
  AUDIENCE,
  SUBPROTOCOL,
  closeConn,
  entries,
  goodToken,
  launchTrustingBrowser,
  openConn,
  sendOn,
  startBrowserStack,
  waitForLog,
  type BrowserStack,
  type LogEntry,
} from './browser-fixtures.js';

const lastClose = (log: readonly LogEntry[]): LogEntry | undefined => entries(log, 'close').at(-1);

void describe('a browser through wsgate', { skip: NO_OPENSSL }, () => {
  let stack: BrowserStack;
  /** Every text message the backends received. */
  const received = (): string[] => stack.backends.flatMap((b) => b.received);
  before(async () => {
    // HTTP/1.1 here (the page and its WebSocket on their own connections); test/http2-browser.test.ts runs the page over HTTP/2.
    stack = await startBrowserStack({ listener: { http2: false }, maxMessageBytes: '1KiB', messageRate: '5/s' });
  });
  after(async () => {
    await stack?.close();
  });

  void it('loads the page and the snippet over https, through the gateway, trusting only the test certificate', async () => {
    const { page } = stack.page;
    assert.equal(new URL(page.url()).protocol, 'https:');
    const paths = stack.site.requests.map((r) => r.url);
    assert.ok(paths.includes('/') && paths.includes('/wsgate-reconnect.js'), JSON.stringify(paths));
    for (const r of stack.site.requests) assert.equal(r.headers['x-forwarded-proto'], 'https', `${r.url} went through the TLS listener`);
    // The page's own fetch sees the same certificate: trusted by its SPKI, no interstitial.
    assert.equal(await page.evaluate(async () => (await fetch('/wsgate-reconnect.js')).status), 200);
  });

  void it('a browser launched without the SPKI flag refuses the certificate: the trust comes from the flag alone', async () => {
    const untrusting = await launchTrustingBrowser([]);
    try {
      const page = await untrusting.newPage();
      await assert.rejects(page.goto(`${stack.gw.origin}/`, { timeout: 20_000 }), /ERR_CERT_AUTHORITY_INVALID/);
    } finally {
      await untrusting.close();
    }
  });

  void it('a drained backend closes its clients with 1012; the snippet reconnects to the other backend after a short jitter', async () => {
    const { page } = stack.page;
    const token = await goodToken('alice');
    await openConn(page, 'main', '/ws', [SUBPROTOCOL, token], { restartJitter: [50, 300] });
    await waitForLog(page, 'main', (l) => entries(l, 'open').length === 1, 'open');
    assert.equal(await sendOn(page, 'main', 'one'), 1);
    const first = await waitForLog(page, 'main', (l) => entries(l, 'message').length === 1, 'the first echo');
    const reply = entries(first, 'message')[0]!.data!;
    const [drained, other] = reply === 'a:one' ? ['a', 'b'] : ['b', 'a'];
    assert.equal(reply, `${drained}:one`, 'the echo is tagged by the backend that answered');
    assert.equal(entries(first, 'open')[0]!.protocol, SUBPROTOCOL);
    assert.ok(
      stack.backends.every((b) => b.protocols.every((p) => p === SUBPROTOCOL)),
      'the token is taken out of Sec-WebSocket-Protocol before the backend',
    );

    await stack.gw.drain('echo', drained === 'a' ? 0 : 1);
    try {
      const log = await waitForLog(page, 'main', (l) => entries(l, 'open').length === 2, 'the reconnect after the drain');
      const close = lastClose(log)!;
      assert.equal(close.code, 1012);
      assert.equal(close.reconnect, true);
      assert.ok(close.delay! >= 50 && close.delay! <= 300, `restart jitter, not a backoff: ${close.delay}`);
      assert.equal(await sendOn(page, 'main', 'two'), 1);
      const after = await waitForLog(page, 'main', (l) => entries(l, 'message').length === 2, 'the echo after the reconnect');
      assert.deepEqual(
        after.map((e) => e.type + (e.code ?? '') + (e.data === undefined ? '' : ` ${e.data}`)),
        ['open', `message ${drained}:one`, 'close1012', 'open', `message ${other}:two`],
      );
    } finally {
      await closeConn(page, 'main');
      await stack.gw.drain('echo', drained === 'a' ? 0 : 1, true);
    }
  });

  void it('a message over maxMessageBytes gets 1009; the snippet backs off, then reconnects', async () => {
    const { page } = stack.page;
    await openConn(page, 'big', '/limited', [SUBPROTOCOL, await goodToken()], { backoffBase: 200, backoffMax: 1000 });
    await waitForLog(page, 'big', (l) => entries(l, 'open').length === 1, 'open');
    assert.equal(await sendOn(page, 'big', 'small'), 1);
    await waitForLog(page, 'big', (l) => entries(l, 'message').length === 1, 'the echo of a small message');
    assert.equal(await sendOn(page, 'big', 'x'.repeat(4096)), 1);
    const log = await waitForLog(page, 'big', (l) => entries(l, 'open').length === 2, 'the reconnect after 1009');
    await closeConn(page, 'big');
    const close = lastClose(log)!;
    assert.equal(close.code, 1009);
    assert.equal(close.reconnect, true);
    assert.ok(close.delay! >= 100 && close.delay! <= 200, `the first backoff is between half and all of backoffBase: ${close.delay}`);
    assert.ok(
      received().every((m) => m.length < 4096),
      'the big message never reached a backend',
    );
  });

  void it('messages over messageRate get 1008; with stopOnPolicy the snippet does not come back', async () => {
    const { page } = stack.page;
    await openConn(page, 'rate', '/limited', [SUBPROTOCOL, await goodToken()], { stopOnPolicy: true, backoffBase: 200 });
    await waitForLog(page, 'rate', (l) => entries(l, 'open').length === 1, 'open');
    assert.equal(await sendOn(page, 'rate', 'rate-first'), 1);
    await waitForLog(page, 'rate', (l) => entries(l, 'message').length === 1, 'the echo of one message');
    const burst = Array.from({ length: 30 }, (_, i) => `rate-${i}`);
    assert.equal(await sendOn(page, 'rate', ...burst), 30);
    const log = await waitForLog(page, 'rate', (l) => lastClose(l) !== undefined, 'the close');
    const close = lastClose(log)!;
    assert.equal(close.code, 1008);
    assert.equal(close.reconnect, false);
    const forwarded = received().filter((m) => /^rate-\d+$/.test(m)).length;
    assert.ok(forwarded >= 1 && forwarded < 30, `the burst was cut short: ${forwarded} of 30 reached the backend`);
  });

  const refused: [string, () => Promise<string[]>, string][] = [
    ['no token', async () => [SUBPROTOCOL], 'AUTH_MISSING'],
    ['a forged token', async () => [SUBPROTOCOL, await hs256({ aud: AUDIENCE }, { secret: 'not-the-gateway-secret-not-the-gateway' })], 'AUTH_INVALID'],
  ];
  for (const [what, protocols, code] of refused) {
    void it(`${what}: the handshake gets 401 and the page sees an error and 1006; maxRetries ends the retries`, async () => {
      const { page } = stack.page;
      const name = `refused-${code}`;
      const rejectedBefore = stack.gw.logs.filter((l) => l.msg === 'handshake rejected' && l.code === code).length;
      await openConn(page, name, '/ws', await protocols(), { backoffBase: 100, maxRetries: 1 });
      const log = await waitForLog(page, name, (l) => lastClose(l)?.reconnect === false, 'giving up');
      assert.deepEqual(
        log.map((e) => e.type + (e.code ?? '') + (e.reconnect === undefined ? '' : ` ${e.reconnect}`)),
        ['error', 'close1006 true', 'error', 'close1006 false'],
        'one backoff retry, then the snippet gives up',
      );
      const rejected = stack.gw.logs.filter((l) => l.msg === 'handshake rejected' && l.code === code);
      assert.equal(rejected.length - rejectedBefore, 2, 'both attempts were refused by the gateway');
      assert.ok(rejected.every((l) => l.status === 401));
    });
  }

  void it('no page errors', () => {
    assert.deepEqual(stack.page.pageErrors, []);
  });
});
