import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { startBackend, startGateway, statusOf, upgradeRequest, type Backend, type RunningGateway } from './helpers.js';

const FLOOD_HANDSHAKES = 3_000;
const FLOOD_CONCURRENCY = 100;
const SLOWLORIS_CONNECTIONS = 300;

/** One handshake from `localAddress`; resolves to its status (0: closed without an answer). */
function attempt(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    let text = '';
    const done = (): void => {
      socket.destroy();
      resolve(statusOf(text));
    };
    socket.on('error', done);
    socket.on('close', done);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n')) done();
    });
    socket.write(upgradeRequest());
  });
}

/** Connections that send their request head one byte at a time, reconnecting when cut, until stopped. */
class Slowloris {
  cut = 0;
  answered = 0;
  readonly #sockets = new Set<Socket>();
  readonly #timer: NodeJS.Timeout;
  #stopped = false;

  constructor(
    readonly port: number,
    readonly localAddress: string,
    count: number,
  ) {
    for (let i = 0; i < count; i++) this.#open();
    const request = upgradeRequest();
    this.#timer = setInterval(() => {
      for (const s of this.#sockets) {
        const sent = (s as Socket & { sent?: number }).sent ?? 0;
        if (sent < request.length && s.writable) {
          s.write(request[sent]!);
          (s as Socket & { sent?: number }).sent = sent + 1;
        }
      }
    }, 200);
  }

  #open(): void {
    if (this.#stopped) return;
    const s = connect({ port: this.port, host: '127.0.0.1', localAddress: this.localAddress });
    this.#sockets.add(s);
    s.on('error', () => {});
    s.on('data', () => this.answered++);
    s.on('close', () => {
      this.#sockets.delete(s);
      this.cut++;
      // Keep the pressure up, a little later (no busy loop against the accept cap).
      if (!this.#stopped) setTimeout(() => this.#open(), 100);
    });
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const s of this.#sockets) s.destroy();
  }
}

void describe('abuse: a handshake flood and a slowloris next to a well-behaved client', () => {
  let backend: Backend;
  let gw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    // The default per-IP limits: 256 connections, 20 handshakes/s, burst 40.
    gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { handshakeTimeout: 1s }
log: { accessLog: false }
shutdown: { drainTimeout: 0 }
`);
  });
  after(async () => {
    await gw.close();
    await backend.close();
  });

  void it('the good client connects and exchanges every message; the flood gets 429s, the slowloris gets cut', async (t) => {
    const slowloris = new Slowloris(gw.port, '127.0.0.3', SLOWLORIS_CONNECTIONS);
    // The well-behaved client: one long-lived session chatting throughout, plus fresh sessions one after another.
    const errors: string[] = [];
    const longLived = new WebSocket(gw.url);
    longLived.on('error', (err) => errors.push(`long-lived: ${err.message}`));
    await once(longLived, 'open');
    let echoed = 0;
    let sent = 0;
    longLived.on('message', () => echoed++);
    longLived.on('close', () => errors.push('long-lived: closed'));
    const chatter = setInterval(() => {
      longLived.send(`tick ${sent++}`);
    }, 20);

    const started = Date.now();
    const statuses = new Map<number, number>();
    let next = 0;
    const flooder = async (): Promise<void> => {
      while (next < FLOOD_HANDSHAKES) {
        next++;
        const status = await attempt(gw.port, '127.0.0.2');
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    const flood = Promise.all(Array.from({ length: FLOOD_CONCURRENCY }, flooder));

    const freshSessions = (async () => {
      let n = 0;
      for (; n < 10; n++) {
        const ws = new WebSocket(gw.url);
        ws.on('error', (err) => errors.push(`fresh ${n}: ${err.message}`));
        await once(ws, 'open');
        for (let i = 0; i < 20; i++) {
          ws.send(`m${i}`);
          const [msg] = (await once(ws, 'message')) as [Buffer];
          if (msg.toString() !== `m${i}`) errors.push(`fresh ${n}: got ${msg.toString()}`);
        }
        ws.close();
        await once(ws, 'close');
      }
      return n;
    })();

    await flood;
    const elapsed = (Date.now() - started) / 1000;
    const fresh = await freshSessions;
    // Long enough for the slowloris connections to hit handshakeTimeout at least once.
    await new Promise((r) => setTimeout(r, Math.max(0, 2_500 - (Date.now() - started))));
    clearInterval(chatter);
    await new Promise((r) => setTimeout(r, 200));
    longLived.removeAllListeners('close');
    longLived.close();
    slowloris.stop();

    t.diagnostic(
      `flood: ${FLOOD_HANDSHAKES} handshakes in ${elapsed.toFixed(2)} s (${Math.round(FLOOD_HANDSHAKES / elapsed)}/s): ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    t.diagnostic(`slowloris: ${slowloris.cut} connections cut, ${slowloris.answered} answers`);

    assert.deepEqual(errors, [], 'the well-behaved client saw no error');
    assert.equal(fresh, 10);
    assert.equal(echoed, sent, 'every message of the long-lived session came back');
    assert.ok(sent > 50, `the long-lived session kept talking (${sent} messages)`);

    const accepted = statuses.get(101) ?? 0;
    const limited = statuses.get(429) ?? 0;
    // Burst plus what the rate refills while the flood lasts (and a little for the clock).
    const allowance = 40 + Math.ceil(20 * (elapsed + 1));
    assert.ok(accepted <= allowance, `${accepted} flood handshakes got through; at most ${allowance} may`);
    assert.equal(accepted + limited, FLOOD_HANDSHAKES, JSON.stringify(Object.fromEntries(statuses)));
    const fromFlood = backend.requests.filter((r) => r.headers['x-forwarded-for'] === '127.0.0.2').length;
    assert.equal(fromFlood, accepted, 'only the admitted flood handshakes reached the backend');

    assert.ok(slowloris.cut >= SLOWLORIS_CONNECTIONS, `slowloris connections were cut (${slowloris.cut})`);
    assert.equal(backend.requests.filter((r) => r.headers['x-forwarded-for'] === '127.0.0.3').length, 0, 'no slowloris connection reached the backend');

    // Refusals are logged, but not one line each.
    const rejected = gw.logs.filter((l) => l.msg === 'handshake rejected');
    assert.ok(rejected.length > 0 && rejected.length < limited, `${rejected.length} log lines for ${limited} refusals`);
    assert.ok(
      rejected.some((l) => typeof l.suppressed === 'number' && l.suppressed > 0),
      'a line says how many were left out',
    );
  });
});
