// The C load generator (bench/loadgen): real backends on 127.0.0.1, the real binary.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { echoPath, loadgenPath } from '../bench/loadgen/build.js';
import { LoadgenError, runLoadgen } from '../bench/loadgen/run.js';
import { combineRounds, saturatedCount } from '../bench/suite/scenarios.js';
import type { ScenarioOutcome } from '../bench/suite/scenarios.js';
import { markdownTable } from '../bench/suite/table.js';
import type { SuiteResults } from '../bench/suite/table.js';
import { judgeTargets, targetsMarkdown } from '../bench/suite/targets.js';
import type { TargetVerdict } from '../bench/suite/targets.js';
import { startEchoServer } from '../src/cli/echo.js';
import { acceptUpgrade, freePort, listenLocal, rawServer, readHead } from './helpers.js';

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

let binary = '';
before(async () => {
  binary = await loadgenPath();
});

function runBinary(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(binary, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A ws backend that echoes every message `delayMs` after it arrived. */
async function delayedEcho(delayMs: number): Promise<string> {
  const server = createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  const timers = new Set<NodeJS.Timeout>();
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      const t = setTimeout(() => {
        timers.delete(t);
        if (ws.readyState === WebSocket.OPEN) ws.send(data as Buffer, { binary: isBinary });
      }, delayMs);
      timers.add(t);
    });
  });
  const port = await listenLocal(server);
  closers.push(async () => {
    for (const t of timers) clearTimeout(t);
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return `ws://127.0.0.1:${port}/`;
}

async function raw(onSocket: (s: Socket) => void): Promise<string> {
  const server = await rawServer(onSocket);
  closers.push(() => server.close());
  return `ws://127.0.0.1:${server.port}/`;
}

function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, payload]);
}

/**
 * A hand-written server: pings each client once it is upgraded, echoes every text message cut into
 * 7-byte pieces written 1 ms apart (so frames arrive cut across reads), answers a close and ends.
 */
function dribblingServer(pongs: Buffer[]): Promise<string> {
  return raw((socket) => {
    void acceptUpgrade(socket, frame(0x9, Buffer.from('are you there'))).then(() => {
      let buffered = Buffer.alloc(0);
      let queue = Promise.resolve();
      const send = (bytes: Buffer): void => {
        queue = queue.then(async () => {
          for (let at = 0; at < bytes.length; at += 7) {
            if (socket.destroyed) return;
            socket.write(bytes.subarray(at, at + 7));
            await new Promise((r) => setTimeout(r, 1));
          }
        });
      };
      socket.on('data', (d: Buffer) => {
        buffered = Buffer.concat([buffered, d]);
        for (;;) {
          if (buffered.length < 2) return;
          const op = (buffered[0] as number) & 0x0f;
          let len = (buffered[1] as number) & 0x7f;
          let at = 2;
          if (len === 126) {
            if (buffered.length < 4) return;
            len = buffered.readUInt16BE(2);
            at = 4;
          }
          if (buffered.length < at + 4 + len) return;
          const mask = buffered.subarray(at, at + 4);
          const payload = Buffer.from(buffered.subarray(at + 4, at + 4 + len));
          for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number);
          buffered = buffered.subarray(at + 4 + len);
          if (op === 0x1) send(frame(0x1, payload));
          else if (op === 0xa) pongs.push(payload);
          else if (op === 0x8) {
            void queue.then(() => socket.end(frame(0x8, payload)));
            return;
          }
        }
      });
      socket.resume();
    });
  });
}

void describe('the C load generator', () => {
  void test('its histogram gives the percentiles of 1..10,000 µs within 0.1%', async () => {
    const r = await runBinary(['--selftest']);
    assert.equal(r.code, 0, r.stderr);
    const h = JSON.parse(r.stdout) as Record<string, number>;
    assert.equal(h.count, 10_000);
    const near = (actual: number | undefined, expected: number): void =>
      assert.ok(actual !== undefined && Math.abs(actual - expected) <= expected * 0.001, `${actual} is not within 0.1% of ${expected}`);
    near(h.p50, 5000);
    near(h.p90, 9000);
    near(h.p99, 9900);
    near(h.p999, 9990);
    assert.equal(h.max, 10_000);
  });

  void test('closed loop: latency and throughput follow a backend that answers after 20 ms', async () => {
    const url = await delayedEcho(20);
    let starts = 0;
    let ends = 0;
    const r = await runLoadgen({
      url,
      mode: 'closed',
      connections: 10,
      inflight: 2,
      size: 64,
      durationS: 2,
      warmupS: 0.5,
      onMeasureStart: () => starts++,
      onMeasureEnd: () => ends++,
    });
    assert.deepEqual(r.errors, {}, r.stderr);
    assert.equal(r.exitCode, 0);
    assert.deepEqual([starts, ends], [1, 1]);
    assert.equal(r.connectionsOpened, 10);
    const p50 = r.latencyUs.p50 ?? 0;
    assert.ok(p50 >= 20_000 && p50 <= 60_000, `p50 ${p50} µs, expected 20-60 ms`);
    // 10 connections × 2 in flight, each echo 20 ms later, for 2 s: at most 2,000 echoes.
    assert.ok(r.messages >= 1000 && r.messages <= 2100, `${r.messages} echoes, expected about 2,000`);
    assert.ok(Math.abs(r.wallUs - 2e6) < 0.2e6, `measured ${r.wallUs} µs`);
    assert.ok(r.cpuUs.user + r.cpuUs.sys > 0);
  });

  void test('frames cut across reads, 16- and 64-bit lengths and a ping are handled', async () => {
    const pongs: Buffer[] = [];
    const dribble = await runLoadgen({ url: await dribblingServer(pongs), mode: 'closed', connections: 2, inflight: 2, size: 200, durationS: 1 });
    assert.deepEqual(dribble.errors, {}, dribble.stderr);
    assert.ok(dribble.messages > 10, `${dribble.messages} echoes`);
    assert.deepEqual(
      pongs.map((p) => p.toString()),
      ['are you there', 'are you there'],
    );
    const echo = await startEchoServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => echo.close());
    const big = await runLoadgen({ url: `ws://127.0.0.1:${echo.port}/`, mode: 'closed', connections: 2, inflight: 2, size: 70_000, durationS: 0.5 });
    assert.deepEqual(big.errors, {}, big.stderr);
    assert.ok(big.messages > 0);
  });

  void test('churn: connect, upgrade, echo and close, over and over, with no error', async () => {
    const echo = await startEchoServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => echo.close());
    const r = await runLoadgen({ url: `ws://127.0.0.1:${echo.port}/`, mode: 'churn', connections: 4, durationS: 1, warmupS: 0.2 });
    assert.deepEqual(r.errors, {}, r.stderr);
    assert.equal(r.exitCode, 0);
    assert.ok(r.handshakes > 10, `${r.handshakes} handshakes`);
    assert.equal(r.handshakeUs.count, r.handshakes);
    assert.ok(r.hsPerSec > 0 && (r.handshakeUs.p99 ?? 0) > 0);
    // One echo per cycle; a cycle whose handshake fell just before the window may echo inside it.
    assert.ok(r.messages > 0 && r.messages <= r.handshakes + 4, `${r.messages} echoes, ${r.handshakes} handshakes`);
    assert.equal(r.sources.length, 8);
  });

  void test('a refused connection, a refused handshake, a wrong accept and a server close are counted errors, exit status 1', async () => {
    const forbidden = await raw((socket) => {
      void readHead(socket).then(() => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
    });
    const r403 = await runLoadgen({ url: forbidden, mode: 'closed', connections: 3, durationS: 1 });
    assert.equal(r403.exitCode, 1);
    assert.equal(r403.errors['handshake status'], 3);
    assert.match(r403.stderr, /403 Forbidden/);
    assert.equal(r403.messages, 0);

    const wrongAccept = await raw((socket) => {
      void readHead(socket).then(() =>
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n'),
      );
    });
    const churn = await runLoadgen({ url: wrongAccept, mode: 'churn', connections: 2, durationS: 0.3 });
    assert.equal(churn.exitCode, 1);
    assert.ok((churn.errors['bad accept'] ?? 0) >= 2, JSON.stringify(churn.errors));
    assert.equal(churn.handshakes, 0);

    const nobody = await freePort(); // free a moment ago: nothing listens there
    const refused = await runLoadgen({ url: `ws://127.0.0.1:${nobody}/`, mode: 'closed', connections: 2, durationS: 1 });
    assert.equal(refused.exitCode, 1);
    assert.equal(refused.errors.refused, 2);

    const closes = await raw((socket) => {
      void acceptUpgrade(socket, frame(0x8, Buffer.from([0x03, 0xf3]))); // 1011 straight away
    });
    const closed = await runLoadgen({ url: closes, mode: 'closed', connections: 2, durationS: 0.5 });
    assert.equal(closed.exitCode, 1);
    assert.equal(closed.errors['closed by server'], 2);
    assert.match(closed.stderr, /code 1011/);
  });

  void test('a target outside 127.0.0.0/8 is refused with exit status 2', async () => {
    for (const url of ['ws://192.0.2.1:80/', 'ws://example.com/', 'wss://127.0.0.1:443/']) {
      const r = await runBinary([url, '--mode', 'closed', '--duration', '1']);
      assert.equal(r.code, 2, url);
      assert.match(r.stderr, /only|refusing/, url);
      assert.equal(r.stdout, '');
    }
    assert.equal((await runBinary(['ws://127.0.0.1:9/', '--mode', 'closed', '--duration', '601'])).code, 2);
    assert.equal((await runBinary(['ws://127.0.0.1:9/', '--mode', 'closed', '--connections', '20001'])).code, 2);
    await assert.rejects(
      runLoadgen({ url: 'ws://10.1.2.3:80/', mode: 'closed', connections: 1, durationS: 1 }),
      (err: unknown) => err instanceof LoadgenError && err.exitCode === 2,
    );
  });
});

void describe('the suite: saturating targets', () => {
  const outcome = (figures: Record<string, number | null>): ScenarioOutcome => ({ figures, errors: {}, warnings: [], behind: false, command: '' });

  void test('a saturating target is judged only when both proxies kept their cores busy', () => {
    const results: SuiteResults = {
      nginx: {
        saturate: outcome({ msgPerSec: 100_000, cpuUsPerMsg: 10, proxyBusyPct: 99 }),
        'churn-sat': outcome({ hsPerSec: 5000, cpuUsPerHs: 200, proxyBusyPct: 97 }),
      },
      'wsgate-tunnel': {
        saturate: outcome({ msgPerSec: 92_000, cpuUsPerMsg: 10.5, proxyBusyPct: 98 }),
        'churn-sat': outcome({ hsPerSec: 3000, cpuUsPerHs: 290, proxyBusyPct: 99 }),
      },
      'wsgate-inspect': {
        saturate: outcome({ msgPerSec: 85_000, cpuUsPerMsg: 10.8, proxyBusyPct: 80 }),
        'churn-sat': outcome({ hsPerSec: 3400, cpuUsPerHs: 280, proxyBusyPct: 96 }),
      },
    };
    const verdicts = judgeTargets(results);
    const find = (label: string, proxy: string): TargetVerdict | undefined => verdicts.find((v) => v.target.startsWith(label) && v.proxy === proxy);
    assert.equal(find('saturate: messages/s', 'wsgate-tunnel')?.met, true); // 0.92 ≥ 0.9
    assert.equal(find('saturate: CPU per message', 'wsgate-tunnel')?.met, false); // 1.05 > 1.0
    assert.equal(find('churn-sat: handshakes/s', 'wsgate-tunnel')?.met, false); // 0.6 < 0.65
    assert.equal(find('churn-sat: handshakes/s', 'wsgate-inspect')?.met, true); // 0.68 ≥ 0.65
    assert.equal(find('churn-sat: CPU per handshake', 'wsgate-inspect')?.met, true); // 1.4 ≤ 1.5
    const unjudged = find('saturate: CPU per message', 'wsgate-inspect');
    assert.equal(unjudged?.met, null);
    assert.match(unjudged?.note ?? '', /too few rounds \(wsgate-inspect no round, 80\.0% busy; 3 needed\)/);
    assert.match(targetsMarkdown(verdicts), /\| saturate: messages\/s ≥ 0\.9× nginx \| 0\.92× ✓ \| 0\.85× \? \(proxy core ≥ 95% busy in too few rounds/);
    const table = markdownTable(results, ['nginx', 'wsgate-tunnel', 'wsgate-inspect']);
    assert.match(table, /\| saturate: echoes\/s ↑ \| 100,000 \(1\.00×\) \| 92,000 \(0\.92×\) \| 85,000 ‡ \(0\.85×\) \|/);
    assert.match(table, /\| saturate: proxy core busy \(%\) \| 99\.0 \| 98\.0 \| 80\.0 ‡ \|/);
  });

  void test('rounds of a saturating scenario count only when they saturated the proxy, and a target needs three of them', () => {
    const round = (busy: number, cpuUsPerMsg: number, msgPerSec: number): ScenarioOutcome => outcome({ msgPerSec, cpuUsPerMsg, proxyBusyPct: busy });
    // nginx saturated in rounds 1, 3 and 5 only: its figures are those rounds' medians.
    const nginx = [round(97, 6, 150_000), round(85, 7, 120_000), round(96, 6.4, 148_000), round(88, 7.2, 125_000), round(99, 6.2, 152_000)];
    const combined = combineRounds(nginx);
    assert.ok(combined !== undefined && !('failed' in combined));
    assert.deepEqual(
      [combined.figures.cpuUsPerMsg, combined.figures.msgPerSec, combined.figures.rounds, combined.figures.saturatedRounds],
      [6.2, 150_000, 5, 3],
    );
    assert.equal(saturatedCount(nginx), 3);
    const tunnel = [round(98, 6.1, 151_000), round(99, 6.3, 149_000), round(97, 6.2, 150_000)];
    const twoOfFive = [round(97, 6, 150_000), round(85, 7, 120_000), round(90, 6.4, 130_000), round(88, 7.2, 125_000), round(99, 6.2, 152_000)];
    const verdict = (nginxRounds: ScenarioOutcome[]): TargetVerdict | undefined => {
      const results: SuiteResults = {};
      for (const [name, rounds] of [
        ['nginx', nginxRounds],
        ['wsgate-tunnel', tunnel],
      ] as const) {
        const c = combineRounds(rounds);
        assert.ok(c !== undefined);
        results[name] = { saturate: c };
      }
      return judgeTargets(results).find((v) => v.target.startsWith('saturate: messages/s') && v.proxy === 'wsgate-tunnel');
    };
    assert.equal(verdict(nginx)?.met, true); // 150,000 / 150,000
    assert.equal(verdict(nginx)?.value, 1);
    const short = verdict(twoOfFive);
    assert.equal(short?.met, null);
    assert.match(short?.note ?? '', /nginx 2 of 5 rounds; 3 needed/);
    // Every round of a two-round run is enough, but not one of two.
    assert.equal(verdict([round(97, 6, 150_000), round(96, 6, 150_000)])?.met, true);
    assert.equal(verdict([round(97, 6, 150_000), round(90, 6, 150_000)])?.met, null);
  });
});

void describe('the C echo backend', () => {
  let url = '';
  before(async () => {
    const child = spawn(await echoPath(), ['--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    closers.push(async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    });
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += String(d);
        const m = /listening on (ws:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
        if (m) resolve(m[1] as string);
      });
      child.once('exit', (code) => reject(new Error(`echo exited with ${code}`)));
    });
  });

  void test('echoes text, binary, 1 MiB and fragmented messages with real masks, answers a ping, and a close with its code', async () => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const got: string[] = [];
    ws.on('message', (d: Buffer, binary) => got.push(`${binary ? 'bin' : 'text'} ${d.length} ${d.subarray(0, 5).toString('hex')}`));
    ws.on('pong', (d) => got.push(`pong ${String(d)}`));
    await new Promise((r) => ws.once('open', r));
    ws.send('hello');
    ws.send(Buffer.from([1, 2, 3]));
    ws.send(Buffer.alloc(1 << 20, 7));
    ws.send('ab', { fin: false });
    ws.send('cd', { fin: true });
    ws.ping('p1');
    const closed = new Promise<number>((r) => ws.once('close', r));
    await new Promise((r) => setTimeout(r, 300));
    ws.close(4001, 'bye');
    assert.equal(await closed, 4001);
    assert.deepEqual(got, [
      `text 5 ${Buffer.from('hello').toString('hex')}`,
      'bin 3 010203',
      `bin ${1 << 20} 0707070707`,
      `text 4 ${Buffer.from('abcd').toString('hex')}`,
      'pong p1',
    ]);
  });

  void test('a request that is not an upgrade gets 400; an unmasked frame gets a close 1002', async () => {
    const port = Number(new URL(url).port);
    const answer = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      let out = '';
      s.on('data', (d) => (out += String(d)));
      s.on('close', () => resolve(out));
      s.on('error', () => resolve(out));
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const close = await new Promise<Buffer>((resolve) => {
      const s = connect(port, '127.0.0.1', () =>
        s.write(
          'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        ),
      );
      let out = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        out = Buffer.concat([out, d]);
        if (out.includes('\r\n\r\n') && out.length === out.indexOf('\r\n\r\n') + 4) s.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
      });
      s.on('close', () => resolve(out));
      s.on('error', () => resolve(out));
    });
    const head = close.subarray(0, close.indexOf('\r\n\r\n') + 4).toString('latin1');
    // RFC 6455 §1.3's own example key and accept.
    assert.match(head, /^HTTP\/1\.1 101 [^]*Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    assert.equal(close.subarray(head.length).toString('hex'), '880203ea');
  });
});
