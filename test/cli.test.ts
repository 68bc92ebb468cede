import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { echo, freePort, openClient, startBackend } from './helpers.js';
import { configFile, gatewayConfig, jsonLines, printed, run, startWsgate, wsgate, type Started } from './process-helpers.js';

/** A module loaded before wsgate (`--import`) that reports the young generation's size as the process exits. */
async function youngGenerationProbe(): Promise<string> {
  const probe = join(await mkdtemp(join(tmpdir(), 'wsgate-cli-')), 'young-generation-probe.mjs');
  await writeFile(
    probe,
    "import v8 from 'node:v8';\n" +
      "process.on('exit', () => process.stderr.write(`new_space ${v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size}\\n`));\n",
  );
  return probe;
}

void describe('wsgate CLI', () => {
  void it('--version and --help', async () => {
    const v = await run(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.out.trim(), /^\d+\.\d+\.\d+$/);
    const h = await run(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /wsgate start/);
  });

  void it('check: a valid file exits 0; an invalid one exits 1 listing every problem', async () => {
    const good = await configFile(
      'listeners: [{ address: 127.0.0.1:8080 }]\nroutes: [{ match: { path: / }, upstream: app }]\nupstreams: { app: { targets: [{ url: ws://127.0.0.1:3000 }] } }\n',
    );
    const ok = await run(['check', '-c', good]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /ok/);
    const bad = await configFile(
      'listeners: [{ address: nowhere }]\nroutes: [{ match: { path: / }, upstream: ap }]\nupstreams: { app: { targets: [{ url: ftp://x }] } }\nlimits: { maxConection: 3 }\n',
    );
    const no = await run(['check', '-c', bad]);
    assert.equal(no.code, 1);
    assert.match(no.err, /listeners\[0\]\.address: /);
    assert.match(no.err, /routes\[0\]\.upstream: /);
    assert.match(no.err, /upstreams\.app\.targets\[0\]\.url: must be ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//);
    assert.match(no.err, /limits\.maxConection: unknown key \(did you mean maxConnections\?\)/);
  });

  void it('start: SIGTERM and SIGINT each stop accepting, let sessions drain, then exit 0', { timeout: 60_000 }, async (t) => {
    const backend = await startBackend();
    try {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const port = await freePort();
        const file = await configFile(
          gatewayConfig(
            port,
            backend.url,
            `shutdown: { drainTimeout: 1500ms }
relay: { mode: tunnel }`,
          ),
        );
        const gw = await startWsgate(['-c', file], { signal: t.signal });
        try {
          const ws = await openClient(`ws://127.0.0.1:${port}`);
          assert.equal(await echo(ws, 'before'), 'before');
          gw.child.kill(signal);
          await printed(gw, 'draining');
          // New connections are refused while the open session keeps working.
          const probe = connect(port, '127.0.0.1');
          const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
          assert.equal(err.code, 'ECONNREFUSED', signal);
          assert.equal(await echo(ws, 'during'), 'during', signal);
          await once(ws, 'close');
          assert.equal(await gw.exited, 0, signal);
          assert.match(gw.out(), /"msg":"session closed"/, signal);
        } finally {
          gw.child.kill('SIGKILL');
        }
      }
    } finally {
      await backend.close();
    }
  });

  void it('start: with no -c, reads ./wsgate.yaml from its working directory', { timeout: 30_000 }, async (t) => {
    const backend = await startBackend();
    const port = await freePort();
    const file = await configFile(gatewayConfig(port, backend.url, `shutdown: { drainTimeout: 0 }`));
    let gw: Started | undefined;
    try {
      gw = await startWsgate([], { cwd: dirname(file), signal: t.signal });
      const ws = await openClient(`ws://127.0.0.1:${port}`);
      assert.equal(await echo(ws, 'from ./wsgate.yaml'), 'from ./wsgate.yaml');
      ws.close();
      await once(ws, 'close');
    } finally {
      gw?.child.kill('SIGKILL');
      await backend.close();
      await rm(dirname(file), { recursive: true, force: true });
    }
  });

  void it('start: an invalid config exits 1 naming each problem as path.to.key: what is wrong', { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'wsgate-cli-'));
    try {
      await writeFile(
        join(dir, 'bad.yaml'),
        `listeners: [{ address: 127.0.0.1:${port} }]\nroutes: [{ match: { path: / }, upstream: ap }]\nupstreams: { app: { targets: [{ url: ftp://x }] } }\n`,
      );
      const r = await run(['start', '-c', 'bad.yaml'], { cwd: dir, signal: t.signal });
      assert.equal(r.code, 1, r.out + r.err);
      assert.match(r.err, /^bad\.yaml: invalid configuration$/m);
      assert.match(r.err, /^ {2}routes\[0\]\.upstream: \S/m);
      assert.match(r.err, /^ {2}upstreams\.app\.targets\[0\]\.url: must be ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//m);
      assert.doesNotMatch(r.out, /wsgate started/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('check accepts the cluster keys without a "not implemented" warning', { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const file = await configFile(gatewayConfig(port, 'ws://127.0.0.1:9', 'cluster: { workers: 2, redis: redis://127.0.0.1:6379, onRedisError: deny }'));
    const checked = await run(['check', '-c', file], { signal: t.signal });
    assert.equal(checked.code, 0, checked.err);
    assert.match(checked.out, /: ok /);
    assert.doesNotMatch(checked.out, /not implemented/);
  });

  void it("start with log.format pretty prints human-readable lines, not JSON, through to 'wsgate stopped'", { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const file = await configFile(gatewayConfig(port, 'ws://127.0.0.1:9', 'log: { format: pretty }'));
    const gw = await startWsgate(['-c', file], { signal: t.signal });
    try {
      const line = gw
        .out()
        .split('\n')
        .find((l) => l.includes('wsgate started'));
      assert.ok(line !== undefined);
      assert.throws(() => JSON.parse(line) as unknown, SyntaxError, line);
      assert.match(line, /INFO/);
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0, gw.err());
      // The last line, logged just before the process exits: the logger's worker thread still prints it.
      assert.match(gw.out(), /wsgate stopped/);
      assert.deepEqual(jsonLines(gw.out()), []);
    } finally {
      gw.child.kill('SIGKILL');
    }
  });

  void it('start without the native module: a warning says why, and both modes still relay', { timeout: 60_000 }, async () => {
    // A copy of the sources with no build/ beside it: the module cannot load.
    const root = join(import.meta.dirname, '..');
    const dir = await mkdtemp(join(tmpdir(), 'wsgate-no-native-'));
    await cp(join(root, 'src'), join(dir, 'src'), { recursive: true });
    await cp(join(root, 'package.json'), join(dir, 'package.json'));
    await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
    const backend = await startBackend();
    try {
      for (const [mode, warning] of [
        ['inspect', 'the native module is not available: every read takes a buffer of its own'],
        ['tunnel', 'the native relay core is not available: tunnel mode relays in JavaScript'],
      ] as const) {
        const port = await freePort();
        const file = await configFile(
          gatewayConfig(
            port,
            backend.url,
            `shutdown: { drainTimeout: 0 }
relay: { mode: ${mode} }`,
          ),
        );
        const child = spawn(process.execPath, ['--import', 'tsx', join(dir, 'src', 'main.ts'), 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr!.resume();
        try {
          while (!out.includes(warning)) await once(child.stdout!, 'data');
          assert.match(out, /"reason":"not built \(npm ci builds it with node-gyp/);
          const ws = await openClient(`ws://127.0.0.1:${port}`);
          assert.equal(await echo(ws, `${mode} without the module`), `${mode} without the module`);
          ws.close();
          await once(ws, 'close');
        } finally {
          child.kill('SIGKILL');
        }
      }
    } finally {
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it("start keeps V8's young generation small, unless Node's command line sizes it", { timeout: 60_000 }, async () => {
    const backend = await startBackend();
    const probe = await youngGenerationProbe();
    const newSpace = async (nodeFlags: string[], env?: NodeJS.ProcessEnv): Promise<number> => {
      const port = await freePort();
      const file = await configFile(
        `listeners: [{ address: 127.0.0.1:${port} }]\nroutes: [{ match: { path: / }, upstream: app }]\nupstreams: { app: { targets: [{ url: "${backend.url}" }] } }\nrelay: { mode: inspect }\nlimits: { perIp: { maxConnections: 1000, handshakeRate: 10000/s, handshakeBurst: 1000 } }\n`,
      );
      const child = wsgate(['start', '-c', file], [...nodeFlags, '--import', probe], env);
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      try {
        while (!out.includes('wsgate started')) await once(child.stdout!, 'data');
        // Sessions that stay open while more are made: what a young generation sized by survival grows on.
        const open = [];
        for (let i = 0; i < 300; i++) {
          const ws = await openClient(`ws://127.0.0.1:${port}`);
          assert.equal(await echo(ws, `m${i}`), `m${i}`);
          open.push(ws);
        }
        for (const ws of open) ws.terminate();
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      } finally {
        child.kill('SIGKILL');
      }
      const m = /new_space (\d+)/.exec(err);
      assert.ok(m, err);
      return Number(m[1]);
    };
    try {
      const MiB = 1024 * 1024;
      // V8 alone grows it to 16-32 MiB here, while loading the gateway and making the sessions.
      const kept = await newSpace([]);
      assert.ok(kept <= 4 * MiB, `new space ${kept / MiB} MiB`);
      const sized = await newSpace(['--max-semi-space-size=8']);
      assert.ok(sized > 4 * MiB, `new space ${sized / MiB} MiB`);
      // The same through NODE_OPTIONS, as docs/operations.md shows it.
      const viaEnv = await newSpace([], { ...process.env, NODE_OPTIONS: '--max-semi-space-size=8' });
      assert.ok(viaEnv > 4 * MiB, `new space ${viaEnv / MiB} MiB`);
    } finally {
      await backend.close();
    }
  });

  void it("echo and bench, and bench's load workers, keep the young generation small too", { timeout: 60_000 }, async () => {
    // Their own collections would pause the load and show in the latencies they measure.
    const probe = await youngGenerationProbe();
    const echoServer = wsgate(['echo', '--port', '0'], ['--import', probe]);
    let echoOut = '';
    let echoErr = '';
    echoServer.stdout!.on('data', (d: Buffer) => (echoOut += d.toString()));
    echoServer.stderr!.on('data', (d: Buffer) => (echoErr += d.toString()));
    try {
      let url: string | undefined;
      while ((url = /ws:\/\/127\.0\.0\.1:\d+\//.exec(echoOut)?.[0]) === undefined) await once(echoServer.stdout!, 'data');
      // V8 alone grows the young generation of all four processes to 8-32 MiB under this load.
      const load = wsgate(
        ['bench', url, '--workers', '2', '--connections', '1000', '--rate', '5000', '--duration', '2s', '--no-progress'],
        ['--import', probe],
      );
      let loadErr = '';
      load.stderr!.on('data', (d: Buffer) => (loadErr += d.toString()));
      const [code] = (await once(load, 'exit')) as [number];
      assert.equal(code, 0, loadErr);
      const exited = once(echoServer, 'exit');
      echoServer.kill('SIGTERM');
      await exited;
      const sizes = [...`${echoErr}${loadErr}`.matchAll(/new_space (\d+)/g)].map((m) => Number(m[1]));
      assert.equal(sizes.length, 4, `${echoErr}${loadErr}`);
      for (const size of sizes) assert.ok(size <= 4 * 1024 * 1024, `new space ${size / 1024 / 1024} MiB`);
    } finally {
      echoServer.kill('SIGKILL');
    }
  });
});
