import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { echo, freePort, openClient, startBackend, type Backend } from './helpers.js';
import { configFile, gatewayConfig, jsonLines, run, wsgate, type Started } from './process-helpers.js';

// log.file: the CLI logs to a file, and reopens it on SIGUSR1 the way logrotate expects
// (rename the file, then `kill -USR1 <pid>`), for one process and for a cluster.

async function linesOf(path: string): Promise<Record<string, unknown>[]> {
  try {
    return jsonLines(await readFile(path, 'utf8'));
  } catch {
    return [];
  }
}

/** Polls the file until a line satisfies `match`. */
async function logged(path: string, match: (l: Record<string, unknown>) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await linesOf(path)).some(match)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} in ${path}:\n${await readFile(path, 'utf8').catch(() => '(no file)')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `wsgate start`, with no expectation on stdout: it logs to a file. */
function start(file: string, signal: AbortSignal): Started {
  const child = wsgate(['start', '-c', file], [], process.env, { signal });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('close', (code: number | null, sig: string) => resolve(code ?? sig)));
  return { child, out: () => out, err: () => err, exited };
}

/** One session, tagged with its X-Request-Id so that its access-log line can be found. */
async function session(port: number, requestId: string): Promise<void> {
  const ws = await openClient(`ws://127.0.0.1:${port}`, { headers: { 'X-Request-Id': requestId } });
  assert.equal(await echo(ws, requestId), requestId);
  ws.close();
  await once(ws, 'close');
}

const closed = (requestId: string) => (l: Record<string, unknown>) => l.msg === 'session closed' && l.requestId === requestId;

async function rotation(backend: Backend, signal: AbortSignal, extra: string, workers: number): Promise<void> {
  const port = await freePort();
  // A relative path: taken from the config file's folder.
  const file = await configFile(gatewayConfig(port, backend.url, `shutdown: { drainTimeout: 0 }\nlog: { file: logs/wsgate.log }\n${extra}`));
  const log = join(dirname(file), 'logs', 'wsgate.log');
  const rotated = `${log}.1`;
  await mkdir(dirname(log));
  const gw = start(file, signal);
  try {
    await logged(log, (l) => l.msg === 'wsgate started', "'wsgate started'");
    await session(port, 'before-rotation');
    await logged(log, closed('before-rotation'), 'the first access-log line');
    for (let n = 1; n <= workers; n++) await logged(log, (l) => l.msg === 'worker listening' && l.worker === n, `worker ${n} listening`);

    // logrotate: rename, then signal the pid (the primary's, in cluster mode).
    await rename(log, rotated);
    gw.child.kill('SIGUSR1');
    await logged(log, (l) => l.msg === 'log file reopened' && l.worker === undefined, 'the reopen line');
    for (let n = 1; n <= workers; n++) await logged(log, (l) => l.msg === 'log file reopened' && l.worker === n, `worker ${n}'s reopen line`);
    // Enough sessions that each worker most likely serves some; each line must land in the new file.
    const ids = Array.from({ length: workers === 0 ? 2 : 8 }, (_, i) => `after-rotation-${i}`);
    for (const id of ids) await session(port, id);
    for (const id of ids) await logged(log, closed(id), `the access-log line of ${id}`);

    const old = await linesOf(rotated);
    assert.ok(old.some((l) => l.msg === 'wsgate started'));
    assert.ok(old.some(closed('before-rotation')));
    assert.ok(!old.some((l) => l.msg === 'log file reopened'), 'the reopen line is in the new file only');
    for (const id of ids) assert.ok(!old.some(closed(id)), `${id} is not in the renamed file`);
    const fresh = await linesOf(log);
    assert.ok(!fresh.some((l) => l.msg === 'wsgate started' || closed('before-rotation')(l)), 'the new file holds only lines from after the reopen');

    gw.child.kill('SIGTERM');
    assert.equal(await gw.exited, 0, gw.err());
    assert.ok(
      (await linesOf(log)).some((l) => l.msg === 'wsgate stopped'),
      "'wsgate stopped' is in the new file",
    );
    assert.deepEqual(jsonLines(gw.out()), [], 'nothing is logged to stdout');
    assert.doesNotMatch(gw.err(), /Debugger listening/, 'SIGUSR1 did not start the inspector');
  } finally {
    gw.child.kill('SIGKILL');
  }
}

void describe('log.file', { timeout: 90_000 }, () => {
  void it('one process: lines go to the file; SIGUSR1 after a rename moves new lines to a new file', async (t) => {
    const backend = await startBackend();
    try {
      await rotation(backend, t.signal, '', 0);
    } finally {
      await backend.close();
    }
  });

  void it('cluster: the primary and every worker move to the new file on the primary’s SIGUSR1', async (t) => {
    const backend = await startBackend();
    try {
      await rotation(backend, t.signal, 'cluster: { workers: 2 }', 2);
    } finally {
      await backend.close();
    }
  });

  void it('format: pretty writes plain text to the file, and reopens too', async (t) => {
    const backend = await startBackend();
    const port = await freePort();
    const file = await configFile(gatewayConfig(port, backend.url, 'shutdown: { drainTimeout: 0 }\nlog: { file: wsgate.log, format: pretty }'));
    const log = join(dirname(file), 'wsgate.log');
    const gw = start(file, t.signal);
    try {
      const text = async (): Promise<string> => readFile(log, 'utf8').catch(() => '');
      const deadline = Date.now() + 20_000;
      while (!(await text()).includes('wsgate started')) {
        assert.ok(Date.now() < deadline, 'wsgate started is logged');
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(await text(), /INFO.*wsgate started/);
      assert.doesNotMatch(await text(), /\x1b\[/, 'no colours in a file');
      await rename(log, `${log}.1`);
      gw.child.kill('SIGUSR1');
      while (!(await text()).includes('log file reopened')) {
        assert.ok(Date.now() < deadline, 'the reopen is logged in the new file');
        await new Promise((r) => setTimeout(r, 50));
      }
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0, gw.err());
    } finally {
      gw.child.kill('SIGKILL');
      await backend.close();
    }
  });

  void it('a reload that changes log.file is refused, naming it', async (t) => {
    const backend = await startBackend();
    const port = await freePort();
    const text = (name: string): string => gatewayConfig(port, backend.url, `shutdown: { drainTimeout: 0 }\nlog: { file: ${name} }`);
    const file = await configFile(text('wsgate.log'));
    const log = join(dirname(file), 'wsgate.log');
    const gw = start(file, t.signal);
    try {
      await logged(log, (l) => l.msg === 'wsgate started', "'wsgate started'");
      await writeFile(file, text('other.log'));
      gw.child.kill('SIGHUP');
      await logged(log, (l) => l.problem === 'log.file: cannot change while the gateway runs; restart it to apply', 'the refused reload');
      gw.child.kill('SIGTERM');
      assert.equal(await gw.exited, 0, gw.err());
    } finally {
      gw.child.kill('SIGKILL');
      await backend.close();
    }
  });

  void it('check: a file in a missing folder, or a folder, is named', async () => {
    const file = await configFile(gatewayConfig(8080, 'ws://127.0.0.1:3000', 'log: { file: nowhere/wsgate.log }'));
    const missing = await run(['check', '-c', file]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /log\.file: folder .*nowhere does not exist/);
    await mkdir(join(dirname(file), 'logs'));
    await writeFile(file, gatewayConfig(8080, 'ws://127.0.0.1:3000', 'log: { file: logs }'));
    const folder = await run(['check', '-c', file]);
    assert.equal(folder.code, 1);
    assert.match(folder.err, /log\.file: .*logs is a folder: name a file in it/);
    await writeFile(file, gatewayConfig(8080, 'ws://127.0.0.1:3000', 'log: { file: logs/ }'));
    const slash = await run(['check', '-c', file]);
    assert.equal(slash.code, 1);
    assert.match(slash.err, /log\.file: must name a file, not a folder/);
    await writeFile(file, gatewayConfig(8080, 'ws://127.0.0.1:3000', 'log: { file: logs/wsgate.log }'));
    const ok = await run(['check', '-c', file]);
    assert.equal(ok.code, 0, ok.err);
  });
});
