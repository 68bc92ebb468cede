import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { eventually, freePort, listenLocal } from './helpers.js';
import { openMany, openTagged, roundTrip, switchableBackend, type TaggedClient } from './resilience-helpers.js';
import { configFile, jsonLines, printed, run, startWsgate } from './process-helpers.js';
import { api, closeAll, config, handshakeStatus, openSpread, ports, stop, workers } from './cluster-fixtures.js';

// cluster.workers: a primary and its workers, as `wsgate start` runs them, in
// front of real backends; what a user of the instance sees must be one gateway.

void describe('cluster.workers: spreading, limits and worker deaths', { timeout: 110_000 }, () => {
  void it('spreads connections over the workers, and holds perIp.maxConnections and maxConnections for the whole instance', async (t) => {
    const b = await switchableBackend('b1');
    const p = await ports();
    const file = await configFile(config(p, [b.url], 'limits: { perIp: { maxConnections: 10, handshakeRate: 0 } }'));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients = await openSpread(p, 10);
    try {
      const ws = await workers(p);
      assert.equal(ws.length, 2);
      assert.equal(ws[0]!.connections + ws[1]!.connections, 10);
      assert.ok(ws[0]!.connections > 0 && ws[1]!.connections > 0, `both workers take connections: ${JSON.stringify(ws)}`);
      // The 11th from this address is refused, whichever worker takes it (try several times: both get their turn).
      for (let i = 0; i < 4; i++) assert.equal(await handshakeStatus(p.port), 429);
      const { body } = await api(p, '/api/upstreams');
      const [app] = body.upstreams as Array<{ targets: Array<{ activeConnections: number }> }>;
      assert.equal(app!.targets[0]!.activeConnections, 10, 'one view: the workers’ connections add up');
      // A closed session frees its place in whichever worker held it.
      clients.pop()!.ws.close();
      let reopened: TaggedClient | undefined;
      for (let i = 0; i < 50 && reopened === undefined; i++) {
        reopened = await openTagged(`ws://127.0.0.1:${p.port}/`).catch(() => undefined);
        if (reopened === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(reopened !== undefined, 'a place freed by a close can be taken again');
      clients.push(reopened);
      for (const c of clients) await roundTrip(c, 'still here');
    } finally {
      closeAll(clients);
      await stop(gw);
      await b.close();
    }
  });

  void it('an address that cannot be bound: the primary stops its workers and exits 1, naming it', async (t) => {
    const taken = createServer();
    const p = { port: await listenLocal(taken), admin: await freePort() };
    try {
      const r = await run(['start', '-c', await configFile(config(p, ['ws://127.0.0.1:9']))], { signal: t.signal });
      assert.equal(r.code, 1);
      assert.match(r.out, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${p.port}`));
      assert.doesNotMatch(r.out, /wsgate started/);
    } finally {
      taken.close();
    }
  });

  void it('limits.maxConnections holds across the workers (503 past it)', async (t) => {
    const b = await switchableBackend('b1');
    const p = await ports();
    const file = await configFile(config(p, [b.url], 'limits: { maxConnections: 6, perIp: { maxConnections: 100, handshakeRate: 0 } }'));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients = await openMany(`ws://127.0.0.1:${p.port}/`, 6, 1);
    try {
      for (let i = 0; i < 4; i++) assert.equal(await handshakeStatus(p.port), 503);
    } finally {
      closeAll(clients);
      await stop(gw);
      await b.close();
    }
  });

  void it('replaces a worker that dies: only its clients are cut, the primary stays, its places are freed', async (t) => {
    const b = await switchableBackend('b1');
    const p = await ports();
    const file = await configFile(config(p, [b.url], 'limits: { perIp: { maxConnections: 10, handshakeRate: 0 } }'));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const primaryPid = gw.child.pid;
    // Spread, so that killing one worker leaves the other's clients to check; the
    // victim is one that holds connections whichever way the kernel spread them.
    const clients = await openSpread(p, 10);
    try {
      const victim = (await workers(p)).sort((a, b) => a.connections - b.connections).find((w) => w.connections > 0);
      process.kill(victim!.pid, 'SIGKILL');
      await eventually(() => clients.some((c) => c.closed !== undefined), 10_000, 'the dead worker’s clients to be cut');
      await new Promise((r) => setTimeout(r, 300));
      const cut = clients.filter((c) => c.closed !== undefined);
      const alive = clients.filter((c) => c.closed === undefined);
      assert.equal(cut.length, victim!.connections, 'exactly the dead worker’s clients are cut');
      for (const c of alive) await roundTrip(c, 'unaffected');
      await printed(gw, '"worker died; restarting it"');
      await eventually(() => jsonLines(gw.out()).filter((l) => l.msg === 'worker ready').length >= 3, 20_000, 'the replacement worker');
      assert.equal(gw.child.exitCode, null);
      assert.equal(gw.child.pid, primaryPid);
      const now = await workers(p);
      assert.equal(now.length, 2);
      assert.ok(!now.some((w) => w.pid === victim!.pid), 'a new process took the slot');
      // The dead worker's sessions no longer count against the address.
      const more = await openMany(`ws://127.0.0.1:${p.port}/`, cut.length, 1);
      clients.push(...more);
      assert.equal(await handshakeStatus(p.port), 429);
    } finally {
      closeAll(clients);
      await stop(gw);
      await b.close();
    }
  });

  void it('a worker that keeps dying is restarted after a backoff that doubles, and says so in the log', async (t) => {
    const b = await switchableBackend('b1');
    const p = await ports();
    const gw = await startWsgate(['-c', await configFile(config(p, [b.url]))], { signal: t.signal });
    try {
      for (let round = 1; round <= 3; round++) {
        const slot = (await workers(p)).find((w) => w.id === 1)!;
        process.kill(slot.pid, 'SIGKILL');
        await eventually(() => jsonLines(gw.out()).filter((l) => l.msg === 'worker ready' && l.worker === 1).length === round + 1, 20_000, 'worker 1 back');
      }
      const died = jsonLines(gw.out()).filter((l) => l.msg === 'worker died; restarting it');
      assert.deepEqual(
        died.map((l) => [l.worker, l.signal, l.restartIn]),
        [
          [1, 'SIGKILL', 0],
          [1, 'SIGKILL', 250],
          [1, 'SIGKILL', 500],
        ],
      );
    } finally {
      await stop(gw);
      await b.close();
    }
  });
});
