import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';
import { BenchError } from './bench-error.js';

/** How messages are offered to the target. */
export type LoadMode =
  /** `rate` messages/s in total, on a fixed schedule whatever the target does. */
  | { readonly kind: 'open'; readonly rate: number }
  /** `inflight` messages outstanding per connection; each echo triggers the next send. */
  | { readonly kind: 'closed'; readonly inflight: number }
  /** Connections opened, then held without traffic. */
  | { readonly kind: 'idle' }
  /**
   * Each connection slot loops: connect, handshake, one echo, close. With
   * `rate`, cycles start on a fixed schedule instead (`rate` per second in
   * total), at most `connections` at once.
   */
  | { readonly kind: 'churn'; readonly rate?: number };

export interface BenchOptions {
  /** ws:// or wss:// (http(s):// is rewritten). */
  readonly url: string;
  readonly mode: LoadMode;
  readonly connections: number;
  /** New connections per second; 0 = as fast as the handshake concurrency cap allows. */
  readonly ramp: number;
  /** Payload bytes per message, at least 8 (the sequence number lives in the first 8). */
  readonly size: number;
  readonly binary: boolean;
  readonly durationMs: number;
  /** Load before measuring starts (JIT, first writes on fresh sockets); 0 = none. */
  readonly warmupMs: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly subprotocols: readonly string[];
  readonly insecure: boolean;
  readonly json: boolean;
  readonly workers: number;
  /** Handshake timeout, and how long outstanding echoes are awaited at the end. */
  readonly timeoutMs: number;
  readonly allowRemote: boolean;
  readonly progress: boolean;
}

/** Below the 20,000 open files a process may hold here, with room for the rest. */
export const MAX_CONNECTIONS_PER_WORKER = 19_000;
/** The payload starts with an 8-byte sequence number; smaller sizes are padded to this. */
export const MIN_SIZE = 8;
const MAX_SIZE = 64 * 1024 * 1024;
const MAX_DURATION_MS = 3_600_000;
const MAX_WORKERS = 64;
/** Text payloads carry the sequence number as 8 hex digits. */
const MAX_MESSAGES = 0xffff_ffff;

export const USAGE = `usage: wsgate bench URL [options]

  Load-tests a WebSocket endpoint that echoes messages (e.g. \`wsgate echo\`).

  load (pick one; default --inflight 1):
    --rate N            open loop: N messages/s in total, split evenly over the
                        connections; latency counts from each message's intended
                        send time, so stalls are not hidden
    --inflight K        closed loop: K messages outstanding per connection
    --idle              open the connections and hold them, no messages
    --churn             each connection slot loops: connect, handshake, one echo, close;
                        with --rate N, N such cycles/s start on a fixed schedule
                        instead, at most --connections at once (CPU per handshake
                        of two proxies compared at the same load)

  --connections N       concurrent connections (default 10)
  --ramp R              new connections per second (default: as fast as possible,
                        at most 256 handshakes in flight)
  --size BYTES          payload size, e.g. 64, 4KiB (default 64; minimum 8)
  --binary              binary messages (default text)
  --duration D          measured load, e.g. 10s, 500ms, 2m; bare number = seconds (default 10s)
  --warmup D            load before measuring starts, not counted (default 0)
  --header "Name: v"    extra handshake header (repeatable)
  --subprotocol P       offered Sec-WebSocket-Protocol (repeatable)
  --insecure            accept self-signed TLS certificates (wss://)
  --timeout D           handshake timeout, and the wait for outstanding echoes (default 5s)
  --workers N           load processes, each from its own 127.x source address when the target is 127.x
  --json                print the result as JSON on stdout
  --no-progress         no live progress line (it is shown only on a TTY anyway)
  --allow-remote        allow a target outside 127.0.0.0/8, ::1 and localhost

  exit status: 0 clean run, 1 errors were counted, 2 bad usage or refused target, 130 interrupted
`;

function usage(message: string): BenchError {
  return new BenchError('BENCH_USAGE', message);
}

function positiveInt(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw usage(`--${name}: "${raw}" is not a whole number`);
  const n = Number(raw);
  if (n < min || n > max) throw usage(`--${name}: must be between ${min} and ${max}`);
  return n;
}

function positiveNumber(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+(\.\d+)?$/.test(raw)) throw usage(`--${name}: "${raw}" is not a number`);
  const n = Number(raw);
  if (n < min || n > max) throw usage(`--${name}: must be between ${min} and ${max}`);
  return n;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10s", "500ms", "2m"; a bare number is seconds (as in wrk and friends). */
export function parseDuration(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) throw usage(`--${name}: "${raw}" is not a duration (e.g. 10s, 500ms, 2m)`);
  const ms = Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1000);
  if (ms < 1 || ms > MAX_DURATION_MS) throw usage(`--${name}: must be between 1ms and 1h`);
  return Math.round(ms);
}

const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, kib: 1024, mib: 1024 * 1024 };

function parseSize(raw: string): number {
  const m = /^(\d+)\s*(B|KiB|MiB)?$/i.exec(raw.trim());
  if (!m) throw usage(`--size: "${raw}" is not a size (e.g. 64, 4KiB, 1MiB)`);
  const bytes = Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 1);
  if (bytes < 1 || bytes > MAX_SIZE) throw usage('--size: must be between 1 byte and 64MiB');
  return Math.max(MIN_SIZE, bytes);
}

/** RFC 7230 token: header names and subprotocols. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHeader(raw: string): [string, string] {
  const colon = raw.indexOf(':');
  const name = colon > 0 ? raw.slice(0, colon).trim() : '';
  const value = raw.slice(colon + 1).trim();
  if (!TOKEN.test(name) || /[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw usage(`--header: "${raw}" is not "Name: value"`);
  return [name, value];
}

function parseSubprotocols(raw: readonly string[]): string[] {
  for (const p of raw) if (!TOKEN.test(p)) throw usage(`--subprotocol: "${p}" is not a valid protocol name`);
  if (new Set(raw).size !== raw.length) throw usage('--subprotocol: the same protocol is given twice');
  return [...raw];
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and "localhost". */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  return /^::ffff:127\.\d+\.\d+\.\d+$/.test(host) || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host);
}

function parseTarget(raw: string, allowRemote: boolean): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usage(`"${raw}" is not a URL (e.g. ws://127.0.0.1:8080/)`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw usage(`${raw}: the URL must be ws://, wss://, http:// or https://`);
  if (!allowRemote && !isLoopbackHost(url.hostname)) {
    throw new BenchError(
      'BENCH_REMOTE_REFUSED',
      `refusing to load ${url.hostname}: wsgate bench only targets 127.0.0.0/8, ::1 or localhost; ` +
        'pass --allow-remote if you really mean to load another machine',
    );
  }
  return url.href;
}

function pickMode(values: { rate?: string; inflight?: string; idle?: boolean; churn?: boolean }): LoadMode {
  const churnAtRate = values.churn === true && values.rate !== undefined;
  const chosen = [values.rate !== undefined && !churnAtRate, values.inflight !== undefined, values.idle === true, values.churn === true];
  if (chosen.filter(Boolean).length > 1) throw usage('pick one of --rate, --inflight, --idle and --churn (or --churn with --rate)');
  if (churnAtRate) return { kind: 'churn', rate: positiveNumber('rate', values.rate!, 0.1, 1_000_000) };
  if (values.rate !== undefined) return { kind: 'open', rate: positiveNumber('rate', values.rate, 0.1, 10_000_000) };
  if (values.idle === true) return { kind: 'idle' };
  if (values.churn === true) return { kind: 'churn' };
  return { kind: 'closed', inflight: positiveInt('inflight', values.inflight ?? '1', 1, 10_000) };
}

/** Parses `wsgate bench` arguments (without "bench"). Throws BenchError on bad usage. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        rate: { type: 'string' },
        inflight: { type: 'string' },
        idle: { type: 'boolean' },
        churn: { type: 'boolean' },
        connections: { type: 'string', short: 'c' },
        ramp: { type: 'string' },
        size: { type: 'string' },
        binary: { type: 'boolean' },
        duration: { type: 'string', short: 'd' },
        warmup: { type: 'string' },
        header: { type: 'string', short: 'H', multiple: true },
        subprotocol: { type: 'string', multiple: true },
        insecure: { type: 'boolean', short: 'k' },
        timeout: { type: 'string' },
        workers: { type: 'string' },
        json: { type: 'boolean' },
        'no-progress': { type: 'boolean' },
        'allow-remote': { type: 'boolean' },
      },
    });
  } catch (err) {
    throw usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw usage(positionals.length === 0 ? 'missing the target URL' : 'give exactly one target URL');
  const allowRemote = values['allow-remote'] === true;
  const url = parseTarget(positionals[0] as string, allowRemote);
  const mode = pickMode(values);
  const connections = positiveInt('connections', values.connections ?? '10', 1, 1_000_000);
  const workers = Math.min(positiveInt('workers', values.workers ?? '1', 1, MAX_WORKERS), connections);
  if (Math.ceil(connections / workers) > MAX_CONNECTIONS_PER_WORKER) {
    const need = Math.ceil(connections / MAX_CONNECTIONS_PER_WORKER);
    throw usage(`--connections ${connections} needs --workers ${need} or more (a process holds at most ${MAX_CONNECTIONS_PER_WORKER})`);
  }
  const durationMs = parseDuration('duration', values.duration ?? '10s');
  const warmupMs = values.warmup === undefined || /^0+(ms|s)?$/.test(values.warmup) ? 0 : parseDuration('warmup', values.warmup);
  if (mode.kind === 'open' && (mode.rate * (warmupMs + durationMs)) / 1000 > MAX_MESSAGES) {
    throw usage('--rate × (--warmup + --duration) is over 2^32 messages');
  }
  const headers: Record<string, string> = {};
  for (const raw of values.header ?? []) {
    const [name, value] = parseHeader(raw);
    headers[name] = value;
  }
  return Object.freeze({
    url,
    mode: Object.freeze(mode),
    connections,
    ramp: values.ramp === undefined ? 0 : positiveNumber('ramp', values.ramp, 0.1, 1_000_000),
    size: parseSize(values.size ?? '64'),
    binary: values.binary === true,
    durationMs,
    warmupMs,
    headers: Object.freeze(headers),
    subprotocols: Object.freeze(parseSubprotocols(values.subprotocol ?? [])),
    insecure: values.insecure === true,
    json: values.json === true,
    workers,
    timeoutMs: parseDuration('timeout', values.timeout ?? '5s'),
    allowRemote,
    progress: values['no-progress'] !== true,
  });
}

/**
 * Source address for worker `index` of `workers`: 127.A.B.(2 + index), so each worker has its own
 * ephemeral port range. A.B come from `salt` (random per run): bind() to port 0 gets very slow on
 * an address holding thousands of TIME_WAIT sockets from the previous run.
 */
export function sourceAddressFor(url: string, index: number, workers: number, salt: number): string | undefined {
  if (workers < 2) return undefined;
  const host = new URL(url).hostname;
  if (!isIPv4(host) || !host.startsWith('127.')) return undefined;
  const s = Math.abs(Math.floor(salt)) % (254 * 256);
  return `127.${1 + Math.floor(s / 256)}.${s % 256}.${2 + index}`;
}
