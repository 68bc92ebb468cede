import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { closeHttp, eventually, freePort, listenLocal, rawExchange, statusOf, upgradeRequest } from './helpers.js';
import { openMany, openTagged, roundTrip, switchableBackend, type TaggedClient } from './resilience-helpers.js';
import { configFile, jsonLines, printed, run, startWsgate, type Started } from './process-helpers.js';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket } from 'ws';
import { makeCa, NO_OPENSSL } from './tls-fixtures.js';
import { NATIVE_RELAY } from '../src/relay/native-tunnel.js';

// cluster.workers: a primary and its workers, as `wsgate start` runs them, in
// front of real backends; what a user of the instance sees must be one gateway.

interface Ports {
  readonly port: number;
  readonly admin: number;
}

async function ports(): Promise<Ports> {
  return { port: await freePort(), admin: await freePort() };
}

function config(p: Ports, targets: readonly string[], extra = ''): string {
  return [
    `listeners: [{ address: 127.0.0.1:${p.port} }]`,
    `admin: { address: 127.0.0.1:${p.admin} }`,
    'routes: [{ match: { path: / }, upstream: app }]',
    `upstreams: { app: { targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}] } }`,
    'cluster: { workers: 2 }',
    'shutdown: { drainTimeout: 5s }',
    extra,
    '',
  ].join('\n');
}

async function api(p: Ports, path: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${p.admin}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface WorkerInfo {
  readonly id: number;
  readonly pid: number;
  readonly connections: number;
}

async function workers(p: Ports): Promise<WorkerInfo[]> {
  const { body } = await api(p, '/api/cluster');
  const [instance] = body.instances as Array<{ workers: WorkerInfo[] }>;
  return instance!.workers;
}

/**
 * Opens `n` clients at once until every worker has taken at least one of them. The kernel picks
 * the worker that accepts, and on a busy machine one may win a whole batch: such a batch is closed
 * and tried again (five times at most; the caller asserts the spread).
 */
async function openSpread(p: Ports, n: number): Promise<TaggedClient[]> {
  const before = new Map((await workers(p)).map((w) => [w.id, w.connections]));
  const total = (ws: readonly WorkerInfo[]): number => ws.reduce((sum, w) => sum + w.connections, 0);
  const baseline = [...before.values()].reduce((a, b) => a + b, 0);
  for (let attempt = 1; ; attempt++) {
    const clients = await openMany(`ws://127.0.0.1:${p.port}/`, n, n);
    const now = await workers(p);
    if (now.every((w) => w.connections > (before.get(w.id) ?? 0)) || attempt === 5) return clients;
    closeAll(clients);
    const deadline = Date.now() + 10_000;
    while (total(await workers(p)) > baseline) {
      if (Date.now() > deadline) throw new Error('closed clients still counted by the workers');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function handshakeStatus(port: number): Promise<number> {
  return statusOf(await rawExchange(port, upgradeRequest('/'), /\r\n\r\n/));
}

async function stop(gw: Started): Promise<void> {
  gw.child.kill('SIGTERM');
  const how = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('timeout'), 20_000))]);
  if (how !== 0) gw.child.kill('SIGKILL');
  assert.equal(how, 0, gw.err());
}

function closeAll(clients: readonly TaggedClient[]): void {
  for (const c of clients) c.ws.terminate();
}

void describe('cluster.workers', { timeout: 90_000 }, () => {
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
    const clients = await openMany(`ws://127.0.0.1:${p.port}/`, 10, 1);
    try {
      const [victim] = await workers(p);
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
