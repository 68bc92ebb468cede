import { HOP_BY_HOP } from '../http/hop-by-hop.js';

/** An upstream's response head, parsed once at the handshake. */
export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  /** Header lines in order, names as sent. */
  readonly lines: readonly (readonly [string, string])[];
  /** First value of a header, by lower-case name. */
  get(name: string): string | undefined;
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses a response head (status line and header lines, without the blank line); undefined when malformed. */
export function parseResponseHead(text: string): ResponseHead | undefined {
  const rows = text.split('\r\n');
  const m = STATUS_LINE.exec(rows[0] ?? '');
  if (m === null) return undefined;
  const lines: [string, string][] = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i]!;
    const colon = row.indexOf(':');
    if (colon <= 0) return undefined;
    const name = row.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    lines.push([name, row.slice(colon + 1).trim()]);
  }
  return {
    status: Number(m[1]),
    reason: m[2] ?? '',
    lines,
    get(name: string): string | undefined {
      for (const [n, v] of lines) if (n.length === name.length && n.toLowerCase() === name) return v;
      return undefined;
    },
  };
}


/** The 101 for the client: the upstream's headers minus hop-by-hop ones, with our own Connection/Upgrade. */
export function clientSwitchingHead(head: ResponseHead): string {
  let out = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  for (const [name, value] of head.lines) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) out += `${name}: ${value}\r\n`;
  }
  return out + '\r\n';
}

/** A non-101 answer passed on to the client as is, except that the connection closes after it. */
export function clientAnswerHead(head: ResponseHead): string {
  let out = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
  for (const [name, value] of head.lines) {
    const lower = name.toLowerCase();
    if (lower !== 'connection' && lower !== 'keep-alive') out += `${name}: ${value}\r\n`;
  }
  return out + 'Connection: close\r\n\r\n';
}
