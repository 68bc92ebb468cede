import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { loadConfig, parseConfig } from '../src/config/load.js';
import { createGateway, type Gateway } from '../src/gateway.js';
import { eventually, freePort, rawExchange, statusOf, upgradeRequest } from './helpers.js';
import { countBy, NO_PER_IP_LIMITS, openMany, openTagged, roundTrip, switchableBackend, tempConfig, type SwitchableBackend } from './resilience-helpers.js';

const MAIN = join(import.meta.dirname, '..', 'src', 'main.ts');

interface FileGateway {
  readonly gw: Gateway;
  readonly file: string;
  readonly logs: Record<string, unknown>[];
  url(listener?: number): string;
  close(): Promise<void>;
}

async function startFromFile(text: string): Promise<FileGateway> {
  const file = await tempConfig(text);
  const logs: Record<string, unknown>[] = [];
  const gw = createGateway(await loadConfig(file), {
    configFile: file,
    logDestination: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  await gw.start();
  return { gw, file, logs, url: (i = 0) => `ws://127.0.0.1:${gw.addresses[i]!.port}`, close: () => gw.stop() };
}

function yaml(opts: { listeners?: string[]; routes: string; upstreams: string; limits?: string; extra?: string }): string {
  return `
listeners: [${(opts.listeners ?? ['127.0.0.1:0']).map((a) => `{ address: "${a}" }`).join(', ')}]
routes: ${opts.routes}
upstreams:
${opts.upstreams}
shutdown: { drainTimeout: 0 }
limits: { ${opts.limits ?? ''}${NO_PER_IP_LIMITS} }
${opts.extra ?? ''}`;
}

function upstream(name: string, backends: readonly SwitchableBackend[], extra = ''): string {
  return `  ${name}: { balance: round-robin, drainPeriod: 300ms, targets: [${backends.map((b) => `{ url: "${b.url}" }`).join(', ')}] ${extra} }`;
}

async function withBackends<T>(names: string[], fn: (b: SwitchableBackend[]) => Promise<T>): Promise<T> {
  const backends = await Promise.all(names.map((n) => switchableBackend(n)));
  try {
    return await fn(backends);
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
}

void describe('reload', () => {
  void it('routes change for new connections; open connections keep going', () =>
    withBackends(['a', 'b'], async ([a, b]) => {
      const g = await startFromFile(yaml({ routes: '[{ match: { path: /a }, upstream: ua }]', upstreams: `${upstream('ua', [a!])}\n${upstream('ub', [b!])}` }));
      try {
        const old = await openTagged(`${g.url()}/a`);
        assert.equal(old.backend, 'a');
        await writeFile(g.file, yaml({ routes: '[{ match: { path: /b }, upstream: ub }]', upstreams: `${upstream('ua', [a!])}\n${upstream('ub', [b!])}` }));
        const result = await g.gw.reload();
        assert.equal(result.ok, true);
        assert.ok(g.logs.some((l) => l.msg === 'config reloaded'));
        assert.equal(statusOf(await rawExchange(g.gw.addresses[0]!.port, upgradeRequest('/a'))), 404);
        assert.equal((await openTagged(`${g.url()}/b`)).backend, 'b');
        await roundTrip(old, 'still open');
        assert.equal(old.closed, undefined);
      } finally {
        await g.close();
      }
    }));

  void it('an invalid config leaves the running one in place and logs every error', () =>
    withBackends(['a'], async ([a]) => {
      const g = await startFromFile(yaml({ routes: '[{ match: { path: / }, upstream: app }]', upstreams: upstream('app', [a!]) }));
      try {
        await writeFile(g.file, yaml({ routes: '[{ match: { path: / }, upstream: nope }]', upstreams: upstream('app', [a!]), limits: 'maxConection: 3, ' }));
        const result = await g.gw.reload();
        assert.equal(result.ok, false);
        const errors = result.ok ? [] : result.errors;
        assert.equal(errors.length, 2, errors.join('\n'));
        assert.ok(errors.some((e) => e.startsWith('routes[0].upstream:')));
        assert.ok(errors.some((e) => e.startsWith('limits.maxConection: unknown key')));
        for (const e of errors)
          assert.ok(
            g.logs.some((l) => l.level === 50 && l.problem === e),
            `not logged: ${e}`,
          );
        assert.ok(g.logs.some((l) => l.msg === 'reload rejected; the running configuration stays in place'));
        assert.equal((await openTagged(g.url())).backend, 'a');
      } finally {
        await g.close();
      }
    }));

  void it('limits apply to new connections at once; open ones are not dropped', () =>
    withBackends(['a'], async ([a]) => {
      const base = { routes: '[{ match: { path: / }, upstream: app }]', upstreams: upstream('app', [a!]) };
      const g = await startFromFile(yaml(base));
      try {
        const open = await openMany(g.url(), 3);
        const result = await g.gw.reload(parseConfig(yaml({ ...base, limits: 'maxConnections: 3, ' }), {}));
        assert.equal(result.ok, true);
        assert.equal(statusOf(await rawExchange(g.gw.addresses[0]!.port, upgradeRequest())), 503);
        for (const c of open) await roundTrip(c, 'fine');
        open[0]!.ws.close();
        await open[0]!.closedP;
        await eventually(() => g.gw.stats().sessions === 2, 5_000, 'session count');
        (await openTagged(g.url())).ws.terminate();
      } finally {
        await g.close();
      }
    }));

  void it('a removed target is drained with 1012; an added one takes new connections; others are untouched', () =>
    withBackends(['a', 'b', 'c'], async ([a, b, c]) => {
      const routes = '[{ match: { path: / }, upstream: app }]';
      const g = await startFromFile(yaml({ routes, upstreams: upstream('app', [a!, b!]) }));
      try {
        const clients = await openMany(g.url(), 10);
        const result = await g.gw.reload(parseConfig(yaml({ routes, upstreams: upstream('app', [a!, c!]) }), {}));
        assert.deepEqual(result.ok && [result.targetsAdded, result.targetsRemoved], [[`app/${c!.url}`], [`app/${b!.url}`]]);
        const onB = clients.filter((x) => x.backend === 'b');
        const onA = clients.filter((x) => x.backend === 'a');
        await Promise.all(onB.map((x) => x.closedP));
        for (const x of onB) assert.equal(x.closed?.code, 1012);
        const fresh = await openMany(g.url(), 10);
        assert.deepEqual(
          countBy(fresh, (x) => x.backend),
          { a: 5, c: 5 },
        );
        for (const x of onA) await roundTrip(x, 'untouched');
        const removed = g.gw.upstreamStatus()[0]!.removed;
        assert.ok(removed.length <= 1);
        for (const x of [...onA, ...fresh]) x.ws.terminate();
      } finally {
        await g.close();
      }
    }));

  void it('health and drain state survive a reload (keyed by target id)', () =>
    withBackends(['a', 'b'], async ([a, b]) => {
      const routes = '[{ match: { path: / }, upstream: app }]';
      const g = await startFromFile(yaml({ routes, upstreams: upstream('app', [a!, b!]) }));
      try {
        g.gw.setTargetDrained('app', 1, true);
        await g.gw.reload(parseConfig(yaml({ routes, upstreams: upstream('app', [a!, b!], ', connectTimeout: 3s') }), {}));
        assert.equal(g.gw.upstreamStatus()[0]!.targets[1]!.drained, true);
        const fresh = await openMany(g.url(), 6);
        assert.deepEqual(
          countBy(fresh, (x) => x.backend),
          { a: 6 },
        );
        for (const x of fresh) x.ws.terminate();
      } finally {
        await g.close();
      }
    }));

  void it('listeners: a new address is bound, a removed one stops accepting while its connections go on', () =>
    withBackends(['a'], async ([a]) => {
      const base = { routes: '[{ match: { path: / }, upstream: app }]', upstreams: upstream('app', [a!]) };
      const [p1, p2] = [await freePort(), await freePort()];
      const g = await startFromFile(yaml({ ...base, listeners: [`127.0.0.1:${p1}`] }));
      try {
        const old = await openTagged(`ws://127.0.0.1:${p1}`);
        const both = await g.gw.reload(parseConfig(yaml({ ...base, listeners: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`] }), {}));
        assert.deepEqual(both.ok && both.listenersAdded, [`127.0.0.1:${p2}`]);
        (await openTagged(`ws://127.0.0.1:${p2}`)).ws.terminate();
        const moved = await g.gw.reload(parseConfig(yaml({ ...base, listeners: [`127.0.0.1:${p2}`] }), {}));
        assert.deepEqual(moved.ok && moved.listenersRemoved, [`127.0.0.1:${p1}`]);
        assert.deepEqual(
          g.gw.addresses.map((x) => x.port),
          [p2],
        );
        const refused = connect(p1, '127.0.0.1');
        const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
        assert.equal(err.code, 'ECONNREFUSED');
        await roundTrip(old, 'old listener, open connection');
        old.ws.close();
        await old.closedP;
      } finally {
        await g.close();
      }
    }));

  void it('a new address that cannot be bound rejects the reload and changes nothing', () =>
    withBackends(['a', 'b'], async ([a, b]) => {
      const blocker = createNetServer().listen(0, '127.0.0.1');
      await once(blocker, 'listening');
      const taken = (blocker.address() as AddressInfo).port;
      const g = await startFromFile(yaml({ routes: '[{ match: { path: / }, upstream: app }]', upstreams: upstream('app', [a!]) }));
      try {
        const result = await g.gw.reload(
          parseConfig(
            yaml({ listeners: ['127.0.0.1:0', `127.0.0.1:${taken}`], routes: '[{ match: { path: / }, upstream: app }]', upstreams: upstream('app', [b!]) }),
            {},
          ),
        );
        assert.equal(result.ok, false);
        assert.match(result.ok ? '' : result.errors[0]!, /cannot listen/);
        assert.equal((await openTagged(g.url())).backend, 'a');
        assert.equal(g.gw.addresses.length, 1);
      } finally {
        await g.close();
        blocker.close();
      }
    }));

  void it('watch: true re-reads the file when it changes', () =>
    withBackends(['a', 'b'], async ([a, b]) => {
      const ups = `${upstream('ua', [a!])}\n${upstream('ub', [b!])}`;
      const g = await startFromFile(yaml({ routes: '[{ match: { path: / }, upstream: ua }]', upstreams: ups, extra: 'watch: true' }));
      try {
        assert.equal((await openTagged(g.url())).backend, 'a');
        // A rename over the file, as editors and ConfigMaps do it.
        const next = join(dirname(g.file), 'next.yaml');
        await writeFile(next, yaml({ routes: '[{ match: { path: / }, upstream: ub }]', upstreams: ups, extra: 'watch: true' }));
        const { rename } = await import('node:fs/promises');
        await rename(next, g.file);
        await eventually(() => g.logs.some((l) => l.msg === 'config reloaded'), 10_000, 'reload on change');
        assert.equal((await openTagged(g.url())).backend, 'b');
      } finally {
        await g.close();
      }
    }));
});

void describe('reload from the command line', () => {
  async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit') as Promise<[number]>;
    const [code] = child.exitCode !== null ? [child.exitCode] : await exited;
    return { code, out, err };
  }

  void it('wsgate reload without an admin block or pidFile says it cannot find the gateway', async () => {
    const file = await tempConfig(yaml({ routes: '[{ match: { path: / }, upstream: app }]', upstreams: '  app: { targets: [{ url: ws://127.0.0.1:1 }] }' }));
    const res = await runCli(['reload', '-c', file]);
    assert.equal(res.code, 1);
    assert.match(res.err, /neither an admin block nor a pidFile/);
    const missing = await runCli(['reload', '-c', file, '--pid-file', join(dirname(file), 'none.pid')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read the pid file/);
  });

  for (const via of ['pidFile', 'admin'] as const) {
    void it(`wsgate reload (${via}) makes the running gateway re-read its file; an invalid file is refused`, () =>
      withBackends(['a', 'b'], async ([a, b]) => {
        const port = await freePort();
        const extra = via === 'pidFile' ? 'pidFile: wsgate.pid' : `admin: { address: "127.0.0.1:${await freePort()}", token: t0k }`;
        const ups = `${upstream('ua', [a!])}\n${upstream('ub', [b!])}`;
        const file = await tempConfig(yaml({ listeners: [`127.0.0.1:${port}`], routes: '[{ match: { path: / }, upstream: ua }]', upstreams: ups, extra }));
        const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
        let log = '';
        child.stdout.on('data', (d: Buffer) => (log += d.toString()));
        child.stderr.on('data', (d: Buffer) => (log += d.toString()));
        try {
          await eventually(() => log.includes('wsgate started'), 20_000, 'start');
          assert.equal((await openTagged(`ws://127.0.0.1:${port}`)).backend, 'a');
          await writeFile(file, yaml({ listeners: [`127.0.0.1:${port}`], routes: '[{ match: { path: / }, upstream: ub }]', upstreams: ups, extra }));
          const ok = await runCli(['reload', '-c', file]);
          assert.equal(ok.code, 0, ok.err);
          assert.match(ok.out, via === 'pidFile' ? /sent SIGHUP/ : /reloaded/);
          await eventually(() => log.includes('config reloaded'), 20_000, 'reloaded');
          assert.equal((await openTagged(`ws://127.0.0.1:${port}`)).backend, 'b');

          await writeFile(file, yaml({ listeners: [`127.0.0.1:${port}`], routes: '[{ match: { path: / }, upstream: nope }]', upstreams: ups, extra }));
          const bad = await runCli(['reload', '-c', file]);
          assert.equal(bad.code, 1);
          assert.match(bad.err, /routes\[0\]\.upstream/);
          // A SIGHUP with the bad file in place: logged, and the gateway carries on.
          child.kill('SIGHUP');
          await eventually(() => log.includes('reload rejected: routes[0].upstream'), 20_000, 'rejection logged');
          assert.equal((await openTagged(`ws://127.0.0.1:${port}`)).backend, 'b');
        } catch (err) {
          // The gateway's own log says what went wrong.
          throw new Error(`${(err as Error).message}\n--- gateway log ---\n${log.slice(-4000)}`, { cause: err });
        } finally {
          const exited = once(child, 'exit');
          // It may already be gone (say, the port was taken): do not wait forever.
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            await exited;
          }
        }
      }));
  }
});
