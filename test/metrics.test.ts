import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import type { ConnectionPage, StatsSnapshot } from '../src/admin/stats.js';
import { parseConfig } from '../src/index.js';
import {
  echo,
  eventually,
  freePort,
  openClient,
  rawExchange,
  rawServer,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  withGateway,
  type Backend,
  type RunningGateway,
} from './helpers.js';
import { rawClient, sleep } from './inspect-fixtures.js';
import { NO_PER_IP_LIMITS } from './resilience-helpers.js';
import { adminJson, scrape, type Scrape } from './metrics-fixtures.js';
import { makeCa, NO_OPENSSL } from './tls-fixtures.js';

const TOKEN = 'metrics-token';

/** The scripted sequence runs the same in both relay modes; only what tunnel mode cannot see differs. */
for (const mode of ['inspect', 'tunnel'] as const) {
  void describe(`metrics (${mode} mode): exact values after a scripted sequence`, () => {
    let backend: Backend;
    let refusing: { port: number; close(): Promise<void> };
    let gw: RunningGateway;
    let yaml: string;
    let adminPort: number;
    const target = (): string => backend.url;

    before(async () => {
      backend = await startBackend();
      // Answers every upgrade with 403: the client gets that answer (upstream_rejected).
      refusing = await rawServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno'));
      });
      const dead = [await freePort(), await freePort()];
      yaml = `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: "\${ADMIN_TOKEN}" }
relay: { mode: ${mode} }
routes:
  - { name: chat, match: { path: /chat }, upstream: app, allowedOrigins: ["https://good.example"] }
  - { name: blocked, match: { path: /blocked }, upstream: app, ipDeny: [127.0.0.1] }
  - { name: dead, match: { path: /dead }, upstream: dead }
  - { name: refuse, match: { path: /refuse }, upstream: refuse }
upstreams:
  app: { targets: [{ url: "${backend.url}" }], drainPeriod: 0 }
  dead:
    targets: [{ url: "ws://127.0.0.1:${dead[0]}" }, { url: "ws://127.0.0.1:${dead[1]}" }]
    retries: 0
    outlier: { consecutiveFailures: 1, maxEjectionPercent: 100 }
  refuse: { targets: [{ url: "ws://127.0.0.1:${refusing.port}" }] }
limits: { ${NO_PER_IP_LIMITS} }
shutdown: { drainTimeout: 0 }
`;
      gw = await startGateway(yaml, { ADMIN_TOKEN: TOKEN });
      adminPort = gw.gw.adminAddress!.port;
    });
    after(async () => {
      await gw.close();
      await backend.close();
      await refusing.close();
    });

    const chat = (): Record<string, string> => ({ route: 'chat', upstream: 'app', target: target() });

    void it('starts with build info, the targets, and no traffic', async () => {
      const m = await scrape(gw.gw);
      assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
      const [info] = m.series('wsgate_build_info');
      assert.equal(info?.version, JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
      assert.equal(info?.node, process.version);
      assert.match(info?.relay_io ?? '', /^(native|handle|stream)$/);
      assert.equal(m.get('wsgate_upstream_target_up', { upstream: 'app', target: target() }), 1);
      assert.equal(m.get('wsgate_upstream_target_draining', { upstream: 'app', target: target() }), 0);
      assert.equal(m.sum('wsgate_handshakes_total'), 0);
      // Node's default series are there too.
      assert.ok(m.get('process_resident_memory_bytes')! > 0);
      assert.ok(m.series('nodejs_eventloop_lag_seconds').length > 0);
    });

    let clients: WebSocket[] = [];

    void it('counts three connections and their messages, bytes and sizes', async () => {
      clients = await Promise.all([0, 1, 2].map(() => openClient(`${gw.url}/chat`)));
      for (const ws of clients) {
        assert.equal(await echo(ws, 'x'.repeat(10)), 'x'.repeat(10));
        assert.equal(await echo(ws, 'y'.repeat(300)), 'y'.repeat(300));
      }
      const m = await scrape(gw.gw);
      assert.equal(m.get('wsgate_connections_active', chat()), 3);
      assert.equal(m.get('wsgate_connections_total', chat()), 3);
      assert.equal(m.get('wsgate_handshakes_total', { route: 'chat', outcome: 'accepted' }), 3);
      assert.equal(m.get('wsgate_handshake_duration_seconds_count'), 3);
      assert.equal(m.get('wsgate_upstream_connect_duration_seconds_count', { upstream: 'app', target: target() }), 3);
      // Client frames are masked: 2 + 4 + 10 and 2 + 2 + 4 + 300 bytes; the backend's are not: 2 + 10 and 2 + 2 + 300.
      assert.equal(m.get('wsgate_bytes_total', { route: 'chat', direction: 'upstream' }), 3 * (16 + 308));
      assert.equal(m.get('wsgate_bytes_total', { route: 'chat', direction: 'downstream' }), 3 * (12 + 304));
      const seen = mode === 'inspect' ? 6 : 0;
      assert.equal(m.get('wsgate_messages_total', { route: 'chat', direction: 'upstream' }), seen);
      assert.equal(m.get('wsgate_messages_total', { route: 'chat', direction: 'downstream' }), seen);
      for (const direction of ['upstream', 'downstream']) {
        assert.equal(m.get('wsgate_message_size_bytes_bucket', { direction, le: '64' }), seen / 2);
        assert.equal(m.get('wsgate_message_size_bytes_bucket', { direction, le: '256' }), seen / 2);
        assert.equal(m.get('wsgate_message_size_bytes_bucket', { direction, le: '1024' }), seen);
        assert.equal(m.get('wsgate_message_size_bytes_bucket', { direction, le: '+Inf' }), seen);
        assert.equal(m.get('wsgate_message_size_bytes_sum', { direction }), (seen / 2) * 310);
      }
    });

    void it('counts each kind of refused handshake under its outcome and route', async () => {
      const answer = async (path: string, headers: string[] = [], request?: string): Promise<number> =>
        statusOf(await rawExchange(gw.port, request ?? upgradeRequest(path, headers)));
      assert.equal(await answer('/chat', ['Origin: https://evil.example']), 403);
      assert.equal(await answer('/blocked'), 403);
      assert.equal(await answer('/nowhere'), 404);
      assert.equal(await answer('/dead'), 502);
      assert.equal(await answer('/refuse'), 403);
      assert.equal(await answer('/chat', [], upgradeRequest('/chat').replace('Version: 13', 'Version: 8')), 426);
      assert.equal(await answer('/chat', [], upgradeRequest('/chat').replace(/Sec-WebSocket-Key: .*\r\n/, '')), 400);
      assert.equal(await answer('/chat', [], `GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431);
      const m = await scrape(gw.gw);
      const outcome = (route: string, o: string): number | undefined => m.get('wsgate_handshakes_total', { route, outcome: o });
      assert.equal(outcome('chat', 'forbidden'), 1);
      assert.equal(outcome('blocked', 'ip_denied'), 1);
      assert.equal(outcome('', 'no_route'), 1);
      assert.equal(outcome('dead', 'upstream_error'), 1);
      assert.equal(outcome('refuse', 'upstream_rejected'), 1);
      assert.equal(outcome('', 'unsupported_version'), 1);
      assert.equal(outcome('', 'invalid'), 1);
      assert.equal(outcome('', 'headers_too_large'), 1);
      assert.equal(m.sum('wsgate_handshakes_total'), 3 + 8);
      // The dead target was ejected after its one failure.
      assert.equal(m.sum('wsgate_upstream_ejections_total', { upstream: 'dead' }), 1);
      // Refused handshakes are not connections.
      assert.equal(m.get('wsgate_handshake_duration_seconds_count'), 3);
      assert.deepEqual(
        m.series('wsgate_connections_total').map((l) => l.route),
        ['chat'],
      );
    });

    void it('a client close counts under its code (inspect) and the connection leaves the active count', async () => {
      const ws = clients.shift()!;
      ws.close(4001, 'bye');
      await once(ws, 'close');
      await eventually(() => gw.gw.stats().sessions === 2, 10_000, 'the session to end');
      const m = await scrape(gw.gw);
      assert.equal(m.get('wsgate_connections_active', chat()), 2);
      assert.equal(m.get('wsgate_connection_duration_seconds_count'), 1);
      if (mode === 'inspect') assert.equal(m.get('wsgate_closes_total', { route: 'chat', code: '4001', initiator: 'client' }), 1);
      // Tunnel mode reads no frames: the backend answered the Close and hung up first.
      else assert.equal(m.get('wsgate_closes_total', { route: 'chat', code: 'none', initiator: 'upstream' }), 1);
      // The ended connection's traffic stays in the totals.
      assert.equal(m.get('wsgate_bytes_total', { route: 'chat', direction: 'downstream' })! >= 3 * (12 + 304), true);
    });

    void it('the connection list shows the open connections, pages, filters, and needs the token', async () => {
      assert.equal((await adminJson(adminPort, 'GET', '/api/connections')).status, 401);
      const all = await adminJson<ConnectionPage>(adminPort, 'GET', '/api/connections', TOKEN);
      assert.equal(all.status, 200);
      assert.equal(all.body.total, 2);
      const [first] = all.body.connections;
      assert.equal(first?.route, 'chat');
      assert.equal(first?.upstream, 'app');
      assert.equal(first?.target, target());
      assert.equal(first?.client, '127.0.0.1');
      assert.equal(first?.relay, mode);
      assert.equal(first?.protocol, 'http/1.1');
      assert.equal(first?.bytes.upstream, 16 + 308);
      assert.equal(first?.messages.downstream, mode === 'inspect' ? 2 : 0);
      assert.ok(first!.ageSeconds >= 0);
      const page1 = await adminJson<ConnectionPage>(adminPort, 'GET', '/api/connections?limit=1', TOKEN);
      assert.equal(page1.body.connections.length, 1);
      assert.equal(page1.body.next, page1.body.connections[0]!.id);
      const page2 = await adminJson<ConnectionPage>(adminPort, 'GET', `/api/connections?limit=1&after=${page1.body.next}`, TOKEN);
      assert.equal(page2.body.connections.length, 1);
      assert.notEqual(page2.body.connections[0]!.id, page1.body.connections[0]!.id);
      assert.equal(page2.body.next, null);
      assert.equal((await adminJson<ConnectionPage>(adminPort, 'GET', '/api/connections?route=blocked', TOKEN)).body.total, 0);
      assert.equal((await adminJson<ConnectionPage>(adminPort, 'GET', '/api/connections?client=127.0.0.1', TOKEN)).body.total, 2);
      assert.equal((await adminJson(adminPort, 'GET', '/api/connections?limit=0', TOKEN)).status, 400);
    });

    void it('DELETE /api/connections/ID closes that connection, with the code given in inspect mode', async () => {
      const list = await adminJson<ConnectionPage>(adminPort, 'GET', '/api/connections', TOKEN);
      const id = list.body.connections[0]!.id;
      const ws = clients.shift()!;
      const closed = once(ws, 'close') as Promise<[number, Buffer]>;
      assert.equal((await adminJson(adminPort, 'DELETE', `/api/connections/${id}`)).status, 401);
      assert.equal((await adminJson(adminPort, 'DELETE', `/api/connections/${id}`, TOKEN, { code: 999 })).status, 400);
      // A worker-prefixed id is not this single process's connection.
      assert.equal((await adminJson(adminPort, 'DELETE', `/api/connections/7.${id}`, TOKEN)).status, 404);
      const del = await adminJson(adminPort, 'DELETE', `/api/connections/${id}`, TOKEN, { code: 4000, reason: 'kicked' });
      assert.equal(del.status, 200);
      const [code, reason] = await closed;
      if (mode === 'inspect') {
        assert.equal(code, 4000);
        assert.equal(reason.toString(), 'kicked');
      } else assert.equal(code, 1006);
      assert.equal((await adminJson(adminPort, 'DELETE', `/api/connections/${id}`, TOKEN)).status, 404);
      await eventually(() => gw.gw.stats().sessions === 1, 10_000, 'the session to end');
      const m = await scrape(gw.gw);
      assert.equal(m.get('wsgate_closes_total', { route: 'chat', code: mode === 'inspect' ? '4000' : 'none', initiator: 'gateway' }), 1);
    });

    void it('a drained target sends 1012 (inspect) and shows draining', async () => {
      const ws = clients.shift()!;
      const closed = once(ws, 'close') as Promise<[number]>;
      assert.equal((await adminJson(adminPort, 'POST', '/api/upstreams/app/targets/0/drain', TOKEN)).status, 200);
      const [code] = await closed;
      assert.equal(code, mode === 'inspect' ? 1012 : 1006);
      await eventually(() => gw.gw.stats().sessions === 0, 10_000, 'the session to end');
      const m = await scrape(gw.gw);
      assert.equal(m.get('wsgate_upstream_target_draining', { upstream: 'app', target: target() }), 1);
      assert.equal(m.get('wsgate_upstream_target_up', { upstream: 'app', target: target() }), 0);
      assert.equal(
        m.get('wsgate_closes_total', { route: 'chat', code: mode === 'inspect' ? '1012' : 'none', initiator: 'gateway' }),
        mode === 'inspect' ? 1 : 2,
      );
      assert.equal(m.get('wsgate_connections_active', chat()), 0);
      assert.equal(m.get('wsgate_connections_total', chat()), 3);
      assert.equal(m.get('wsgate_connection_duration_seconds_count'), 3);
      assert.equal((await adminJson(adminPort, 'POST', '/api/upstreams/app/targets/0/undrain', TOKEN)).status, 200);
      // Draining refuses nothing here: no target is left, so the next handshake is no_healthy_target.
    });

    void it('/api/stats agrees with /metrics and needs the token', async () => {
      assert.equal((await adminJson(adminPort, 'GET', '/api/stats')).status, 401);
      const { status, body } = await adminJson<StatsSnapshot>(adminPort, 'GET', '/api/stats', TOKEN);
      assert.equal(status, 200);
      const m = await scrape(gw.gw);
      assert.equal(body.metrics, true);
      assert.equal(body.workers, 1);
      assert.equal(body.connections.active, 0);
      assert.equal(body.connections.total, 3);
      assert.equal(body.handshakes.accepted, 3);
      assert.equal(body.handshakes.no_route, 1);
      assert.equal(body.bytes.upstream, m.sum('wsgate_bytes_total', { direction: 'upstream' }));
      assert.equal(body.messages.downstream, m.sum('wsgate_messages_total', { direction: 'downstream' }));
      assert.equal(body.handshakeDuration.count, 3);
      assert.equal(body.handshakeDuration.counts.at(-1), 3);
      assert.equal(body.upstreams.find((u) => u.name === 'app')?.targets[0]?.url, target());
      if (mode === 'inspect') assert.deepEqual(body.closes, { '4001': 1, '4000': 1, '1012': 1 });
      else assert.deepEqual(body.closes, { none: 3 });
    });

    void it('the stats stream sends a snapshot each second', async () => {
      const ac = new AbortController();
      const res = await fetch(`http://127.0.0.1:${adminPort}/api/stats/stream`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = res.body!.getReader();
      let text = '';
      const started = Date.now();
      while ((text.match(/\n\n/g) ?? []).length < 2) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
        assert.ok(Date.now() - started < 10_000, 'two events within 10 s');
      }
      ac.abort();
      const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
      assert.ok(events.length >= 2);
      const snapshot = JSON.parse(events[0]!.slice(6)) as StatsSnapshot;
      assert.equal(snapshot.connections.total, 3);
    });

    void it('counts reloads, and plain HTTP requests by route and code', async () => {
      assert.equal((await gw.gw.reload(parseConfig(yaml, { ADMIN_TOKEN: TOKEN }))).ok, true);
      // cluster.* cannot change on a reload: refused.
      assert.equal((await gw.gw.reload(parseConfig(`${yaml}\ncluster: { workers: 3 }\n`, { ADMIN_TOKEN: TOKEN }))).ok, false);
      const res = await fetch(`http://127.0.0.1:${gw.port}/chat/plain`);
      await res.text();
      const none = await fetch(`http://127.0.0.1:${gw.port}/nowhere`);
      await none.text();
      const m = await scrape(gw.gw);
      assert.equal(m.get('wsgate_config_reloads_total', { result: 'success' }), 1);
      assert.equal(m.get('wsgate_config_reloads_total', { result: 'failure' }), 1);
      assert.ok(Math.abs(m.get('wsgate_config_last_reload_success_timestamp_seconds')! - Date.now() / 1000) < 60);
      assert.equal(m.get('wsgate_http_requests_total', { route: 'chat', code: String(res.status) }), 1);
      assert.equal(m.get('wsgate_http_requests_total', { route: '', code: '404' }), 1);
      assert.equal(m.get('wsgate_http_request_duration_seconds_count'), 2);
    });
  });
}

void describe('metrics: keepalive pings', () => {
  const fx = withGateway(
    () => startBackend(),
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
relay: { mode: inspect, pingInterval: 200ms, pongTimeout: 300ms }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { ${NO_PER_IP_LIMITS} }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('counts pings sent, answered (a ws client pongs) and timed out (a client that never answers)', async () => {
    const answering = await openClient(fx.gw.url);
    const silent = await rawClient(fx.gw.port);
    let m: Scrape | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      m = await scrape(fx.gw.gw);
      if (m.get('wsgate_pings_total', { result: 'timed_out' })! >= 1 && m.get('wsgate_pings_total', { result: 'answered' })! >= 1) break;
      await sleep(100);
    }
    assert.equal(m!.get('wsgate_pings_total', { result: 'timed_out' }), 1);
    assert.ok(m!.get('wsgate_pings_total', { result: 'answered' })! >= 1);
    assert.ok(m!.get('wsgate_pings_total', { result: 'sent' })! >= 2);
    await eventually(() => fx.gw.gw.stats().sessions === 1, 10_000, 'the silent client to be cut');
    const after = await scrape(fx.gw.gw);
    assert.equal(after.get('wsgate_closes_total', { route: 'route-0', code: '1001', initiator: 'gateway' }), 1);
    answering.close();
    silent.socket.destroy();
  });
});

void describe('metrics: health checks, certificates, admin.metrics: false, the config', () => {
  void it('counts active health checks by result for each target', async () => {
    const backend = await startBackend();
    const dead = await freePort();
    const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    targets: [{ url: "${backend.url}" }, { url: "ws://127.0.0.1:${dead}" }]
    healthCheck: { type: tcp, interval: 100ms, timeout: 500ms }
shutdown: { drainTimeout: 0 }
`);
    try {
      let m = await scrape(gw.gw);
      const deadline = Date.now() + 10_000;
      while (
        Date.now() < deadline &&
        (m.sum('wsgate_health_checks_total', { result: 'failure' }) < 2 || m.sum('wsgate_health_checks_total', { result: 'success' }) < 2)
      ) {
        await sleep(100);
        m = await scrape(gw.gw);
      }
      assert.ok(m.get('wsgate_health_checks_total', { upstream: 'app', target: backend.url, result: 'success' })! >= 2);
      assert.equal(m.get('wsgate_health_checks_total', { upstream: 'app', target: backend.url, result: 'failure' }), 0);
      assert.ok(m.get('wsgate_health_checks_total', { upstream: 'app', target: `ws://127.0.0.1:${dead}`, result: 'failure' })! >= 2);
      assert.equal(m.get('wsgate_upstream_target_up', { upstream: 'app', target: `ws://127.0.0.1:${dead}` }), 0);
    } finally {
      await gw.close();
      await backend.close();
    }
  });

  void it('reports each TLS certificate in service with its expiry', { skip: NO_OPENSSL }, async () => {
    const ca = makeCa();
    const backend = await startBackend();
    try {
      const main = ca.issue('main', ['localhost']);
      const other = ca.issue('other', ['chat.example.com', 'api.example.com']);
      const gw = await startGateway(`
listeners:
  - address: 127.0.0.1:0
    tls: { cert: "${main.cert}", key: "${main.key}", sni: [{ hosts: [chat.example.com, api.example.com], cert: "${other.cert}", key: "${other.key}" }] }
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
      try {
        const m = await scrape(gw.gw);
        const address = `127.0.0.1:0`;
        const expiry = (file: string): number => Date.parse(new X509Certificate(readFileSync(file)).validTo) / 1000;
        assert.equal(m.get('wsgate_tls_certificate_expiry_timestamp_seconds', { listener: address, name: 'default' }), expiry(main.cert));
        assert.equal(
          m.get('wsgate_tls_certificate_expiry_timestamp_seconds', { listener: address, name: 'chat.example.com,api.example.com' }),
          expiry(other.cert),
        );
      } finally {
        await gw.close();
      }
    } finally {
      await backend.close();
      ca.close();
    }
  });

  void it('admin.metrics: false serves no /metrics and counts nothing; /healthz still answers', async () => {
    const backend = await startBackend();
    const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, metrics: false }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
    try {
      const port = gw.gw.adminAddress!.port;
      assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      const ws = await openClient(gw.url);
      const stats = await adminJson<StatsSnapshot>(port, 'GET', '/api/stats');
      assert.equal(stats.body.metrics, false);
      assert.equal(stats.body.connections.active, 1);
      assert.equal(stats.body.handshakes.accepted, 0);
      ws.close();
    } finally {
      await gw.close();
      await backend.close();
    }
  });

  void it('GET /api/config shows the running config with its secrets redacted, behind the token', async () => {
    const port = await freePort();
    const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: "t0ken-value" }
routes:
  - match: { path: / }
    upstream: app
    auth: { apiKeys: { header: x-api-key, keys: [key-one-secret, key-two-secret] } }
  - match: { path: /jwt }
    upstream: app
    auth: { jwt: { secret: "a-very-long-jwt-secret-value-0123456789" } }
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:${port}" }] } }
cluster: { redis: "redis://user:hunter2@127.0.0.1:6399/0" }
shutdown: { drainTimeout: 0 }
`);
    try {
      const admin = gw.gw.adminAddress!.port;
      assert.equal((await adminJson(admin, 'GET', '/api/config')).status, 401);
      const { status, body } = await adminJson(admin, 'GET', '/api/config', 't0ken-value');
      assert.equal(status, 200);
      const text = JSON.stringify(body);
      for (const secret of ['t0ken-value', 'key-one-secret', 'key-two-secret', 'a-very-long-jwt-secret', 'hunter2'])
        assert.ok(!text.includes(secret), `${secret} is shown`);
      assert.match(text, /\[redacted\]/);
      assert.match(text, /redis:\/\/user:redacted@127\.0\.0\.1:6399/);
      assert.match(text, /"upstream":"app"/);
    } finally {
      await gw.close();
    }
  });
});

void describe('admin: DELETE /api/connections/ID with a bad body', () => {
  const fx = withGateway(
    () => startBackend(),
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('answers 400 to a body that is not JSON, and survives a client that leaves mid-body', async () => {
    const admin = fx.gw.gw.adminAddress!.port;
    const res = await fetch(`http://127.0.0.1:${admin}/api/connections/1`, { method: 'DELETE', body: '{not json' });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { error: 'the body is not JSON' });
    const cut = connect(admin, '127.0.0.1');
    cut.on('error', () => {});
    await once(cut, 'connect');
    cut.write('DELETE /api/connections/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"code":');
    await sleep(100);
    cut.destroy();
    await sleep(100);
    assert.equal((await fetch(`http://127.0.0.1:${admin}/healthz`)).status, 200);
  });
});

void describe('metrics: the other refusals, each under its outcome', () => {
  let backend: Backend;
  let silent: { port: number; close(): Promise<void> };
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    // Accepts and never answers the upgrade: the dial times out.
    silent = await rawServer((s) => s.on('error', () => {}));
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes:
  - { name: keyed, match: { path: /keyed }, upstream: app, auth: { apiKeys: { keys: [the-key] } } }
  - { name: small, match: { path: /small }, upstream: app, limits: { maxConnections: 1 } }
  - { name: empty, match: { path: /empty }, upstream: empty }
  - { name: slow, match: { path: /slow }, upstream: slow }
upstreams:
  app: { targets: [{ url: "${backend.url}" }] }
  empty: { targets: [{ url: "${backend.url}" }], drainPeriod: 0 }
  slow: { targets: [{ url: "ws://127.0.0.1:${silent.port}" }], connectTimeout: 300ms, retries: 0 }
limits: { ${NO_PER_IP_LIMITS} }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await backend.close();
    await silent.close();
  });

  void it('unauthorized, over_capacity, no_healthy_target and upstream_timeout', async () => {
    const admin = gw.gw.adminAddress!.port;
    const status = async (path: string): Promise<number> => statusOf(await rawExchange(gw.port, upgradeRequest(path)));
    assert.equal(await status('/keyed'), 401);
    const held = await openClient(`${gw.url}/small`);
    assert.equal(await status('/small'), 503);
    assert.equal((await adminJson(admin, 'POST', '/api/upstreams/empty/targets/0/drain')).status, 200);
    assert.equal(await status('/empty'), 503);
    assert.equal(await status('/slow'), 504);
    const m = await scrape(gw.gw);
    assert.equal(m.get('wsgate_handshakes_total', { route: 'keyed', outcome: 'unauthorized' }), 1);
    assert.equal(m.get('wsgate_handshakes_total', { route: 'small', outcome: 'over_capacity' }), 1);
    assert.equal(m.get('wsgate_handshakes_total', { route: 'small', outcome: 'accepted' }), 1);
    assert.equal(m.get('wsgate_handshakes_total', { route: 'empty', outcome: 'no_healthy_target' }), 1);
    assert.equal(m.get('wsgate_handshakes_total', { route: 'slow', outcome: 'upstream_timeout' }), 1);
    assert.equal(m.sum('wsgate_handshakes_total'), 5);
    held.close();
  });
});

void describe('metrics: refusals before any request is read', () => {
  const fx = withGateway(
    () => startBackend(),
    (backend) => `
listeners: [{ address: 127.0.0.1:0, ipDeny: [127.0.0.2] }]
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { perIp: { maxConnections: 1, handshakeRate: 0 }, handshakeTimeout: 300ms }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('counts an unfinished head as timeout and a listener IP refusal as ip_denied, with route ""', async () => {
    const slow = connect(fx.gw.port, '127.0.0.1');
    slow.on('error', () => {});
    slow.write('GET / HTTP/1.1\r\nHost: x\r\n');
    slow.resume();
    await once(slow, 'close');
    const denied = connect({ port: fx.gw.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    denied.on('error', () => {});
    denied.resume();
    await once(denied, 'close');
    const m = await scrape(fx.gw.gw);
    assert.equal(m.get('wsgate_handshakes_total', { route: '', outcome: 'timeout' }), 1);
    assert.equal(m.get('wsgate_handshakes_total', { route: '', outcome: 'ip_denied' }), 1);
  });

  void it('counts a second connection from an address over its cap as rate_limited', async () => {
    const first = await openClient(fx.gw.url);
    const second = new WebSocket(fx.gw.url);
    second.on('error', () => {});
    await new Promise((resolve) => second.on('close', resolve));
    const m = await scrape(fx.gw.gw);
    assert.equal(m.sum('wsgate_handshakes_total', { outcome: 'rate_limited' }), 1);
    first.close();
  });
});
