import { HOP_BY_HOP } from '../http/hop-by-hop.js';
import { FieldNames, TCHAR, UPPER } from '../http/field-names.js';

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

const names = new FieldNames();

class ParsedHead implements ResponseHead {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly lines: (readonly [string, string])[],
    readonly lower: string[],
  ) {}

  get(name: string): string | undefined {
    const i = this.lower.indexOf(name);
    return i === -1 ? undefined : this.lines[i]![1];
  }
}

/**
 * Parses a response head (status line and header lines, without the blank
 * line); undefined when malformed. Lines end at CRLF; a field line is a
 * token, a colon and a value trimmed of whitespace (String.trim()). Scanned
 * by hand, not split and matched line by line: a handshake's share of the
 * gateway's time.
 */
export function parseResponseHead(text: string): ResponseHead | undefined {
  const len = text.length;
  let eol = text.indexOf('\r\n');
  if (eol === -1) eol = len;
  const m = STATUS_LINE.exec(eol === len ? text : text.slice(0, eol));
  if (m === null) return undefined;
  const lines: (readonly [string, string])[] = [];
  const lower: string[] = [];
  let start = eol + 2;
  while (eol < len) {
    eol = text.indexOf('\r\n', start);
    if (eol === -1) eol = len;
    let upper = false;
    let at = start;
    for (; at < eol; at++) {
      const c = text.charCodeAt(at);
      const kind = c < 0x80 ? TCHAR[c]! : 0;
      if (kind === 0) break;
      if ((kind & UPPER) !== 0) upper = true;
    }
    // The name: at least one token character, then the colon.
    if (at === start || at === eol || text.charCodeAt(at) !== 0x3a) return undefined;
    const name = text.slice(start, at);
    lines.push([name, text.slice(at + 1, eol).trim()]);
    lower.push(names.lower(name, upper, lower.length));
    start = eol + 2;
  }
  return new ParsedHead(Number(m[1]), m[2] ?? '', lines, lower);
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
