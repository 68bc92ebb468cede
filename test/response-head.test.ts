import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseResponseHead, type ResponseHead } from '../src/upstream/response-head.js';

// The upstream's response head is scanned by hand (src/upstream/response-head.ts).
// Its specification is the line-by-line parser it replaced, kept here: split at
// CRLF, the status line matched, each field line a token, a colon and a trimmed
// value. Both must read every head alike, and refuse the same ones.

function reference(text: string): { status: number; reason: string; lines: [string, string][]; lower: string[] } | undefined {
  const rows = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(rows[0] ?? '');
  if (m === null) return undefined;
  const lines: [string, string][] = [];
  const lower: string[] = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i]!;
    const colon = row.indexOf(':');
    if (colon <= 0) return undefined;
    const name = row.slice(0, colon);
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) return undefined;
    lines.push([name, row.slice(colon + 1).trim()]);
    lower.push(name.toLowerCase());
  }
  return { status: Number(m[1]), reason: m[2] ?? '', lines, lower };
}

function agree(text: string): void {
  const want = reference(text);
  const got: ResponseHead | undefined = parseResponseHead(text);
  const shown = JSON.stringify(text);
  if (want === undefined) {
    assert.equal(got, undefined, `accepted ${shown}`);
    return;
  }
  assert.ok(got !== undefined, `refused ${shown}`);
  assert.deepEqual({ status: got.status, reason: got.reason, lines: got.lines, lower: got.lower }, want, shown);
  for (const name of [...want.lower, 'upgrade', 'x-absent']) {
    const i = want.lower.indexOf(name);
    assert.equal(got.get(name), i === -1 ? undefined : want.lines[i]![1], `${shown}: get(${name})`);
  }
}

// Pieces a head is made of, the awkward ones included: bare CR and LF, tabs,
// NBSP and other whitespace String.trim() strips, separators, non-ASCII.
const piece = fc.constantFrom(
  'HTTP/1.1 101 Switching Protocols',
  'HTTP/1.1 403 Forbidden',
  'HTTP/1.0 200',
  'HTTP/1.1 101 ',
  'HTTP/2 101',
  '\r\n',
  '\r',
  '\n',
  ':',
  ' ',
  '\t',
  '\xa0',
  '\v',
  'Upgrade',
  'UPGRADE',
  'upgrade',
  'Sec-WebSocket-Accept',
  'websocket',
  'x',
  'X-Y_z~1',
  "!#$%&'*+-.^_`|~",
  '(',
  '"',
  '@',
  '\u00e9',
  '\u0100',
  '\x7f',
  '\x00',
);
const head = fc.oneof(
  fc.array(piece, { maxLength: 24 }).map((p) => p.join('')),
  fc
    .tuple(
      fc.constantFrom('HTTP/1.1 101 Switching Protocols', 'HTTP/1.1 401 No'),
      fc.array(fc.tuple(fc.array(piece, { maxLength: 4 }), fc.array(piece, { maxLength: 5 })), { maxLength: 6 }),
    )
    .map(([status, fields]) => [status, ...fields.map(([n, v]) => `${n.join('')}:${v.join('')}`)].join('\r\n')),
);

void describe('parseResponseHead', () => {
  void it('reads every head as the line-by-line parser does (generated heads)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(head, (text) => {
        agree(text);
        if (reference(text) !== undefined) accepted++;
      }),
      { numRuns: 30_000 },
    );
    // The generator reaches both verdicts.
    assert.ok(accepted >= 1000, `only ${accepted} heads were accepted`);
  });

  void it('reads the heads upstreams send, and refuses broken ones', () => {
    const ok = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
    const h = parseResponseHead(ok)!;
    assert.equal(h.status, 101);
    assert.equal(h.reason, 'Switching Protocols');
    assert.equal(h.get('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.deepEqual(h.lower, ['upgrade', 'connection', 'sec-websocket-accept']);
    for (const text of [
      ok,
      'HTTP/1.1 101',
      'HTTP/1.1 101 OK\r\n',
      'HTTP/1.1 101 OK\r\n\r\nUpgrade: websocket',
      'HTTP/1.1 101 OK\r\n: no name',
      'HTTP/1.1 101 OK\r\nBad Name: x',
      'HTTP/1.1 101 OK\r\nNo-Colon',
      'HTTP/1.1 101 OK\r\nX:\t padded \xa0',
      'HTTP/1.1 101 OK\r\nX: a\nb',
      'HTTP/1.1 101 O\rK',
      'HTTP/1.1 1010',
      '',
    ]) {
      agree(text);
    }
  });
});
