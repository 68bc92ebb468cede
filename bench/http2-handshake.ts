// WebSocket handshakes over HTTP/2 (RFC 8441 extended CONNECT, streams of one
// open connection) against HTTP/1.1 upgrades over TLS (a new TLS connection
// each, as a browser without an open connection makes them), through wsgate
// in both relay modes. Each WebSocket is ended by the client right after its
// answer (END_STREAM on h2, FIN on HTTP/1.1: a reset per stream would soon
// meet nghttp2's rapid-reset limit and a GOAWAY), so the figures include
// the session's teardown. Reports handshakes per second and the
// gateway's CPU per handshake (its process's utime+stime, from /proc).
//
// Part of the benchmark suite (`npm run bench` adds its table to RESULTS.md:
// nginx has no RFC 8441, so there is no ratio), and a command of its own.
// Bounded: DURATION seconds (default 3) per row, CONCURRENCY handshakes in
// flight (default 32).
// Run: node --import tsx bench/http2-handshake.ts
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { cpuMicros, family, freePort, killAllChildren, spawnChild, waitForPort, type Child } from './suite/proc.js';

const DURATION_MS = 1000 * Number(process.env.DURATION ?? 3);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
/** After each row: sessions still closing are counted with it. */
const SETTLE_MS = 300;

interface Row {
  readonly mode: string;
  readonly transport: string;
  readonly handshakes: number;
  readonly failures: number;
  readonly seconds: number;
  readonly cpuMicros: number;
}

/** A throwaway CA and a certificate for 127.0.0.1 and localhost, by the openssl CLI. */
function certificates(dir: string): { cert: string; key: string; ca: Buffer } {
  const run = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=bench CA']);
  run(['req', '-new', ...ec, '-keyout', 'key.pem', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca-key.pem',
    '-set_serial',
    '1',
    '-out',
    'cert.pem',
    '-days',
    '1',
    '-extfile',
    'san.ext',
  ]);
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem'), ca: readFileSync(join(dir, 'ca.pem')) };
}

function config(port: number, backendPort: number, cert: string, key: string, mode: string): string {
  return `listeners:
  - address: 127.0.0.1:${port}
    tls: { cert: ${cert}, key: ${key} }
    http2: true
routes: [{ match: { path: / }, upstream: echo }]
upstreams: { echo: { targets: [{ url: "ws://127.0.0.1:${backendPort}" }] } }
limits:
  maxConnections: 1000000
  perIp: { maxConnections: 1000000, handshakeRate: 0 }
relay: { mode: ${mode} }
shutdown: { drainTimeout: 0 }
log: { level: warn, accessLog: false }
`;
}

/** Runs `one` CONCURRENCY at a time until the time is up; counts the handshakes that got their answer. */
async function drive(one: () => Promise<boolean>): Promise<{ ok: number; failed: number; seconds: number }> {
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  const end = start + DURATION_MS;
  const worker = async (): Promise<void> => {
    // Failures stop the row early (a dead connection would fail as fast as the loop runs).
    while (performance.now() < end && failed < 100) {
      if (await one().catch(() => false)) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { ok, failed, seconds: (performance.now() - start) / 1000 };
}

/** One extended CONNECT on the open session, answered 200, then reset by the client. */
function h2Handshake(session: ClientHttp2Session, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const stream = session.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'https',
      ':path': '/',
      ':authority': `localhost:${port}`,
      'sec-websocket-version': '13',
    });
    stream.on('error', () => resolve(false));
    stream.on('close', () => resolve(false));
    stream.once('response', (headers) => {
      stream.end();
      stream.resume();
      resolve(headers[':status'] === 200);
    });
  });
}

/** One HTTP/1.1 upgrade on a new TLS connection, answered 101, then the connection closed. */
function h1Handshake(port: number, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols: ['http/1.1'] }, () => {
      socket.write(
        `GET / HTTP/1.1\r\nHost: localhost:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    let head = '';
    socket.on('error', () => resolve(false));
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.end();
      resolve(head.startsWith('HTTP/1.1 101 '));
    });
    socket.on('close', () => resolve(false));
  });
}

async function measure(gateway: Child, mode: string, transport: string, one: () => Promise<boolean>): Promise<Row> {
  const pids = family(gateway.pid);
  const cpu0 = cpuMicros(pids);
  const run = await drive(one);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  return { mode, transport, handshakes: run.ok, failures: run.failed, seconds: run.seconds, cpuMicros: cpuMicros(pids) - cpu0 };
}

export interface Http2BenchOptions {
  /** wsgate's entry point: src/main.ts (through tsx) by default, or a build's dist/main.js. */
  readonly wsgate?: string;
  /** A prefix for the gateway's command line, e.g. ['taskset', '-c', '0']. */
  readonly pin?: readonly string[];
  /** The echo backend's port, when one runs already. */
  readonly backendPort?: number;
}

/** Runs the four rows and returns them as a markdown table with a line above it. */
export async function http2HandshakeTable(options: Http2BenchOptions = {}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-h2-bench-'));
  const rows: Row[] = [];
  try {
    const { cert, key, ca } = certificates(dir);
    const backendPort = options.backendPort ?? (await freePort());
    const backend =
      options.backendPort === undefined
        ? spawnChild('echo', process.execPath, ['--import', 'tsx', 'bench/echo-entry.ts', '--port', String(backendPort)])
        : undefined;
    if (backend !== undefined) await waitForPort(backend, backendPort);
    const entry = options.wsgate === undefined ? ['--import', 'tsx', 'src/main.ts'] : [options.wsgate];
    const pin = options.pin ?? [];
    for (const mode of ['inspect', 'tunnel']) {
      const port = await freePort();
      const file = join(dir, `wsgate-${mode}.yaml`);
      writeFileSync(file, config(port, backendPort, cert, key, mode));
      const command = [...pin, process.execPath, ...entry, 'start', '-c', file];
      const gateway = spawnChild(`wsgate-${mode}`, command[0] as string, command.slice(1));
      try {
        await waitForPort(gateway, port, 30_000);
        const session = h2connect(`https://127.0.0.1:${port}`, { ca, servername: 'localhost', settings: { initialWindowSize: 1 << 20 } });
        session.on('error', () => {});
        session.on('goaway', (code: number) => process.stderr.write(`${mode}: GOAWAY ${code} from the gateway\n`));
        await once(session, 'remoteSettings');
        // Warm-up: JIT and the first TLS context, out of the figures.
        for (let i = 0; i < 200; i++) await h2Handshake(session, port);
        for (let i = 0; i < 50; i++) await h1Handshake(port, ca);
        rows.push(await measure(gateway, mode, 'HTTP/2 extended CONNECT, one connection', () => h2Handshake(session, port)));
        session.destroy();
        rows.push(await measure(gateway, mode, 'HTTP/1.1 upgrade, new TLS connection each', () => h1Handshake(port, ca)));
      } finally {
        await gateway.stop();
      }
    }
    await backend?.stop();
  } finally {
    if (options.backendPort === undefined) killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = [
    `WebSocket handshakes through wsgate over TLS: ${DURATION_MS / 1000} s per row, ${CONCURRENCY} in flight, client and gateway on the same machine (Node ${process.version}).`,
    '',
    '| relay mode | how the client comes | handshakes/s | gateway CPU per handshake | failed |',
    '|---|---|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${r.transport} | ${Math.round(r.handshakes / r.seconds)} | ${r.handshakes === 0 ? '–' : `${Math.round(r.cpuMicros / r.handshakes)} µs`} | ${r.failures} |`,
    ),
  ];
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write((await http2HandshakeTable()) + '\n');
}
