// `npm start` (node demo/run.js) is the first thing the README has a user run.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { echo, freePort, openClient } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
// The demo runs the built package, as `npm start` does after `npm ci`.
const BUILT = existsSync(join(ROOT, 'dist', 'index.js'));

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

void describe('npm start (the demo)', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    void it(
      `echoes hello through the gateway, and ${signal} stops the gateway and both backends`,
      { timeout: 30_000, skip: !BUILT && 'dist/ is not built (npm ci or npm run build builds it)' },
      async (t) => {
        // The demo's fixed ports (8080, 9001, 9002) may be taken here; its config takes others from the environment.
        const [gateway, b1, b2] = [await freePort(), await freePort(), await freePort()];
        const env = { ...process.env, WSGATE_DEMO_ADDRESS: `127.0.0.1:${gateway}`, WSGATE_DEMO_BACKEND_1: String(b1), WSGATE_DEMO_BACKEND_2: String(b2) };
        const demo = spawn(process.execPath, [join(ROOT, 'demo', 'run.js')], {
          cwd: ROOT,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
          // Also killed if the test times out, so a demo that does not stop cannot keep the test run alive.
          signal: t.signal,
          killSignal: 'SIGKILL',
        });
        demo.on('error', () => {}); // the abort, reported as an error after the test has already failed
        let out = '';
        let err = '';
        demo.stdout.on('data', (d: Buffer) => (out += d.toString()));
        demo.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const closed = once(demo, 'close');
        closed.catch(() => {}); // rejects only on the abort above
        try {
          const url = `ws://127.0.0.1:${gateway}/`;
          while (!out.includes('wsgate demo is up')) {
            const [what] = await Promise.race([once(demo.stdout, 'data').then(() => ['data']), closed.then(() => ['closed'])]);
            assert.notEqual(what, 'closed', `the demo exited before it was up\nstdout:\n${out}\nstderr:\n${err}`);
          }
          // The banner's own instructions point at the gateway.
          assert.ok(out.includes(`new (require('ws'))('${url}')`), out);
          const ws = await openClient(url);
          assert.equal(await echo(ws, 'hello'), 'hello');
          ws.close();
          await once(ws, 'close');
          for (const port of [gateway, b1, b2]) assert.ok(await listening(port), `nothing listens on ${port}`);

          demo.kill(signal);
          const [code, killedBy] = (await closed) as [number | null, string | null];
          assert.equal(code, 0, `exited by ${killedBy}\n${err}`);
          for (const port of [gateway, b1, b2]) assert.ok(!(await listening(port)), `${port} still listening after the demo exited`);
        } finally {
          demo.kill('SIGKILL');
        }
      },
    );
  }
});
