import { HOP_BY_HOP } from '../http/hop-by-hop.js';

/** An upstream's response head, parsed once at the handshake. */
export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  /** Header lines in order, names as sent. */
  readonly lines: readonly (readonly [string, string])[];
  /** The names of `lines` in lower case, index for index. */
  readonly lower: readonly string[];
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
  const lower: string[] = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i]!;
    const colon = row.indexOf(':');
    if (colon <= 0) return undefined;
    const name = row.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    lines.push([name, row.slice(colon + 1).trim()]);
    lower.push(name.toLowerCase());
  }
  return {
    status: Number(m[1]),
    reason: m[2] ?? '',
    lines,
    lower,
    get(name: string): string | undefined {
      const i = lower.indexOf(name);
      return i === -1 ? undefined : lines[i]![1];
    },
  };
}

/** The 101 for the client: the upstream's headers minus hop-by-hop ones, with our own Connection/Upgrade. */
export function clientSwitchingHead(head: ResponseHead): string {
  let out = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  const { lines, lower } = head;
  for (let i = 0; i < lines.length; i++) {
    if (!HOP_BY_HOP.has(lower[i]!)) out += `${lines[i]![0]}: ${lines[i]![1]}\r\n`;
  }
  return out + '\r\n';
}

/** A non-101 answer passed on to the client as is, except that the connection closes after it. */
export function clientAnswerHead(head: ResponseHead): string {
  let out = `HTTP/1.1 ${head.status} ${head.reason}\r\n`;
  const { lines, lower } = head;
  for (let i = 0; i < lines.length; i++) {
    if (lower[i] !== 'connection' && lower[i] !== 'keep-alive') out += `${lines[i]![0]}: ${lines[i]![1]}\r\n`;
  }
  return out + 'Connection: close\r\n\r\n';
}
