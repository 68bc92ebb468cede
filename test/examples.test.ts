// The example chat backends (examples/node-chat in Node.js, examples/go-chat in Go) behind one
// wsgate with examples/wsgate.yaml, two backends of each kind, as examples/README.md runs them.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';
import { eventually, freePort, startGateway, type RunningGateway } from './helpers.js';
import { findBinary, run } from './process-helpers.js';
import { loadConfig } from '../src/config/load.js';
import { handshake, hs256 } from './auth-fixtures.js';

const ROOT = join(import.meta.dirname, '..');
const EXAMPLES = join(ROOT, 'examples');
/** The configs' default for ${JWT_SECRET}, which examples/token.js signs with too. */
const DEMO_SECRET = 'demo-secret-for-the-wsgate-examples-change-me';
const GO = findBinary('go');
const NO_GO = GO === undefined && 'go is not installed (apt-get install golang-go golang-github-gorilla-websocket-dev; .ci/run does)';

/** Every event the backends send. */
interface ChatEvent {
  readonly type: 'hello' | 'join' | 'leave' | 'message';
  readonly backend: string;
  readonly room: string;
  readonly user: string;
  readonly text?: string;
  readonly members?: number;
}

interface Member {
  readonly ws: WebSocket;
  readonly hello: ChatEvent;
  readonly events: ChatEvent[];
  /** Code and reason of the close the client received. */
  readonly closed: Promise<readonly [number, string]>;
}

interface BackendProcess {
  readonly id: string;
  readonly child: ChildProcess;
  out(): string;
  /** The exit code, or the signal's name. */
  readonly exited: Promise<number | string>;
}

/** Starts a backend and resolves once it listens; rejects, with what it printed, if it exits first. */
async function startBackendProcess(id: string, command: string, args: string[]): Promise<BackendProcess> {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => {
    child.once('close', (code: number | null, signal: string | null) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(err.message));
  });
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (!out.includes(`${id}: listening on`)) return;
      child.stdout!.off('data', check);
      resolve();
    };
    child.stdout!.on('data', check);
    void exited.then((how) => reject(new Error(`${id} ended (${how}) before listening:\n${out}`)));
  });
  return { id, child, out: () => out, exited };
}

const kinds = [
  { kind: 'node', path: '/chat/node', skip: false as const },
  { kind: 'go', path: '/chat/go', skip: NO_GO },
];

void describe('the example chat backends behind wsgate (examples/wsgate.yaml)', { timeout: 90_000 }, () => {
  let dir: string;
  let gw: RunningGateway;
  let adminPort: number;
  const backends: Record<string, BackendProcess[]> = { node: [], go: [] };
  const open = new Set<WebSocket>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wsgate-examples-'));
    const ports = { node: [await freePort(), await freePort()], go: [await freePort(), await freePort()] };
    const starting = ports.node.map((p) => startBackendProcess(`node-${p}`, process.execPath, [join(EXAMPLES, 'node-chat', 'server.js'), '--port', String(p)]));
    if (GO !== undefined) {
      // Offline, from Debian's golang-github-gorilla-websocket-dev (go.mod's replace): no module proxy.
      const env: NodeJS.ProcessEnv = { ...process.env, GOPROXY: 'off', GOTOOLCHAIN: 'local' };
      if (env.GOCACHE === undefined && env.HOME === undefined && env.XDG_CACHE_HOME === undefined) env.GOCACHE = join(dir, 'go-cache');
      const binary = join(dir, 'go-chat');
      await promisify(execFile)(GO, ['build', '-o', binary, '.'], { cwd: join(EXAMPLES, 'go-chat'), env, timeout: 45_000 }).catch(
        (err: Error & { stderr?: string }) => {
          throw new Error(`go build in examples/go-chat failed: ${err.message}\n${err.stderr ?? ''}`);
        },
      );
      starting.push(...ports.go.map((p) => startBackendProcess(`go-${p}`, binary, ['--port', String(p)])));
    }
    const started = await Promise.allSettled(starting);
    for (const s of started) if (s.status === 'fulfilled') backends[s.value.id.split('-')[0]!]!.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;

    const yaml = await readFile(join(EXAMPLES, 'wsgate.yaml'), 'utf8');
    // Every client of this test comes from 127.0.0.1: lift the per-address handshake rate meant for one user.
    gw = await startGateway(`${yaml}\nlimits: { perIp: { handshakeRate: 0 } }\n`, {
      WSGATE_ADDRESS: '127.0.0.1:0',
      WSGATE_ADMIN_ADDRESS: '127.0.0.1:0',
      NODE_CHAT_PORT_1: String(ports.node[0]),
      NODE_CHAT_PORT_2: String(ports.node[1]),
      GO_CHAT_PORT_1: String(ports.go[0]),
      GO_CHAT_PORT_2: String(ports.go[1]),
    });
    adminPort = gw.gw.adminAddress!.port;
  });

  afterEach(() => {
    for (const ws of open) ws.close(1000);
    open.clear();
  });

  after(async () => {
    await gw?.close();
    for (const b of [...backends.node!, ...backends.go!]) {
      if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
      await b.exited;
    }
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const token = (user: string): Promise<string> => hs256({ sub: user }, { secret: DEMO_SECRET });

  /** A client in `path` (a room) as `user`, once the backend's hello is in. */
  async function enter(path: string, user: string, opts: { token?: string; headers?: Record<string, string> } = {}): Promise<Member> {
    const ws = new WebSocket(`${gw.url}${path}`, { headers: { authorization: `Bearer ${opts.token ?? (await token(user))}`, ...opts.headers } });
    open.add(ws);
    const events: ChatEvent[] = [];
    ws.on('error', () => {});
    ws.on('message', (data: Buffer) => events.push(JSON.parse(data.toString()) as ChatEvent));
    const closed = new Promise<readonly [number, string]>((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve([code, reason.toString()])));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await eventually(() => events.length > 0, 10_000, `the hello for ${user}`);
    assert.equal(events[0]!.type, 'hello', JSON.stringify(events[0]));
    return { ws, hello: events[0]!, events, closed };
  }

  /** Someone else in the room who landed on `backend` (users are spread by hash: about one in two does). */
  async function partnerOn(path: string, backend: string, prefix: string): Promise<Member> {
    for (let i = 0; i < 30; i++) {
      const m = await enter(path, `${prefix}-${i}`);
      if (m.hello.backend === backend) return m;
      m.ws.close(1000);
    }
    throw new Error(`no user of 30 reached ${backend}`);
  }

  for (const { kind, path, skip } of kinds) {
    void it(`${kind}: a message in a room reaches its other members, sent by the ${kind} backend`, { skip }, async () => {
      const alice = await enter(`${path}/lobby`, 'alice');
      assert.ok(
        backends[kind]!.some((b) => b.id === alice.hello.backend),
        `hello from ${alice.hello.backend}, not one of ${backends[kind]!.map((b) => b.id).join(', ')}`,
      );
      assert.deepEqual({ room: alice.hello.room, user: alice.hello.user }, { room: 'lobby', user: 'alice' });
      const bob = await partnerOn(`${path}/lobby`, alice.hello.backend, `bob-${kind}`);
      await eventually(() => alice.events.some((e) => e.type === 'join' && e.user === bob.hello.user), 10_000, 'the join');

      bob.ws.send(`hi from ${kind}`);
      await eventually(() => alice.events.some((e) => e.type === 'message'), 10_000, "bob's message at alice");
      assert.deepEqual(
        alice.events.find((e) => e.type === 'message'),
        { type: 'message', backend: alice.hello.backend, room: 'lobby', user: bob.hello.user, text: `hi from ${kind}` },
      );
      // Another room on the same backend does not hear it.
      const carol = await partnerOn(`${path}/elsewhere`, alice.hello.backend, `carol-${kind}`);
      bob.ws.send('second');
      await eventually(() => alice.events.filter((e) => e.type === 'message').length === 2, 10_000, 'the second message');
      assert.equal(
        carol.events.some((e) => e.type === 'message'),
        false,
      );
      // A binary message is refused with the backend's own close code, passed through wsgate; the room hears bob leave.
      bob.ws.send(Buffer.from([1, 2, 3]));
      assert.deepEqual(await bob.closed, [1003, 'text messages only']);
      await eventually(() => alice.events.some((e) => e.type === 'leave' && e.user === bob.hello.user), 10_000, 'the leave');
    });
  }

  void it('no token, a forged token: 401 before any backend; a client-sent X-User-Id is replaced by the token user', async () => {
    for (const { path } of kinds) {
      const none = await handshake(gw.port, [], `${path}/lobby`);
      assert.equal(none.status, 401, none.text);
      assert.match(none.text, /WWW-Authenticate: Bearer/i);
      const forged = await hs256({ sub: 'mallory' }, { secret: 'not-the-secret-of-this-gateway-0123456789' });
      assert.equal((await handshake(gw.port, [`Authorization: Bearer ${forged}`], `${path}/lobby`)).status, 401);
    }
    for (const b of [...backends.node!, ...backends.go!]) assert.doesNotMatch(b.out(), /mallory/, `${b.id} saw a refused client`);
    const alice = await enter('/chat/node/lobby', 'alice', { headers: { 'x-user-id': 'mallory' } });
    assert.equal(alice.hello.user, 'alice');
  });

  void it('a token from examples/token.js (the demo secret) is accepted', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(EXAMPLES, 'token.js'), 'dave'], { env: { ...process.env, JWT_SECRET: '' } });
    const dave = await enter('/chat/node/lobby', 'dave', { token: stdout.trim() });
    assert.equal(dave.hello.user, 'dave');
  });

  for (const { kind, path, skip } of kinds) {
    void it(`${kind}: hash on the user id: one user's connections share a backend, users spread over both`, { skip }, async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 16; i++) {
        const user = `sticky-${kind}-${i}`;
        const [a, b] = await Promise.all([enter(`${path}/room-${i}`, user), enter(`${path}/other-${i}`, user)]);
        assert.equal(a.hello.backend, b.hello.backend, `${user}'s two connections`);
        a.ws.close(1000);
        await a.closed;
        const again = await enter(`${path}/room-${i}`, user);
        assert.equal(again.hello.backend, a.hello.backend, `${user} reconnected`);
        seen.add(a.hello.backend);
      }
      assert.deepEqual([...seen].sort(), backends[kind]!.map((b) => b.id).sort(), 'the 16 users all landed on one backend');
    });
  }

  void it('a drained backend closes its clients with 1012; they reconnect to the other, and back after the undrain', async () => {
    const erin = await enter('/chat/node/lobby', 'erin');
    const index = backends.node!.findIndex((b) => b.id === erin.hello.backend);
    const admin = (action: string): Promise<Response> =>
      fetch(`http://127.0.0.1:${adminPort}/api/upstreams/node-chat/targets/${index}/${action}`, { method: 'POST' });
    assert.equal((await admin('drain')).status, 200);
    try {
      const [code] = await erin.closed;
      assert.equal(code, 1012);
      const moved = await enter('/chat/node/lobby', 'erin');
      assert.notEqual(moved.hello.backend, erin.hello.backend);
    } finally {
      assert.equal((await admin('undrain')).status, 200);
    }
    const back = await enter('/chat/node/lobby', 'erin');
    assert.equal(back.hello.backend, erin.hello.backend);
  });

  // Last: it stops one backend of each kind.
  for (const { kind, path, skip } of kinds) {
    void it(`${kind}: a backend that stops says 1001 through wsgate, exits 0, and its users reconnect to the other`, { skip }, async () => {
      const frank = await enter(`${path}/lobby`, 'frank');
      const backend = backends[kind]!.find((b) => b.id === frank.hello.backend)!;
      backend.child.kill('SIGTERM');
      assert.deepEqual(await frank.closed, [1001, 'backend shutting down']);
      assert.equal(await backend.exited, 0, backend.out());
      assert.match(backend.out(), /frank left lobby \(1001/, 'the backend logs the close it got back');
      const again = await enter(`${path}/lobby`, 'frank');
      assert.notEqual(again.hello.backend, frank.hello.backend);
    });
  }

  void it('wsgate check passes on every example config, with the defaults of its ${VAR}s', async () => {
    // The command examples/README.md gives, once; the check it runs (loadConfig) in this process for every config.
    const checked = await run(['check', '-c', join(EXAMPLES, 'wsgate.yaml')]);
    assert.equal(checked.code, 0, checked.out + checked.err);
    assert.match(checked.out, /: ok \(1 listener\(s\), 2 route\(s\), 2 upstream\(s\)\)/);
    for (const file of ['wsgate.yaml', 'node-chat/wsgate.yaml', 'go-chat/wsgate.yaml']) {
      const config = await loadConfig(join(EXAMPLES, file), {});
      assert.deepEqual(config.inert, [], file);
    }
  });
});
