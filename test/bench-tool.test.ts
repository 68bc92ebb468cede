import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { parseBenchArgs } from '../src/bench/options.js';
import { runLoad } from '../src/bench/run-load.js';
import { runBench } from '../src/cli/bench.js';
import { startEchoServer } from '../src/cli/echo.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

function portOf(server: { address(): AddressInfo | string | null }): number {
  return (server.address() as AddressInfo).port;
}

/** A ws server on 127.0.0.1:0; `setup` wires each connection. Remembers client addresses. */
async function wsServer(setup: (ws: WebSocket) => void): Promise<{ url: string; addresses: Set<string> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  const addresses = new Set<string>();
  wss.on('connection', (ws, req) => {
    addresses.add(req.socket.remoteAddress ?? '');
    ws.on('error', () => {});
    setup(ws);
  });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  return { url: `ws://127.0.0.1:${portOf(wss)}/`, addresses };
}

/** Echoes every message after `delayMs`. */
function delayedEcho(delayMs: number): Promise<{ url: string; addresses: Set<string> }> {
  const timers = new Set<NodeJS.Timeout>();
  closers.push(async () => {
    for (const t of timers) clearTimeout(t);
  });
  return wsServer((ws) => {
    ws.on('message', (data, isBinary) => {
      const t = setTimeout(() => {
        timers.delete(t);
        if (ws.readyState === WebSocket.OPEN) ws.send(data as Buffer, { binary: isBinary });
      }, delayMs);
      timers.add(t);
    });
  });
}

function load(argv: string[]) {
  return runLoad(parseBenchArgs([...argv, '--no-progress']));
}

function collector(): Writable & { text(): string } {
  let text = '';
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return Object.assign(w, { text: () => text });
}

void describe('wsgate bench: latency', () => {
  void test('closed loop measures a 50 ms echo as ~50 ms', { timeout: 60_000 }, async () => {
    const { url } = await delayedEcho(50);
    const r = await load([url, '--inflight', '1', '--connections', '4', '--duration', '1.5s']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.ok(r.latency.count >= 8, `only ${r.latency.count} echoes`);
    assert.ok(r.latency.p50 >= 50 && r.latency.p50 < 200, `p50 ${r.latency.p50} ms`);
    assert.equal(r.latency.count, r.messages.received);
  });

  void test('open loop measures from the intended send time', { timeout: 60_000 }, async () => {
    const { url } = await delayedEcho(50);
    const r = await load([url, '--rate', '80', '--connections', '4', '--duration', '1.5s', '--binary', '--size', '32']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.equal(r.messages.sent, 120);
    assert.equal(r.messages.received, 120);
    assert.ok(r.latency.p50 >= 50 && r.latency.p50 < 200, `p50 ${r.latency.p50} ms`);
    assert.ok(r.sendLag !== null && r.sendLag.count === 120);
  });

  void test('--warmup: only what is sent after it is timed and counted', { timeout: 60_000 }, async () => {
    const { url } = await delayedEcho(20);
    const r = await load([url, '--rate', '80', '--connections', '4', '--duration', '1s', '--warmup', '500ms']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.equal(r.latency.count, r.messages.received);
    assert.ok(r.messages.sent >= 78 && r.messages.sent <= 82, `sent ${r.messages.sent}`);
    assert.equal(r.messages.received, r.messages.sent);
    assert.ok(r.messages.receivedInWindow >= r.messages.received);
    assert.equal(r.handshakes.count, 4);
  });

  void test('--workers 2 merges the histograms of two processes, each from its own 127.x address', { timeout: 60_000 }, async () => {
    const { url, addresses } = await delayedEcho(20);
    const r = await load([url, '--inflight', '1', '--connections', '4', '--workers', '2', '--duration', '1s']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.equal(r.connectionsOpened, 4);
    assert.ok(r.messages.received > 8);
    assert.equal(r.latency.count, r.messages.received);
    assert.equal(r.handshakes.latency.count, 4);
    assert.ok(r.latency.p50 >= 20 && r.latency.p50 < 150, `p50 ${r.latency.p50} ms`);
    // 127.A.B.2 and 127.A.B.3, A.B random per run
    const sources = [...addresses].sort();
    assert.equal(sources.length, 2, sources.join(' '));
    assert.match(sources[0] ?? '', /^127\.\d+\.\d+\.2$/);
    assert.equal(sources[1], (sources[0] ?? '').replace(/\.2$/, '.3'));
  });
});

void describe('wsgate bench: errors by kind', () => {
  void test('an upgrade answered 403 counts as "handshake status 403"', { timeout: 30_000 }, async () => {
    const server = createServer();
    server.on('upgrade', (_req, socket) => {
      socket.on('error', () => {});
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const r = await load([`ws://127.0.0.1:${portOf(server)}/`, '--connections', '3', '--duration', '200ms']);
    assert.deepEqual(r.errors, { 'handshake status 403': 3 });
    assert.equal(r.connectionsFailed, 3);
  });

  void test('a closed port counts as "refused"', { timeout: 30_000 }, async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = portOf(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const r = await load([`ws://127.0.0.1:${port}/`, '--connections', '3', '--duration', '200ms']);
    assert.deepEqual(r.errors, { refused: 3 });
  });

  void test('a server closing with 4001 counts as "closed with code 4001"', { timeout: 30_000 }, async () => {
    const { url } = await wsServer((ws) => ws.close(4001, 'go away'));
    const r = await load([url, '--connections', '3', '--rate', '30', '--duration', '500ms']);
    assert.equal(r.errors['closed with code 4001'], 3, JSON.stringify(r.errors));
  });

  void test('churn counts each failed cycle and completes good ones', { timeout: 30_000 }, async () => {
    const { url } = await delayedEcho(0);
    const r = await load([url, '--churn', '--connections', '2', '--duration', '500ms']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.ok(r.handshakes.count > 2 && r.latency.count >= r.handshakes.count);
  });
});

void describe('wsgate bench: command line', () => {
  void test('--json prints a result that parses', { timeout: 30_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const stdout = collector();
    const stderr = collector();
    const code = await runBench([`ws://127.0.0.1:${echo.port}/`, '--connections', '2', '--duration', '300ms', '--json'], { stdout, stderr });
    assert.equal(code, 0, stderr.text());
    const result = JSON.parse(stdout.text()) as { messages: { received: number }; errorCount: number; latency: { p99: number } };
    assert.ok(result.messages.received > 0);
    assert.equal(result.errorCount, 0);
    assert.equal(typeof result.latency.p99, 'number');
  });

  void test('a target outside loopback is refused unless --allow-remote', async () => {
    const stdout = collector();
    const stderr = collector();
    assert.equal(await runBench(['ws://192.0.2.1:8080/'], { stdout, stderr }), 2);
    assert.match(stderr.text(), /--allow-remote/);
    assert.equal(parseBenchArgs(['ws://192.0.2.1:8080/', '--allow-remote']).url, 'ws://192.0.2.1:8080/');
    assert.equal(parseBenchArgs(['http://localhost:1/']).url, 'ws://localhost:1/');
    assert.equal(parseBenchArgs(['ws://[::1]:1/', '--size', '3']).size, 8);
    assert.throws(() => parseBenchArgs(['ws://127.0.0.1:1/', '--rate', '5', '--inflight', '2']), { code: 'BENCH_USAGE' });
  });
});

void describe('wsgate echo', () => {
  void test('echoes text as text and binary as binary, and answers GET with ok', { timeout: 30_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const ws = new WebSocket(`ws://127.0.0.1:${echo.port}/`);
    ws.on('error', () => {});
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const replies: { data: Buffer; isBinary: boolean }[] = [];
    const two = new Promise<void>((resolve) => {
      ws.on('message', (data, isBinary) => {
        replies.push({ data: data as Buffer, isBinary });
        if (replies.length === 2) resolve();
      });
    });
    ws.send('héllo');
    ws.send(Buffer.from([0, 1, 2, 255]));
    await two;
    ws.close();
    assert.equal(replies[0]?.isBinary, false);
    assert.equal(replies[0]?.data.toString('utf8'), 'héllo');
    assert.equal(replies[1]?.isBinary, true);
    assert.deepEqual([...(replies[1]?.data ?? [])], [0, 1, 2, 255]);

    const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      get(`http://127.0.0.1:${echo.port}/health`, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      }).on('error', reject);
    });
    assert.deepEqual(body, { status: 200, text: 'ok' });
  });
});

void describe('bench suite', () => {
  void test('the --quick smoke variant runs the "direct" path', { timeout: 120_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'wsgate-bench-test-'));
    closers.push(async () => rmSync(out, { recursive: true, force: true }));
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', '--only', 'direct', '--duration', '500ms', '--out', out], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, output);
    const files = readdirSync(join(out, 'results'));
    assert.equal(files.length, 1);
    const json = JSON.parse(readFileSync(join(out, 'results', files[0] as string), 'utf8')) as {
      results: { direct: Record<string, { figures: Record<string, number> }> };
    };
    assert.ok((json.results.direct.chatty?.figures.msgPerSec ?? 0) > 0, output);
    assert.ok((json.results.direct.churn?.figures.hsPerSec ?? 0) > 0, output);
    assert.match(readFileSync(join(out, 'RESULTS.md'), 'utf8'), /\| figure \| direct \|/);
  });
});
