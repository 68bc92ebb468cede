import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createServer } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { closeHttp, eventually, listenLocal, upgradeRequest } from './helpers.js';
import { openMany, roundTrip, switchableBackend, type TaggedClient } from './resilience-helpers.js';
import { configFile, jsonLines, printed, run, startWsgate } from './process-helpers.js';
import { makeCa, NO_OPENSSL } from './tls-fixtures.js';
import { NATIVE_RELAY } from '../src/relay/native-tunnel.js';
import { api, closeAll, config, openSpread, ports, stop, workers } from './cluster-fixtures.js';

// cluster.workers: a primary and its workers, as `wsgate start` runs them, in
// front of real backends; what a user of the instance sees must be one gateway.

void describe('cluster.workers: reloads, shutdown, tunnel mode and TLS', { timeout: 110_000 }, () => {
  void it('SIGHUP reloads every worker; an invalid config changes nothing; drains and health checks are the instance’s', async (t) => {
    const b1 = await switchableBackend('b1');
    const b2 = await switchableBackend('b2');
    // Health checks of b1, timed: one checker per instance, not one per worker.
    const checks: number[] = [];
    b1.server.prependListener('request', (req: { url?: string }) => {
      if (req.url === '/health') checks.push(Date.now());
    });
    const p = await ports();
    const hc = 'drainPeriod: 0s, healthCheck: { type: http, path: /health, interval: 400ms }';
    const text = (targets: string[]): string =>
      config(p, targets, 'limits: { perIp: { maxConnections: 1000, handshakeRate: 0 } }').replace('targets: [', `${hc}, targets: [`);
    const file = await configFile(text([b1.url, b2.url]));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients: TaggedClient[] = [];
    try {
      // One checker: with one loop per worker, two checks would come closer than half an interval.
      await eventually(() => checks.length >= 6, 15_000, 'six health checks of b1');
      const gaps = checks.slice(1, 6).map((at, i) => at - checks[i]!);
      assert.ok(
        gaps.every((g) => g > 200),
        `checks come once per interval: ${gaps.join(', ')} ms apart`,
      );
      clients.push(...(await openMany(`ws://127.0.0.1:${p.port}/`, 12, 1)));
      const onB1 = clients.filter((c) => c.backend === 'b1');
      assert.ok(onB1.length > 0 && onB1.length < 12);
      // An operator drain through the primary's admin API reaches every worker: each b1 client gets 1012.
      const drained = await api(p, '/api/upstreams/app/targets/0/drain', 'POST');
      assert.equal(drained.status, 200);
      await eventually(() => onB1.every((c) => c.closed?.code === 1012), 15_000, 'every b1 client to get 1012');
      assert.ok(clients.filter((c) => c.backend === 'b2').every((c) => c.closed === undefined));
      const view = (await api(p, '/api/upstreams')).body.upstreams as Array<{ targets: Array<{ drained: boolean; activeConnections: number }> }>;
      assert.equal(view[0]!.targets[0]!.drained, true);
      await api(p, '/api/upstreams/app/targets/0/undrain', 'POST');

      // An invalid file: nothing changes anywhere.
      await writeFile(file, text([b1.url, b2.url]).replace('cluster:', 'clusterr:'));
      gw.child.kill('SIGHUP');
      await printed(gw, 'reload rejected; the running configuration stays in place');
      // A valid one: every worker now sends new clients to b2 only.
      await writeFile(file, text([b2.url]));
      gw.child.kill('SIGHUP');
      await printed(gw, '"config reloaded"');
      const before = await workers(p);
      const after = await openSpread(p, 10);
      clients.push(...after);
      assert.deepEqual(
        after.map((c) => c.backend),
        after.map(() => 'b2'),
      );
      const ws = await workers(p);
      assert.ok(
        ws.every((w) => w.connections > before.find((b) => b.id === w.id)!.connections),
        `both workers served new clients: ${JSON.stringify({ before, ws })}`,
      );
    } finally {
      closeAll(clients);
      await stop(gw);
      await b1.close();
      await b2.close();
    }
  });

  void it('`wsgate reload` and `watch: true` reload every worker through the primary', async (t) => {
    const b1 = await switchableBackend('b1');
    const b2 = await switchableBackend('b2');
    const p = await ports();
    const text = (target: string): string => config(p, [target], 'limits: { perIp: { maxConnections: 1000, handshakeRate: 0 } }\nwatch: true');
    const file = await configFile(text(b1.url));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients: TaggedClient[] = [];
    const landOn = async (name: string): Promise<void> => {
      const batch = await openMany(`ws://127.0.0.1:${p.port}/`, 8, 8);
      clients.push(...batch);
      assert.deepEqual(
        batch.map((c) => c.backend),
        batch.map(() => name),
      );
    };
    try {
      await landOn('b1');
      // The file changes: the primary's watch reloads every worker.
      await writeFile(file, text(b2.url));
      await eventually(
        () => jsonLines(gw.out()).filter((l) => l.msg === 'config reloaded' && l.worker === undefined).length === 1,
        15_000,
        'the watch to reload',
      );
      await landOn('b2');
      // `wsgate reload` finds the primary through the admin API.
      await writeFile(file, text(b1.url));
      const r = await run(['reload', '-c', file], { signal: t.signal });
      assert.equal(r.code, 0, r.err);
      await landOn('b1');
    } finally {
      closeAll(clients);
      await stop(gw);
      await b1.close();
      await b2.close();
    }
  });

  void it('SIGTERM turns /readyz to 503, sends every client of every worker 1001 and exits 0', async (t) => {
    const b = await switchableBackend('b1');
    const p = await ports();
    const file = await configFile(config(p, [b.url], 'limits: { perIp: { maxConnections: 100, handshakeRate: 0 } }'));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients = await openMany(`ws://127.0.0.1:${p.port}/`, 8, 1);
    // A client that never answers the close handshake keeps its worker draining (up to drainTimeout).
    const silent = connect(p.port, '127.0.0.1');
    silent.on('error', () => {});
    silent.write(upgradeRequest('/'));
    await new Promise((r) => silent.once('data', r));
    try {
      assert.equal((await api(p, '/readyz')).status, 200);
      gw.child.kill('SIGTERM');
      await eventually(() => clients.every((c) => c.closed !== undefined), 10_000, 'every client closed');
      assert.deepEqual(
        clients.map((c) => c.closed!.code),
        clients.map(() => 1001),
      );
      const ready = await api(p, '/readyz');
      assert.equal(ready.status, 503);
      silent.destroy();
      assert.equal(await gw.exited, 0, gw.err());
    } finally {
      silent.destroy();
      closeAll(clients);
      gw.child.kill('SIGKILL');
      await b.close();
    }
  });

  void it('tunnel mode: every worker relays (the native core where it is built)', async (t) => {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      ws.send('hello t');
      ws.on('message', (m, binary) => ws.send(m, { binary }));
    });
    const port = await listenLocal(server);
    const p = await ports();
    const file = await configFile(
      config(p, [`ws://127.0.0.1:${port}`], 'relay: { mode: tunnel }\nlimits: { perIp: { maxConnections: 100, handshakeRate: 0 } }'),
    );
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const clients = await openSpread(p, 10);
    try {
      for (const c of clients) await roundTrip(c, 'x'.repeat(1000));
      const started = jsonLines(gw.out()).filter((l) => l.msg === 'worker listening');
      assert.equal(started.length, 2);
      assert.ok(started.every((l) => l.relay === 'tunnel' && l.relayIo === (NATIVE_RELAY ? 'native' : 'handle')));
      const ws = await workers(p);
      assert.ok(
        ws.every((w) => w.connections > 0),
        `both workers relay: ${JSON.stringify(ws)}`,
      );
    } finally {
      closeAll(clients);
      await stop(gw);
      await closeHttp(server, wss);
    }
  });

  void it('TLS: every worker serves the certificate, and a reload switches every worker to new files', { skip: NO_OPENSSL }, async (t) => {
    const ca = makeCa();
    const one = ca.issue('one', ['localhost', '127.0.0.1'], 'one');
    const two = ca.issue('two', ['localhost', '127.0.0.1'], 'two');
    const b = await switchableBackend('b1');
    const p = await ports();
    const text = (cert: string, key: string): string =>
      config(p, [b.url], 'limits: { perIp: { maxConnections: 100, handshakeRate: 0 } }').replace(
        `address: 127.0.0.1:${p.port} }`,
        `address: 127.0.0.1:${p.port}, tls: { cert: "${cert}", key: "${key}" } }`,
      );
    const file = await configFile(text(one.cert, one.key));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    const names = async (): Promise<string[]> => {
      const out: string[] = [];
      // Several handshakes: the workers take them in turn.
      for (let i = 0; i < 6; i++) out.push(await certName(p.port, ca.ca));
      return out;
    };
    const ws = new WebSocket(`wss://localhost:${p.port}/`, { ca: ca.ca });
    ws.on('error', () => {});
    try {
      await new Promise((r) => ws.once('message', r));
      assert.deepEqual(await names(), Array(6).fill('one'));
      await writeFile(file, text(two.cert, two.key));
      gw.child.kill('SIGHUP');
      await printed(gw, '"config reloaded"');
      assert.deepEqual(await names(), Array(6).fill('two'));
      const echoed = new Promise((r) => ws.once('message', r));
      ws.send('kept');
      assert.equal(String(await echoed), 'kept');
    } finally {
      ws.terminate();
      await stop(gw);
      await b.close();
      ca.close();
    }
  });
});

function certName(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca, servername: 'localhost' }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(String(cn));
    });
    s.on('error', reject);
  });
}
