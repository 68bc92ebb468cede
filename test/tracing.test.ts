import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import {
  eventually,
  openClient,
  rawExchange,
  rawServer,
  readHead,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  type RunningGateway,
} from './helpers.js';

// W3C trace context and X-Request-Id on the WebSocket handshake (docs/observability.md, "Logs and tracing").

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function parts(value: string | string[] | undefined): { trace: string; parent: string; flags: string } {
  const m = typeof value === 'string' ? TRACEPARENT.exec(value) : null;
  assert.ok(m, `a version-00 traceparent: ${String(value)}`);
  return { trace: m[1]!, parent: m[2]!, flags: m[3]! };
}

/** Opens a session with these headers, closes it, and returns what the backend saw and the access-log line. */
async function session(
  fx: { backend: Backend; gw: RunningGateway },
  headers: Record<string, string>,
): Promise<{ req: IncomingMessage; line: Record<string, unknown> }> {
  const before = fx.backend.requests.length;
  const ws = await openClient(`${fx.gw.url}/app`, { headers });
  assert.equal(fx.backend.requests.length, before + 1);
  const req = fx.backend.requests[before]!;
  ws.close();
  await once(ws, 'close');
  const id = req.headers['x-request-id'];
  let line: Record<string, unknown> | undefined;
  await eventually(() => (line = fx.gw.logs.find((l) => l.msg === 'session closed' && l.requestId === id)) !== undefined, 10_000, 'the access-log line');
  return { req, line: line! };
}

void describe('trace context on the handshake', () => {
  const fx = {} as { backend: Backend; gw: RunningGateway };
  before(async () => {
    fx.backend = await startBackend();
    fx.gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: app, match: { path: /app }, upstream: app }
  - { name: strict, match: { path: /strict }, upstream: app, allowedOrigins: ["https://ok.example.com"] }
  - { name: keyed, match: { path: /keyed }, upstream: app, auth: { apiKeys: { keys: ["the-key"] } } }
upstreams: { app: { targets: [{ url: "${fx.backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await fx.gw.close();
    await fx.backend.close();
  });

  void it("continues a client's valid trace: same trace id and flags, a new span id, tracestate kept", async () => {
    const { req, line } = await session(fx, { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' });
    const p = parts(req.headers.traceparent);
    assert.equal(p.trace, TRACE);
    assert.equal(p.flags, '01');
    assert.notEqual(p.parent, PARENT);
    assert.notEqual(p.parent, '0'.repeat(16));
    assert.equal(req.headers.tracestate, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    assert.match(String(req.headers['x-request-id']), /^[0-9a-f]{32}$/);
    assert.equal(line.trace, TRACE);
    assert.equal(line.requestId, req.headers['x-request-id']);
    assert.equal(line.status, 101);
  });

  void it('keeps unsampled flags as they are', async () => {
    const { req } = await session(fx, { traceparent: `00-${TRACE}-${PARENT}-00` });
    assert.equal(parts(req.headers.traceparent).flags, '00');
  });

  void it('without a traceparent, starts a trace: a valid new traceparent (flags 01) and an X-Request-Id', async () => {
    const { req, line } = await session(fx, {});
    const p = parts(req.headers.traceparent);
    assert.notEqual(p.trace, '0'.repeat(32));
    assert.notEqual(p.parent, '0'.repeat(16));
    assert.equal(p.flags, '01');
    assert.match(String(req.headers['x-request-id']), /^[0-9a-f]{32}$/);
    assert.equal(req.headers.tracestate, undefined);
    assert.equal(line.trace, p.trace);
    assert.equal(line.requestId, req.headers['x-request-id']);
  });

  void it("passes the client's X-Request-Id unchanged", async () => {
    const { req, line } = await session(fx, { 'X-Request-Id': 'f47ac10b-58cc-4372-a567-0e02b2c3d479' });
    assert.equal(req.headers['x-request-id'], 'f47ac10b-58cc-4372-a567-0e02b2c3d479');
    assert.equal(line.requestId, 'f47ac10b-58cc-4372-a567-0e02b2c3d479');
  });

  void it('replaces an X-Request-Id that is not a sane token', async () => {
    const { req } = await session(fx, { 'X-Request-Id': 'x'.repeat(201) });
    assert.match(String(req.headers['x-request-id']), /^[0-9a-f]{32}$/);
  });

  const invalid: [string, string][] = [
    ['uppercase hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['garbage', 'not a traceparent'],
  ];
  for (const [name, value] of invalid) {
    void it(`replaces an invalid traceparent (${name}) with a new trace, and drops its tracestate`, async () => {
      const { req, line } = await session(fx, { traceparent: value, tracestate: 'congo=t61rcWkgMzE' });
      const p = parts(req.headers.traceparent);
      assert.notEqual(p.trace, TRACE);
      assert.equal(p.flags, '01');
      assert.equal(req.headers.tracestate, undefined);
      assert.equal(line.trace, p.trace);
    });
  }

  void it('continues a higher version by its prefix, sent on as version 00', async () => {
    const { req } = await session(fx, { traceparent: `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`, tracestate: 'congo=t61rcWkgMzE' });
    assert.equal(parts(req.headers.traceparent).trace, TRACE);
    assert.equal(req.headers.tracestate, 'congo=t61rcWkgMzE');
  });

  void it("a handshake refused for no route (404) logs the client's trace id and request id", async () => {
    const answer = await rawExchange(fx.gw.port, upgradeRequest('/nowhere', [`traceparent: 00-${TRACE}-${PARENT}-01`, 'X-Request-Id: req-404']));
    assert.equal(statusOf(answer), 404, answer);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'handshake rejected' && l.requestId === 'req-404'), 5_000, 'the rejection line');
    const line = fx.gw.logs.find((l) => l.msg === 'handshake rejected' && l.requestId === 'req-404')!;
    assert.equal(line.trace, TRACE);
    assert.equal(line.status, 404);
  });

  void it("a handshake refused for its Origin (403) logs the client's trace id", async () => {
    const answer = await rawExchange(
      fx.gw.port,
      upgradeRequest('/strict', [`traceparent: 00-${TRACE}-${PARENT}-01`, 'Origin: https://evil.example.com', 'X-Request-Id: req-403']),
    );
    assert.equal(statusOf(answer), 403, answer);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'handshake rejected' && l.requestId === 'req-403'), 5_000, 'the rejection line');
    const line = fx.gw.logs.find((l) => l.msg === 'handshake rejected' && l.requestId === 'req-403')!;
    assert.equal(line.trace, TRACE);
    assert.equal(line.code, 'ORIGIN_FORBIDDEN');
  });

  void it("a handshake refused by authentication (401) logs the client's trace id", async () => {
    const answer = await rawExchange(fx.gw.port, upgradeRequest('/keyed', [`traceparent: 00-${TRACE}-${PARENT}-01`, 'X-Request-Id: req-401']));
    assert.equal(statusOf(answer), 401, answer);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'handshake rejected' && l.requestId === 'req-401'), 5_000, 'the rejection line');
    const line = fx.gw.logs.find((l) => l.msg === 'handshake rejected' && l.requestId === 'req-401')!;
    assert.equal(line.trace, TRACE);
    assert.equal(line.route, 'keyed');
  });

  void it('a refused handshake without a traceparent logs a new trace id', async () => {
    await rawExchange(fx.gw.port, upgradeRequest('/nowhere', ['X-Request-Id: req-404-new']));
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'handshake rejected' && l.requestId === 'req-404-new'), 5_000, 'the rejection line');
    const line = fx.gw.logs.find((l) => l.msg === 'handshake rejected' && l.requestId === 'req-404-new')!;
    assert.match(String(line.trace), /^[0-9a-f]{32}$/);
  });

  void it('plain HTTP passthrough carries the trace and the request id too', async () => {
    await new Promise<void>((resolve, reject) => {
      fx.backend.server.once('request', (req: IncomingMessage) => {
        try {
          assert.equal(parts(req.headers.traceparent).trace, TRACE);
          assert.equal(req.headers['x-request-id'], 'req-http');
          resolve();
        } catch (err) {
          reject(err as Error);
        }
      });
      void fetch(`http://127.0.0.1:${fx.gw.port}/app/plain`, { headers: { traceparent: `00-${TRACE}-${PARENT}-01`, 'x-request-id': 'req-http' } }).then(
        (res) => res.text(),
        reject,
      );
    });
  });
});

void describe('trace context across upstream retries', () => {
  const heads: string[] = [];
  const fx = {} as { a: { port: number; close(): Promise<void> }; b: { port: number; close(): Promise<void> }; gw: RunningGateway };
  before(async () => {
    // Two targets that read the upstream request and hang up: a retryable failure on each.
    const record = (s: Socket): void => {
      void readHead(s).then((h) => {
        heads.push(h);
        s.destroy();
      });
    };
    fx.a = await rawServer(record);
    fx.b = await rawServer(record);
    fx.gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { retries: 1, outlier: { consecutiveFailures: 0 }, targets: [{ url: "ws://127.0.0.1:${fx.a.port}" }, { url: "ws://127.0.0.1:${fx.b.port}" }] } }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await fx.gw.close();
    await fx.a.close();
    await fx.b.close();
  });

  void it('every attempt has the same trace id and request id, and a span id of its own', async () => {
    const ws = new WebSocket(fx.gw.url, { headers: { traceparent: `00-${TRACE}-${PARENT}-01`, 'x-request-id': 'req-retry' } });
    ws.on('error', () => {});
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    assert.equal(res.statusCode, 502);
    res.resume();
    assert.equal(heads.length, 2);
    const values = heads.map((h) => /\r\ntraceparent: (.*)/i.exec(h)?.[1]);
    const [first, second] = values.map(parts);
    assert.equal(first!.trace, TRACE);
    assert.equal(second!.trace, TRACE);
    assert.notEqual(first!.parent, second!.parent);
    for (const h of heads) assert.match(h, /\r\nX-Request-Id: req-retry(\r\n|$)/);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && l.requestId === 'req-retry'), 5_000, 'the access-log line');
    const line = fx.gw.logs.find((l) => l.msg === 'session closed' && l.requestId === 'req-retry')!;
    assert.equal(line.trace, TRACE);
    assert.equal(line.status, 502);
  });
});
