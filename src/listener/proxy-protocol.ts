import { isIP, type Socket } from 'node:net';
import type { Peer } from './peer-address.js';

// PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy specifies it:
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** "PROXY TCP6 <39> <39> 65535 65535\r\n" is the longest v1 line. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Addresses plus a generous allowance for TLVs (AWS, GCP and Azure send a few dozen bytes). */
export const V2_MAX_PAYLOAD = 4096;

export type ProxyParse =
  | { readonly status: 'more' }
  /** `source` undefined: a health check from the balancer itself (LOCAL / UNKNOWN): keep the socket's own address. */
  | { readonly status: 'done'; readonly source: Peer | undefined; readonly length: number }
  | { readonly status: 'invalid'; readonly reason: string };

const MORE: ProxyParse = Object.freeze({ status: 'more' });

/** Parses the header at the start of `buf`; 'more' until enough bytes are there to decide. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return MORE;
  if (buf[0] === 0x50 /* P */) return parseV1(buf);
  if (buf[0] === 0x0d) return parseV2(buf);
  return invalid('no PROXY protocol header');
}

function invalid(reason: string): ProxyParse {
  return { status: 'invalid', reason };
}

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.compare(prefix, 0, n, 0, n) === 0;
}

function parseV1(buf: Buffer): ProxyParse {
  if (!startsWith(buf, V1_PREFIX)) return invalid('no PROXY protocol header');
  // The line ends at its first CR or LF: it must be CRLF. A bare LF (or CR) is refused at
  // once, not waited on until 107 bytes or the timeout, since no later byte can mend it.
  const limit = Math.min(buf.length, V1_MAX);
  let end = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const c = buf[i]!;
    if (c !== 0x0d && c !== 0x0a) continue;
    if (c === 0x0a || (i + 1 < buf.length && buf[i + 1] !== 0x0a)) return invalid('v1 header line does not end with CRLF');
    end = i;
    break;
  }
  if (end === -1 || end + 1 >= buf.length) return buf.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : MORE;
  if (end + 2 > V1_MAX) return invalid('v1 header longer than 107 bytes');
  const parts = buf.toString('latin1', 0, end).split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { status: 'done', source: undefined, length };
  if (parts.length !== 6) return invalid('v1 header does not have 6 fields');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (family === 0) return invalid(`v1 protocol "${printable(proto)}" is not TCP4, TCP6 or UNKNOWN`);
  // isIP takes an IPv6 zone ("fe80::1%eth0"): meaningless from another host, and no part of the format.
  if (isIP(src) !== family || isIP(dst) !== family || src.includes('%') || dst.includes('%')) return invalid(`v1 addresses are not ${proto} addresses`);
  if (!isPort(sport) || !isPort(dport)) return invalid('v1 ports are not 0-65535');
  return { status: 'done', source: { address: src, port: Number(sport) }, length };
}

/** At most 16 characters of untrusted text, safe to log. */
function printable(s: string): string {
  return s.slice(0, 16).replace(/[^\x20-\x7e]/g, '?');
}

function isPort(s: string): boolean {
  return /^\d{1,5}$/.test(s) && Number(s) <= 65_535;
}

function parseV2(buf: Buffer): ProxyParse {
  if (!startsWith(buf, V2_SIGNATURE)) return invalid('no PROXY protocol header');
  if (buf.length < 16) return MORE;
  const versionCommand = buf[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`v2 version ${versionCommand >> 4} is not 2`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`v2 command ${command} is not LOCAL or PROXY`);
  const family = buf[13]! >> 4;
  // The spec: unassigned transports "must be rejected as invalid by receivers".
  if ((buf[13]! & 0x0f) > 2) return invalid(`v2 transport ${buf[13]! & 0x0f} is not UNSPEC, STREAM or DGRAM`);
  const payload = buf.readUInt16BE(14);
  if (payload > V2_MAX_PAYLOAD) return invalid(`v2 header of ${payload} bytes is over ${V2_MAX_PAYLOAD}`);
  const length = 16 + payload;
  if (buf.length < length) return MORE;
  // LOCAL: the balancer's own connection (a health check); UNSPEC/UNIX: no IP to use.
  if (command === 0 || family === 0 || family === 3) return { status: 'done', source: undefined, length };
  if (family === 1) {
    if (payload < 12) return invalid('v2 IPv4 address block is short');
    return { status: 'done', source: { address: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, port: buf.readUInt16BE(24) }, length };
  }
  if (family === 2) {
    if (payload < 36) return invalid('v2 IPv6 address block is short');
    return { status: 'done', source: { address: formatIpv6(buf.subarray(16, 32)), port: buf.readUInt16BE(48) }, length };
  }
  return invalid(`v2 address family ${family} is unknown`);
}

/** RFC 5952 text for 16 bytes; IPv4-mapped addresses as ::ffff:a.b.c.d, as Node reports them. */
export function formatIpv6(b: Buffer): string {
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
  if (mapped) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  // The longest run of two or more zero groups becomes "::".
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** What the reader hands on: the source (undefined = keep the socket's own) and the bytes behind the header. */
export type ProxyHeaderCallback = (err: string | undefined, source: Peer | undefined, rest: Buffer | undefined) => void;

/**
 * Reads a PROXY header off a fresh connection before anything else may see
 * it. The whole header must arrive within `timeout` ms of the connection (a
 * deadline, not an idle timer: a header dripped a byte at a time must not
 * hold the connection for 4 KiB × timeout); a connection that sends
 * something else, or ends first, is reported (the caller closes it).
 */
export class ProxyHeaderReader {
  readonly #socket: Socket;
  readonly #done: ProxyHeaderCallback;
  readonly #deadline: number;
  #buf: Buffer | undefined;
  #settled = false;

  constructor(socket: Socket, timeout: number, done: ProxyHeaderCallback) {
    this.#socket = socket;
    this.#done = done;
    this.#deadline = Date.now() + timeout;
    socket.on('data', this.#onData);
    // 'end' as well as 'close': a server socket that allows half-open connections never closes on the client's FIN.
    socket.on('end', this.#onClose);
    socket.on('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
    socket.setTimeout(timeout);
  }

  #onData = (chunk: Buffer): void => {
    const buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    const parsed = parseProxyHeader(buf);
    switch (parsed.status) {
      case 'more': {
        this.#buf = buf;
        // Each byte re-arms the socket's idle timer: set it to what is left of the deadline.
        const left = this.#deadline - Date.now();
        if (left <= 0) return this.#onTimeout();
        this.#socket.setTimeout(left);
        return;
      }
      case 'invalid':
        return this.#settle(parsed.reason, undefined, undefined);
      case 'done':
        return this.#settle(undefined, parsed.source, parsed.length < buf.length ? buf.subarray(parsed.length) : undefined);
    }
  };

  #onClose = (): void => this.#settle('closed before the PROXY header was complete', undefined, undefined);

  #onTimeout = (): void => this.#settle('no complete PROXY header in time', undefined, undefined);

  #settle(err: string | undefined, source: Peer | undefined, rest: Buffer | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#buf = undefined;
    const socket = this.#socket;
    // Stop the flow before the HTTP (or TLS) layer takes the socket over.
    socket.pause();
    socket.off('data', this.#onData);
    socket.off('end', this.#onClose);
    socket.off('close', this.#onClose);
    socket.off('timeout', this.#onTimeout);
    socket.setTimeout(0);
    this.#done(err, source, rest);
  }
}
