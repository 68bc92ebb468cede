import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import {
  acceptUpgrade,
  echo,
  eventually,
  freePort,
  openClient,
  rawExchange,
  simpleConfig,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
} from './helpers.js';
import { makeCa, NO_OPENSSL } from './tls-fixtures.js';
import { configFile, startWsgate } from './process-helpers.js';
import { acceptedInCore, CORE_ACCEPT } from '../src/relay/core-handle.js';
import { coreSessions } from '../src/relay/native-tunnel.js';
import { inspectCoreSessions } from '../src/relay/native-inspect.js';

// Plain listeners accept in the native module (native/conn.c,
// src/relay/core-handle.ts): the connection is in the module's epoll set from
// accept4() on, goes through the head reader and the handshake on a handle
// that speaks Node's handle API, and moves into a relay core as it is. Every
// other test on a plain listener runs through it too; these check what only
// it does: that it is the path taken, that what needs Node's socket gets one,
// the peer's address from accept4(), and running out of descriptors.

const skip = !CORE_ACCEPT && 'the native module is not built, or WSGATE_ACCEPT=node / WSGATE_RELAY_IO is set';
const execFileP = promisify(execFile);

/** Node's accept serves the listener until the module takes over, two turns of the loop after the listen. */
async function moduleTakesOver(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

void describe('connections accepted by the native module', { skip }, () => {
  for (const mode of ['tunnel', 'inspect'] as const) {
    void it(`${mode} mode: upgrades are accepted in the module and carried by the core; refusals and plain HTTP requests are answered`, async () => {
      const backend = await startBackend();
      const g = await startGateway(simpleConfig([backend.url], `relay: { mode: ${mode} }`));
      try {
        await moduleTakesOver();
        const before = acceptedInCore();
        const ws = await openClient(g.url);
        assert.equal(await echo(ws, 'through the module'), 'through the module');
        assert.equal(mode === 'tunnel' ? coreSessions() : inspectCoreSessions(), 1, 'the session runs in the core');
        // A refusal is written on the module's connection, and the connection closed.
        const refused = await rawExchange(
          g.port,
          'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
        );
        assert.equal(statusOf(refused), 400, refused);
        // A plain request (HTTP passthrough) needs Node's HTTP server: the descriptor goes back to Node.
        const plain = await rawExchange(g.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /http ok/);
        assert.equal(statusOf(plain), 200, plain);
        assert.equal(acceptedInCore() - before, 3, 'all three accepted by the module');
        ws.close();
        await eventually(() => (mode === 'tunnel' ? coreSessions() : inspectCoreSessions()) === 0, 10_000, 'the session to end');
      } finally {
        await g.close();
        await backend.close();
      }
    });
  }

  void it(
    'a client that stops reading while a TLS upstream (no core takes it) sends 16 MB gets every byte once it reads again, then the end',
    { skip: NO_OPENSSL },
    async () => {
      // A wss:// target keeps the session in JavaScript, on the module's connection: with room to buffer all of it, its writes queue in the module and its FIN waits behind them.
      const ca = makeCa();
      const cert = ca.issue('up', ['backend.internal']);
      const payload = randomBytes(16 << 20);
      const tls = createTlsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (s) => {
        s.on('error', () => {});
        void acceptUpgrade(s as never).then(() => s.end(payload));
      });
      tls.listen(0, '127.0.0.1');
      await new Promise((r) => tls.once('listening', r));
      const tlsPort = (tls.address() as { port: number }).port;
      const g = await startGateway(
        simpleConfig([`wss://127.0.0.1:${tlsPort}`], `relay: { mode: tunnel }\nlimits: { maxBufferedBytes: 64MiB }`).replace(
          `targets: [{ url: "wss://127.0.0.1:${tlsPort}" }]`,
          `targets: [{ url: "wss://127.0.0.1:${tlsPort}" }]\n    tls: { ca: ${ca.caFile}, servername: backend.internal }`,
        ),
      );
      try {
        await moduleTakesOver();
        const before = acceptedInCore();
        const client = connect(g.port, '127.0.0.1');
        client.on('error', () => {});
        await new Promise((r) => client.once('connect', r));
        client.write(upgradeRequest());
        client.pause();
        // Long enough for the gateway to fill both socket buffers and queue the rest.
        await new Promise((r) => setTimeout(r, 1_000));
        const chunks: Buffer[] = [];
        client.on('data', (c: Buffer) => chunks.push(c));
        client.resume();
        await new Promise((r) => client.once('end', r));
        const got = Buffer.concat(chunks);
        const body = got.subarray(got.indexOf('\r\n\r\n') + 4);
        assert.match(got.toString('latin1', 0, 12), /^HTTP\/1\.1 101/);
        assert.equal(body.length, payload.length);
        assert.equal(createHash('sha1').update(body).digest('hex'), createHash('sha1').update(payload).digest('hex'));
        assert.equal(acceptedInCore() - before, 1);
        client.destroy();
      } finally {
        await g.close();
        await new Promise((r) => tls.close(r));
      }
    },
  );

  void it('the upstream sees the client’s own address, IPv4 and IPv6 (X-Forwarded-For)', async () => {
    const backend = await startBackend();
    const seen: string[] = [];
    backend.wss.on('connection', (_ws, req) => seen.push(String(req.headers['x-forwarded-for'])));
    const g = await startGateway(
      simpleConfig([backend.url]).replace('listeners: [{ address: 127.0.0.1:0 }]', 'listeners: [{ address: "127.0.0.1:0" }, { address: "[::1]:0" }]'),
    );
    try {
      await moduleTakesOver();
      const before = acceptedInCore();
      for (const url of [`ws://127.0.0.1:${g.gw.addresses[0]!.port}/`, `ws://[::1]:${g.gw.addresses[1]!.port}/`]) {
        const ws = await openClient(url);
        assert.equal(await echo(ws, 'x'), 'x');
        ws.close();
      }
      assert.deepEqual(seen, ['127.0.0.1', '::1']);
      assert.equal(acceptedInCore() - before, 2);
    } finally {
      await g.close();
      await backend.close();
    }
  });

  void it('out of descriptors: accepting pauses instead of spinning, and the clients waiting are taken once descriptors are free', async (t) => {
    const backend = await startBackend();
    const port = await freePort();
    const gw = await startWsgate(['-c', await configFile(simpleConfig([backend.url]).replace('127.0.0.1:0', `127.0.0.1:${port}`))], { signal: t.signal });
    const pid = gw.child.pid!;
    const clients: WebSocket[] = [];
    try {
      const url = `ws://127.0.0.1:${port}/`;
      const first = await openClient(url);
      assert.equal(await echo(first, 'warm'), 'warm');
      // No descriptor number free below the limit: the next accept4() fails with EMFILE.
      const used = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
      let limit = 0;
      while (used.has(limit)) limit++;
      const soft = (await execFileP('prlimit', [`--pid=${pid}`, '--nofile', '--output=SOFT', '--noheadings'])).stdout.trim();
      // The soft limit only: lowering the hard one could not be undone without privileges.
      await execFileP('prlimit', [`--pid=${pid}`, `--nofile=${limit}:`]);
      const settled: Array<'open' | 'error'> = [];
      for (let i = 0; i < 5; i++) {
        const ws = new WebSocket(url);
        ws.once('open', () => settled.push('open'));
        ws.once('error', () => settled.push('error'));
        clients.push(ws);
      }
      const cpu = (): number => {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return Number(f[11]) + Number(f[12]);
      };
      await new Promise((r) => setTimeout(r, 300));
      const c0 = cpu();
      await new Promise((r) => setTimeout(r, 1_000));
      const ticks = cpu() - c0;
      // A listening socket that stays readable while accept4() fails would take the whole second (100 ticks).
      assert.ok(ticks < 50, `the gateway spun while out of descriptors: ${ticks} ticks of 100`);
      assert.deepEqual(settled, [], 'the clients wait in the backlog');
      assert.equal(gw.child.exitCode, null);
      assert.equal(await echo(first, 'still here'), 'still here');
      await execFileP('prlimit', [`--pid=${pid}`, `--nofile=${soft}:`]);
      await eventually(() => settled.length === clients.length, 10_000, 'the waiting clients to be taken');
      assert.deepEqual(settled, ['open', 'open', 'open', 'open', 'open']);
      for (const ws of clients) assert.equal(await echo(ws, 'late'), 'late');
      first.close();
    } finally {
      for (const ws of clients) ws.terminate();
      gw.child.kill('SIGTERM');
      await gw.exited;
      await backend.close();
    }
  });
});
