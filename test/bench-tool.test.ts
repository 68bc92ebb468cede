import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, get } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
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
import { acceptKeyFor } from '../src/bench/ws-handshake.js';
import { roundRate } from '../bench/suite/calibrate.js';
import { combineRounds } from '../bench/suite/scenarios.js';
import type { ScenarioOutcome } from '../bench/suite/scenarios.js';
import { markdownTable } from '../bench/suite/table.js';
import type { SuiteResults } from '../bench/suite/table.js';
import { judgeTargets, targetsMarkdown } from '../bench/suite/targets.js';

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

/** A plain TCP server that reads an upgrade request and hands the socket, the key and the offered protocols to `onUpgrade`. */
async function rawServer(onUpgrade: (socket: Socket, key: string, protocols: string | undefined) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.removeListener('data', onData);
      onUpgrade(socket, /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? '', /sec-websocket-protocol: *([^\r]+)/i.exec(head)?.[1]);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `ws://127.0.0.1:${portOf(server)}/`;
}

/** A TCP relay to `port` that passes the server's bytes on in 3-byte writes: frames arrive split, and some coalesced. */
async function rechunkingRelay(port: number): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((down) => {
    const up = connect(port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i += 3) down.write(chunk.subarray(i, i + 3));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `ws://127.0.0.1:${portOf(server)}/`;
}

/** A client frame, masked with a random key unless one is given. */
function clientFrame(opcode: number, payload: Buffer, opts: { mask?: Buffer | null; fin?: boolean } = {}): Buffer {
  const mask = opts.mask === undefined ? randomBytes(4) : opts.mask;
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : Buffer.from([0, 126, len >> 8, len & 0xff]);
  head[0] = (opts.fin === false ? 0 : 0x80) | opcode;
  if (mask === null) return Buffer.concat([head, payload]);
  head[1] = (head[1] as number) | 0x80;
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([head, mask, body]);
}

/** A raw connection to `port` after a hand-made upgrade; `next()` resolves with each server frame (unmasked, length < 65536). */
async function rawEchoClient(port: number): Promise<{ socket: Socket; next(): Promise<{ opcode: number; fin: boolean; payload: Buffer }> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  closers.push(async () => {
    socket.destroy();
  });
  const key = randomBytes(16).toString('base64');
  socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let pending = Buffer.alloc(0);
  let upgraded = false;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    wake?.();
  });
  const more = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  while (!upgraded) {
    const at = pending.indexOf('\r\n\r\n');
    if (at >= 0) {
      const head = pending.subarray(0, at).toString('latin1');
      assert.match(head, /^HTTP\/1\.1 101 /);
      assert.ok(head.includes(`Sec-WebSocket-Accept: ${acceptKeyFor(key)}`), head);
      pending = pending.subarray(at + 4);
      upgraded = true;
    } else await more();
  }
  const next = async (): Promise<{ opcode: number; fin: boolean; payload: Buffer }> => {
    for (;;) {
      if (pending.length >= 2) {
        const b1 = pending[1] as number;
        assert.equal(b1 & 0x80, 0, 'server frames are not masked');
        const len7 = b1 & 0x7f;
        const hl = len7 === 126 ? 4 : 2;
        if (pending.length >= hl) {
          const len = len7 === 126 ? pending.readUInt16BE(2) : len7;
          if (pending.length >= hl + len) {
            const frame = {
              opcode: (pending[0] as number) & 0x0f,
              fin: ((pending[0] as number) & 0x80) !== 0,
              payload: Buffer.from(pending.subarray(hl, hl + len)),
            };
            pending = pending.subarray(hl + len);
            return frame;
          }
        }
      }
      await more();
    }
  };
  return { socket, next };
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

  void test('churn at a fixed rate starts that many cycles a second, whatever the loops could do', { timeout: 30_000 }, async () => {
    const { url } = await delayedEcho(0);
    // 40 slots for 40 cycles a second: each has a second for a cycle (CI, busy with other tests, once
    // took over 100 ms a cycle with 4 slots and over 400 ms with 16).
    const r = await load([url, '--churn', '--rate', '40', '--connections', '40', '--duration', '1s']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    // Closed-loop churn on loopback does hundreds a second; this one does at most 40 (± the edges of the
    // window). The lower bound is loose: on a machine busy with other tests the first cycles start late.
    assert.ok(r.handshakes.count >= 20 && r.handshakes.count <= 41, `${r.handshakes.count} handshakes`);
    // Every cycle started, give or take a stall of the machine (how late is the send lag's business);
    // a scheduler that waited for free loops would leave most of them unstarted.
    assert.ok(r.messages.unsent <= 4, `${r.messages.unsent} not started`);
  });

  void test('churn at a rate the slots cannot keep up with counts the cycles not started', { timeout: 30_000 }, async () => {
    const { url } = await delayedEcho(200);
    const r = await load([url, '--churn', '--rate', '100', '--connections', '2', '--duration', '1s']);
    assert.ok(r.messages.unsent > 50, `${r.messages.unsent} not started`);
    assert.equal(r.behindSchedule, true);
    assert.ok(
      r.warnings.some((w) => w.includes('scheduled handshakes were not started')),
      r.warnings.join('\n'),
    );
  });

  void test('churn counts each failed cycle and completes good ones', { timeout: 30_000 }, async () => {
    const { url } = await delayedEcho(0);
    const r = await load([url, '--churn', '--connections', '2', '--duration', '500ms']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.ok(r.handshakes.count > 2 && r.latency.count >= r.handshakes.count);
  });
});

void describe('wsgate bench: the raw client', () => {
  void test('frames split across reads and coalesced in one read are all counted', { timeout: 60_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const url = await rechunkingRelay(echo.port);
    // 300 bytes: a 16-bit extended length; 4 in flight: several echoes per read.
    const r = await load([url, '--inflight', '4', '--connections', '3', '--duration', '1s', '--binary', '--size', '300']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.ok(r.messages.received > 12, `only ${r.messages.received} echoes`);
    assert.equal(r.latency.count, r.messages.received);
  });

  void test('answers pings and reassembles fragmented echoes', { timeout: 60_000 }, async () => {
    let pongs = 0;
    const { url } = await wsServer((ws) => {
      ws.on('pong', () => pongs++);
      ws.on('message', (data, isBinary) => {
        const buf = data as Buffer;
        ws.ping('p');
        ws.send(buf.subarray(0, 5), { binary: isBinary, fin: false });
        ws.send(buf.subarray(5), { binary: isBinary, fin: true });
      });
    });
    const r = await load([url, '--rate', '100', '--connections', '2', '--duration', '1s']);
    assert.equal(r.errorCount, 0, JSON.stringify(r.errors));
    assert.equal(r.messages.received, 100);
    assert.ok(pongs >= 90, `${pongs} pongs`);
  });

  void test('subprotocols are offered and checked, and so is the accept key', { timeout: 30_000 }, async () => {
    const { url } = await delayedEcho(0);
    const ok = await load([url, '--subprotocol', 'chat', '--subprotocol', 'superchat', '--connections', '2', '--duration', '300ms']);
    assert.equal(ok.errorCount, 0, JSON.stringify(ok.errors));
    assert.ok(ok.messages.received > 0);

    const silent = await rawServer((socket, key) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKeyFor(key)}\r\n\r\n`);
    });
    const r1 = await load([silent, '--subprotocol', 'chat', '--connections', '2', '--duration', '200ms']);
    assert.deepEqual(r1.errors, { 'error: Server sent no subprotocol': 2 });

    const liar = await rawServer((socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n');
    });
    const r2 = await load([liar, '--connections', '2', '--duration', '200ms']);
    assert.deepEqual(r2.errors, { 'error: Invalid Sec-WebSocket-Accept header': 2 });
  });

  void test('a masked server frame is a protocol error', { timeout: 30_000 }, async () => {
    const url = await rawServer((socket, key) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKeyFor(key)}\r\n\r\n`);
      socket.once('data', () => socket.write(clientFrame(0x1, Buffer.from('00000000xxxx'))));
    });
    const r = await load([url, '--connections', '1', '--duration', '300ms', '--size', '12']);
    assert.deepEqual(r.errors, { 'protocol error: masked server frame': 1 });
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

  void test('reassembles fragments, answers pings, echoes the close code (ws client, random masks)', { timeout: 30_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const ws = new WebSocket(`ws://127.0.0.1:${echo.port}/`);
    ws.on('error', () => {});
    await once(ws, 'open');
    const message = once(ws, 'message');
    ws.send('héllo wo', { fin: false });
    ws.send('rld', { fin: true });
    const [data, isBinary] = (await message) as [Buffer, boolean];
    assert.equal(isBinary, false);
    assert.equal(data.toString('utf8'), 'héllo world');
    const pong = once(ws, 'pong');
    ws.ping('abc');
    assert.equal(((await pong)[0] as Buffer).toString(), 'abc');
    const big = randomBytes(1024 * 1024);
    const bigEcho = once(ws, 'message');
    ws.send(big);
    assert.ok(((await bigEcho)[0] as Buffer).equals(big), 'a 1 MiB message comes back intact');
    const closed = once(ws, 'close');
    ws.close(4000, 'bye');
    assert.equal((await closed)[0], 4000);
  });

  void test('many frames in one write come back in order; bad frames close with 1002 and 1007', { timeout: 30_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const a = await rawEchoClient(echo.port);
    const frames: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const payload = Buffer.from(`message ${i} `.padEnd(i % 3 === 0 ? 200 : 20, 'x'));
      frames.push(clientFrame(i % 2 === 0 ? 0x1 : 0x2, payload, { mask: i % 5 === 0 ? Buffer.alloc(4) : undefined }));
      if (i === 50) frames.push(clientFrame(0x9, Buffer.from('ping!')));
    }
    a.socket.write(Buffer.concat(frames));
    for (let i = 0; i < 100; i++) {
      const f = await a.next();
      assert.equal(f.opcode, i % 2 === 0 ? 0x1 : 0x2);
      assert.equal(f.payload.toString(), `message ${i} `.padEnd(i % 3 === 0 ? 200 : 20, 'x'));
      if (i === 50) assert.deepEqual(await a.next(), { opcode: 0xa, fin: true, payload: Buffer.from('ping!') });
    }

    const b = await rawEchoClient(echo.port);
    b.socket.write(clientFrame(0x1, Buffer.from([0x68, 0xc3, 0x28])));
    const c1 = await b.next();
    assert.deepEqual([c1.opcode, c1.payload.readUInt16BE(0)], [0x8, 1007]);

    const c = await rawEchoClient(echo.port);
    c.socket.write(clientFrame(0x2, Buffer.from('plain'), { mask: null }));
    const c2 = await c.next();
    assert.deepEqual([c2.opcode, c2.payload.readUInt16BE(0)], [0x8, 1002]);
  });

  void test('refuses an upgrade with a bad version or key', { timeout: 30_000 }, async () => {
    const echo = await startEchoServer({ port: 0 });
    closers.push(() => echo.close());
    const answer = async (headers: string): Promise<string> => {
      const socket = connect(echo.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`);
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString()));
      await once(socket, 'close');
      return text;
    };
    assert.match(await answer('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n'), /^HTTP\/1\.1 426 [^]*Sec-WebSocket-Version: 13/);
    assert.match(await answer('Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n'), /^HTTP\/1\.1 400 /);
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

void describe('bench suite: figures and targets', () => {
  const outcome = (figures: Record<string, number | null>, behind = false): ScenarioOutcome => ({ figures, errors: {}, warnings: [], behind, command: '' });

  void test('rounds combine by median; latencies only from rounds that kept their schedule', () => {
    const c = combineRounds([outcome({ cpuUsPerMsg: 10, p99Ms: 50 }, true), outcome({ cpuUsPerMsg: 20, p99Ms: 3 }), outcome({ cpuUsPerMsg: 12, p99Ms: 5 })]);
    assert.ok(c !== undefined && !('failed' in c));
    assert.equal(c.figures.cpuUsPerMsg, 12);
    assert.equal(c.figures.p99Ms, 4);
    assert.equal(c.behind, false);
    const all = combineRounds([outcome({ p99Ms: 50 }, true), outcome({ p99Ms: 70 }, true)]);
    assert.ok(all !== undefined && !('failed' in all));
    assert.equal(all.behind, true);
    assert.equal(all.figures.p99Ms, 60);
  });

  void test('the calibrated rate keeps two significant digits, rounded down', () => {
    assert.equal(roundRate(12_345), 12_000);
    assert.equal(roundRate(8_385), 8_300);
    assert.equal(roundRate(99.9), 99);
    assert.equal(roundRate(7), 7);
  });

  void test('targets are judged against nginx in the same run', () => {
    const results: SuiteResults = {
      nginx: {
        chatty: outcome({ cpuUsPerMsg: 20, p99Ms: 4 }),
        max: outcome({ cpuUsPerMsg: 10 }),
        handshake: outcome({ cpuUsPerHs: 200 }),
        idle: outcome({ kbPerConn: 18 }),
      },
      'wsgate-tunnel': {
        chatty: outcome({ cpuUsPerMsg: 20.8, p99Ms: 4.5 }),
        max: outcome({ cpuUsPerMsg: 16 }),
        handshake: outcome({ cpuUsPerHs: 500 }),
        idle: outcome({ kbPerConn: 2.5 }),
      },
      'wsgate-inspect': { chatty: outcome({ cpuUsPerMsg: 31, p99Ms: 9 }, true), handshake: outcome({ cpuUsPerHs: 300 }, true), idle: { failed: 'boom' } },
    };
    const byKey = new Map(judgeTargets(results).map((v) => [`${v.proxy} ${v.target.split(':')[0] ?? ''}${v.target.includes('p99') ? ' p99' : ''}`, v]));
    assert.equal(byKey.get('wsgate-tunnel chatty')?.met, true); // 1.04× ≤ 1.05×
    assert.equal(byKey.get('wsgate-inspect chatty')?.met, false); // 1.55× > 1.15×: CPU is judged even when the load side fell behind
    assert.equal(byKey.get('wsgate-tunnel closed loop (max)')?.met, false); // 1.6× > 1.5×
    assert.equal(byKey.get('wsgate-tunnel handshake (fixed rate)')?.met, false); // 2.5× > 2×
    assert.equal(byKey.get('wsgate-inspect handshake (fixed rate)')?.met, null); // 1.5×, but not the load planned
    assert.equal(byKey.get('wsgate-tunnel idle')?.met, true);
    assert.equal(byKey.get('wsgate-inspect idle')?.met, null);
    const p99 = judgeTargets(results).filter((v) => v.target.includes('p99'));
    assert.deepEqual(
      p99.map((v) => v.met),
      [true, null],
    ); // +0.5 ms; inspect's load side fell behind
    const md = targetsMarkdown(judgeTargets(results));
    assert.match(md, /\| chatty: p99 ≤ nginx p99 \+ 1 ms \| \+0\.50 ms ✓ \| \+5\.00 ms \? \(load side fell behind its schedule\) \|/);
    assert.match(markdownTable(results, ['nginx', 'wsgate-tunnel']), /\| chatty: p99 − nginx p99 \(ms\) ↓ \| \+0\.00 \| \+0\.50 \|/);
  });
});
