import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConnectionPage, StatsSnapshot } from '../src/admin/stats.js';
import { freePort } from './helpers.js';
import { openMany, switchableBackend } from './resilience-helpers.js';
import { configFile, startWsgate, type Started } from './process-helpers.js';
import { adminJson, scrapeAt } from './metrics-fixtures.js';

// cluster.workers: the primary answers /metrics and the connection API for
// the whole instance, from its workers' counts and its own.

const TOKEN = 'cluster-token';

async function stop(gw: Started): Promise<void> {
  gw.child.kill('SIGTERM');
  const how = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('timeout'), 20_000))]);
  if (how !== 0) gw.child.kill('SIGKILL');
  assert.equal(how, 0, gw.err());
}

void describe('metrics in cluster mode', { timeout: 90_000 }, () => {
  void it('/metrics, /api/stats and /api/connections answer for every worker; a connection is closed on its worker', async (t) => {
    const b = await switchableBackend('b1');
    const port = await freePort();
    const admin = await freePort();
    const file = await configFile(`
listeners: [{ address: 127.0.0.1:${port} }]
admin: { address: 127.0.0.1:${admin}, token: ${TOKEN} }
relay: { mode: inspect }
routes: [{ name: chat, match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${b.url}" }], healthCheck: { type: tcp, interval: 200ms } } }
limits: { perIp: { maxConnections: 1000, handshakeRate: 0 } }
cluster: { workers: 2 }
shutdown: { drainTimeout: 5s }
`);
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients = await openMany(`ws://127.0.0.1:${port}/`, 6, 1);
    try {
      const m = await scrapeAt(admin);
      assert.equal(m.sum('wsgate_connections_active', { route: 'chat' }), 6);
      assert.equal(m.get('wsgate_handshakes_total', { route: 'chat', outcome: 'accepted' }), 6);
      assert.equal(m.get('wsgate_handshake_duration_seconds_count'), 6);
      // One instance: one build_info series at 1, one value per target state.
      assert.equal(m.series('wsgate_build_info').length, 1);
      assert.equal(m.sum('wsgate_build_info'), 1);
      assert.equal(m.get('wsgate_upstream_target_up', { upstream: 'app', target: b.url }), 1);
      assert.ok(m.get('process_resident_memory_bytes')! > 0);
      // The primary runs the health checks for the instance.
      let checks = m.get('wsgate_health_checks_total', { upstream: 'app', target: b.url, result: 'success' }) ?? 0;
      for (let i = 0; i < 50 && checks === 0; i++) {
        await new Promise((r) => setTimeout(r, 200));
        checks = (await scrapeAt(admin)).get('wsgate_health_checks_total', { upstream: 'app', target: b.url, result: 'success' }) ?? 0;
      }
      assert.ok(checks >= 1);

      const page = await adminJson<ConnectionPage>(admin, 'GET', '/api/connections', TOKEN);
      assert.equal(page.status, 200);
      assert.equal(page.body.total, 6);
      const ids = page.body.connections.map((c) => c.id);
      assert.equal(new Set(ids).size, 6);
      for (const id of ids) assert.match(id, /^[12]\.\d+$/);
      const first = await adminJson<ConnectionPage>(admin, 'GET', '/api/connections?limit=4', TOKEN);
      const rest = await adminJson<ConnectionPage>(admin, 'GET', `/api/connections?limit=4&after=${first.body.next}`, TOKEN);
      assert.deepEqual(
        [...first.body.connections, ...rest.body.connections].map((c) => c.id),
        ids,
      );
      assert.equal(rest.body.next, null);

      const closed = clients.map((c) => new Promise<number>((resolve) => c.ws.once('close', (code: number) => resolve(code))));
      const del = await adminJson(admin, 'DELETE', `/api/connections/${ids[4]}`, TOKEN, { code: 4000 });
      assert.equal(del.status, 200);
      const codes = await Promise.race([Promise.any(closed), new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
      assert.equal(codes, 4000);
      assert.equal((await adminJson(admin, 'DELETE', '/api/connections/9.1', TOKEN)).status, 404);
      let stats = await adminJson<StatsSnapshot>(admin, 'GET', '/api/stats', TOKEN);
      const deadline = Date.now() + 10_000;
      while (stats.body.connections.active !== 5 && Date.now() < deadline) stats = await adminJson<StatsSnapshot>(admin, 'GET', '/api/stats', TOKEN);
      assert.equal(stats.body.connections.active, 5);
      assert.equal(stats.body.workers, 2);
      assert.equal(stats.body.handshakes.accepted, 6);
      assert.equal(stats.body.closes['4000'], 1);

      // A worker that dies takes its connections but not its counts: the instance's counters never go down.
      // The kernel spreads accepts (SCHED_NONE), so one worker may hold all of them: the victim is a worker that holds some.
      const left = ids.filter((id) => id !== ids[4]);
      const victimId = Number(left[0]!.split('.')[0]);
      const held = left.filter((id) => id.startsWith(`${victimId}.`)).length;
      const cluster = await adminJson<{ instances: Array<{ workers: Array<{ id: number; pid: number }> }> }>(admin, 'GET', '/api/cluster');
      const victim = cluster.body.instances[0]!.workers.find((w) => w.id === victimId)!;
      assert.ok(victim, `worker ${victimId} is listed`);
      process.kill(victim.pid, 'SIGKILL');
      let restarted = false;
      for (let i = 0; i < 100 && !restarted; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const now = await adminJson<{ instances: Array<{ workers: Array<{ id: number; pid: number }> }> }>(admin, 'GET', '/api/cluster');
        const w = now.body.instances[0]!.workers.find((x) => x.id === victim.id);
        restarted = w !== undefined && w.pid !== victim.pid && w.pid !== 0;
      }
      assert.ok(restarted, 'the worker was restarted');
      const survived = await scrapeAt(admin);
      assert.equal(survived.get('wsgate_handshakes_total', { route: 'chat', outcome: 'accepted' }), 6);
      assert.equal(survived.sum('wsgate_connections_active'), 5 - held);

      const reload = await adminJson<{ ok: boolean }>(admin, 'POST', '/api/reload', TOKEN);
      assert.equal(reload.body.ok, true);
      const after = await scrapeAt(admin);
      // Every worker and the primary count the reload; the instance took one.
      assert.equal(after.get('wsgate_config_reloads_total', { result: 'success' }), 1);
    } finally {
      for (const c of clients) c.ws.terminate();
      await stop(gw);
      await b.close();
    }
  });
});
