import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { eventually, freePort, rawExchange, statusOf, upgradeRequest } from './helpers.js';
import { openMany, openTagged, roundTrip, switchableBackend, type SwitchableBackend, type TaggedClient } from './resilience-helpers.js';
import { configFile, jsonLines, printed, startWsgate, type Started } from './process-helpers.js';
import { startRedis, type RedisServer } from './redis-fixture.js';

// As users deploy it: HAProxy in mode tcp with send-proxy-v2 (the stand-in
// for a cloud L4 load balancer), three wsgate instances of two workers each,
// one Redis, several backends. The clients only ever see HAProxy's address.

interface Instance {
  readonly port: number;
  readonly admin: number;
  readonly file: string;
  gw: Started;
}

interface Topology {
  readonly redis: RedisServer;
  readonly backends: readonly SwitchableBackend[];
  readonly instances: readonly Instance[];
  readonly haproxy: ChildProcess;
  readonly front: number;
  close(): Promise<void>;
}

const PER_IP = 10;

function instanceConfig(port: number, admin: number, redis: string, targets: readonly string[]): string {
  return [
    `listeners: [{ address: 127.0.0.1:${port}, proxyProtocol: true }]`,
    `admin: { address: 127.0.0.1:${admin} }`,
    'routes: [{ match: { path: / }, upstream: app }]',
    `upstreams: { app: { drainPeriod: 0s, targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}] } }`,
    `limits: { perIp: { maxConnections: ${PER_IP}, handshakeRate: 0 } }`,
    `cluster: { workers: 2, redis: "${redis}" }`,
    'shutdown: { drainTimeout: 5s }',
    '',
  ].join('\n');
}

function haproxyConfig(front: number, instances: readonly Instance[]): string {
  return [
    'global',
    '  maxconn 2000',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout tunnel 1h',
    '  retries 3',
    '  option redispatch 1',
    'frontend ws',
    `  bind 127.0.0.1:${front}`,
    '  default_backend gateways',
    'backend gateways',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    ...instances.map((g, i) => `  server g${i} 127.0.0.1:${g.port} send-proxy-v2 check port ${g.admin} inter 200ms fall 1 rise 2`),
    '',
  ].join('\n');
}

async function startTopology(signal: AbortSignal): Promise<Topology> {
  const redis = await startRedis();
  const backends = await Promise.all(['b1', 'b2', 'b3'].map((n) => switchableBackend(n)));
  const instances: Instance[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const admin = await freePort();
    const file = await configFile(
      instanceConfig(
        port,
        admin,
        redis.url,
        backends.map((b) => b.url),
      ),
    );
    instances.push({ port, admin, file, gw: await startWsgate(['-c', file], { signal }) });
  }
  const front = await freePort();
  const cfg = join(dirname(instances[0]!.file), 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig(front, instances));
  const haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
  haproxy.on('error', () => {});
  // Ready when its health checks have found every instance up: then a handshake goes through.
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await rawExchange(front, upgradeRequest('/'), /\r\n\r\n/, 2_000)
      .then((a) => statusOf(a) === 101)
      .catch(() => false);
    if (!ok) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(ok, 'HAProxy passes a handshake through');
  return {
    redis,
    backends,
    instances,
    haproxy,
    front,
    async close() {
      haproxy.kill('SIGKILL');
      for (const g of instances) g.gw.child.kill('SIGKILL');
      await Promise.all(instances.map((g) => g.gw.exited));
      await Promise.all(backends.map((b) => b.close()));
      await redis.stop();
    },
  };
}

async function api(admin: number, path: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${admin}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface InstanceView {
  readonly pid: number;
  readonly connections: number;
  readonly workers: ReadonlyArray<{ pid: number; connections: number }>;
}

async function registry(admin: number): Promise<InstanceView[]> {
  return (await api(admin, '/api/cluster')).body.instances as InstanceView[];
}

async function connectionsOf(g: Instance): Promise<number> {
  const [me] = (await registry(g.admin)).filter((i) => i.pid === g.gw.child.pid);
  return me?.connections ?? -1;
}

function closeAll(clients: readonly TaggedClient[]): void {
  for (const c of clients) c.ws.terminate();
}

void describe('behind HAProxy: three instances, two workers each, one Redis', { timeout: 120_000 }, () => {
  void it('holds a per-IP limit across the instances, drains a target on all of them from any one, and lists every instance', async (t) => {
    const top = await startTopology(t.signal);
    const url = `ws://127.0.0.1:${top.front}/`;
    const clients: TaggedClient[] = [];
    try {
      clients.push(...(await openMany(url, PER_IP, 1)));
      // Each instance took some: a limit per instance would let 30 through.
      for (const g of top.instances) assert.ok((await connectionsOf(g)) > 0, 'every instance holds connections');
      for (let i = 0; i < 3; i++) assert.equal(statusOf(await rawExchange(top.front, upgradeRequest('/'), /\r\n\r\n/)), 429);
      const listed = await registry(top.instances[0]!.admin);
      assert.equal(listed.length, 3);
      assert.ok(listed.every((i) => i.workers.length === 2));
      let held = 0;
      for (const g of top.instances) held += await connectionsOf(g);
      assert.equal(held, PER_IP);

      // A drain through one instance's admin API reaches every instance: all of b1's clients get 1012.
      const onB1 = clients.filter((c) => c.backend === 'b1');
      assert.ok(onB1.length > 0);
      assert.equal((await api(top.instances[2]!.admin, '/api/upstreams/app/targets/0/drain', 'POST')).status, 200);
      await eventually(() => onB1.every((c) => c.closed?.code === 1012), 15_000, 'every b1 client, on every instance, to get 1012');
      assert.ok(clients.filter((c) => c.backend !== 'b1').every((c) => c.closed === undefined));
      for (const g of top.instances) {
        const ups = (await api(g.admin, '/api/upstreams')).body.upstreams as Array<{ targets: Array<{ drained: boolean }> }>;
        assert.equal(ups[0]!.targets[0]!.drained, true);
      }
      // New clients avoid the drained target, wherever they land.
      const more = await openMany(url, onB1.length, 1);
      clients.push(...more);
      assert.ok(more.every((c) => c.backend !== 'b1'));
    } finally {
      closeAll(clients);
      await top.close();
    }
  });

  void it('a killed instance’s clients reconnect through the balancer to the other two; SIGTERM flips /readyz to 503 and its clients move too', async (t) => {
    const top = await startTopology(t.signal);
    const url = `ws://127.0.0.1:${top.front}/`;
    const clients: TaggedClient[] = [];
    const [a, b, c] = top.instances as [Instance, Instance, Instance];
    try {
      clients.push(...(await openMany(url, 6, 1)));
      // A whole instance dies (primary and workers at once, as when its machine goes).
      const [view] = (await registry(a.admin)).filter((i) => i.pid === a.gw.child.pid);
      for (const pid of [view!.pid, ...view!.workers.map((w) => w.pid)]) process.kill(pid, 'SIGKILL');
      await a.gw.exited;
      await eventually(() => clients.some((x) => x.closed !== undefined), 10_000, 'the dead instance’s clients to be cut');
      await new Promise((r) => setTimeout(r, 300));
      const cut = clients.filter((x) => x.closed !== undefined);
      assert.equal(cut.length, view!.connections);
      const back = await Promise.all(cut.map(() => openTagged(url)));
      for (const x of back) await roundTrip(x, 'moved');
      const alive = [...clients.filter((x) => x.closed === undefined), ...back];
      for (const x of alive) await roundTrip(x, 'still here');
      assert.equal((await connectionsOf(b)) + (await connectionsOf(c)), alive.length);

      // A drain: /readyz answers 503 while the instance finishes its sessions, and its clients move to the last one.
      const silent = connect(b.port, '127.0.0.1');
      silent.on('error', () => {});
      silent.write(`PROXY TCP4 127.0.0.9 127.0.0.1 40000 ${b.port}\r\n${upgradeRequest('/')}`);
      await once(silent, 'data');
      const onB = await connectionsOf(b);
      b.gw.child.kill('SIGTERM');
      await eventually(() => alive.filter((x) => x.closed?.code === 1001).length === onB - 1, 10_000, 'its clients to get 1001');
      assert.equal((await api(b.admin, '/readyz')).status, 503);
      const moved = alive.filter((x) => x.closed?.code === 1001);
      const again = await Promise.all(moved.map(() => openTagged(url)));
      for (const x of again) await roundTrip(x, 'moved again');
      clients.push(...back, ...again);
      silent.destroy();
      assert.equal(await b.gw.exited, 0);
      assert.equal(await connectionsOf(c), alive.length - moved.length + again.length);
    } finally {
      closeAll(clients);
      await top.close();
    }
  });
});

void describe('cluster.redis: Redis down and back', { timeout: 120_000 }, () => {
  for (const onRedisError of ['allow', 'deny'] as const) {
    void it(`onRedisError: ${onRedisError}: handshakes ${onRedisError === 'allow' ? 'go on, on local limits' : 'get 503'}, within a bounded wait; the shared limits hold again once Redis is back`, async (t) => {
      const redis = await startRedis();
      const backend = await switchableBackend('b1');
      const port = await freePort();
      const admin = await freePort();
      const text = instanceConfig(port, admin, redis.url, [backend.url])
        .replace(', proxyProtocol: true', '')
        .replace(`maxConnections: ${PER_IP}`, 'maxConnections: 4')
        .replace('cluster: { workers: 2,', `cluster: { workers: 2, onRedisError: ${onRedisError},`);
      const gw = await startWsgate(['-c', await configFile(text)], { signal: t.signal });
      const clients: TaggedClient[] = [];
      const handshake = async (): Promise<{ status: number; ms: number }> => {
        const started = Date.now();
        const answer = await rawExchange(port, upgradeRequest('/'), /\r\n\r\n/);
        return { status: statusOf(answer), ms: Date.now() - started };
      };
      try {
        clients.push(...(await openMany(`ws://127.0.0.1:${port}/`, 4, 1)));
        assert.equal((await handshake()).status, 429);
        redis.pause();
        const during = await handshake();
        // The first handshake of an outage waits at most the 250 ms bound (plus scheduling), never for Redis.
        assert.ok(during.ms < 3_000, `answered in ${during.ms} ms`);
        assert.equal(during.status, onRedisError === 'allow' ? 101 : 503);
        await printed(gw, '"redis unreachable"');
        if (onRedisError === 'allow') clients.push(await openTagged(`ws://127.0.0.1:${port}/`));
        else assert.equal((await handshake()).status, 503);
        for (const c of clients) await roundTrip(c, 'through the outage');
        redis.resume();
        await printed(gw, '"redis reachable again"');
        // Every open session, those admitted during the outage included, counts in Redis again.
        let status = 0;
        for (let i = 0; i < 50 && status !== 429; i++) {
          status = (await handshake()).status;
          if (status !== 429) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(status, 429);
        assert.ok(
          jsonLines(gw.out()).every((l) => l.level !== 60),
          'nothing fatal was logged',
        );
        assert.equal(gw.child.exitCode, null);
      } finally {
        redis.resume();
        closeAll(clients);
        gw.child.kill('SIGTERM');
        await gw.exited;
        await backend.close();
        await redis.stop();
      }
    });
  }
});
