import fc from 'fast-check';

/**
 * Request heads for differential fuzzing: mostly well-formed WebSocket
 * upgrades (so the fast parser accepts often and every part of it is
 * exercised), each with a few of the classic smuggling and parsing traps
 * spliced in, then a few random byte edits. Strings are latin1: one
 * character per byte.
 */

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/** Bytes that matter to HTTP/1.1 parsers: separators, whitespace, controls, DEL, obs-text. */
const TRICKY = [
  ' ',
  '\t',
  '\r',
  '\n',
  '\0',
  '\x01',
  '\x0b',
  '\x0c',
  '\x1f',
  '\x7f',
  '\x80',
  '\xa0',
  '\xff',
  ':',
  ',',
  ';',
  '"',
  '(',
  '=',
  '/',
  '?',
  '#',
  '@',
  '\\',
];

const pick = <T>(...values: T[]): fc.Arbitrary<T> => fc.constantFrom(...values);
const chars = (alphabet: readonly string[], maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...alphabet), { maxLength }).map((a) => a.join(''));
const often = <T>(usual: T, unusual: fc.Arbitrary<T>, weight = 6): fc.Arbitrary<T> =>
  fc.oneof({ weight, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: unusual });

const token = chars([...TCHARS], 12).filter((t) => t.length > 0);
const anyValueChar = [...TCHARS, ' ', ...TRICKY];
const value = fc.oneof(
  { weight: 4, arbitrary: chars([...TCHARS, ' ', '/', '=', ';', ','], 24) },
  { weight: 2, arbitrary: chars(anyValueChar, 16) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b).repeat(3)) },
);

/** Sometimes upper, lower or mixed case. */
const cased = (name: string): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constant(name) },
    { weight: 1, arbitrary: fc.constant(name.toLowerCase()) },
    { weight: 1, arbitrary: fc.constant(name.toUpperCase()) },
    {
      weight: 1,
      arbitrary: fc
        .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
        .map((up) => [...name].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join('')),
    },
  );

const connectionValue = fc.oneof(
  { weight: 6, arbitrary: pick('Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, keep-alive', 'UPGRADE') },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.array(pick('upgrade', 'Upgrade', 'keep-alive', 'close', 'te', 'x', 'upgradex', 'xupgrade', 'up grade'), { minLength: 1, maxLength: 3 }),
        fc.array(pick(',', ', ', ' ,', ' , ', ',\t', '\t,', ',,', ',  ', ';'), { minLength: 2, maxLength: 2 }),
        pick('', ' ', '\t', '\xa0', '\x0b', ','),
      )
      .map(([tokens, seps, tail]) => tokens.map((t, i) => (i === 0 ? t : seps[i % 2] + t)).join('') + tail),
  },
  { weight: 1, arbitrary: value },
);

const upgradeValue = fc.oneof(
  { weight: 6, arbitrary: pick('websocket', 'WebSocket', 'websocket, h2c', 'h2c, websocket', 'h2c') },
  { weight: 1, arbitrary: pick('', ' ', 'websocket\t', 'websocket\xa0', 'web socket', 'websocket/13') },
  { weight: 1, arbitrary: value },
);

const lengthValue = pick('0', '5', '00', '-1', '+5', ' 5', '5 ', '5, 5', '0x5', '18446744073709551616', '1\t', '');
const teValue = pick('chunked', 'Chunked', 'chunked, identity', 'identity, chunked', 'xchunked', 'chunked\t', ' chunked', 'gzip', '');

/** One field line, before its line end. */
const interesting: fc.Arbitrary<[string, fc.Arbitrary<string>]> = pick(
  ['Host', pick('example.com', 'other.example', '', 'example.com:8080', 'a b', '[::1]:80', 'example.com\t')],
  ['Content-Length', lengthValue],
  ['Transfer-Encoding', teValue],
  ['Upgrade', upgradeValue],
  ['Connection', connectionValue],
  ['Sec-WebSocket-Key', pick('dGhlIHNhbXBsZSBub25jZQ==', 'AAAAAAAAAAAAAAAAAAAAAA==', 'short')],
  ['Sec-WebSocket-Version', pick('13', '8', '13, 13', '')],
  ['Authorization', pick('Bearer a.b.c', 'Basic Zm9vOmJhcg==', '')],
  ['Cookie', pick('a=1', 'b=2; c=3')],
  ['Set-Cookie', pick('s=1')],
  ['Expect', pick('100-continue')],
  ['User-Agent', value],
  ['X-Forwarded-For', pick('1.2.3.4', '1.2.3.4, 5.6.7.8')],
);

const name = fc.oneof(
  { weight: 8, arbitrary: interesting.chain(([n, v]) => fc.tuple(cased(n), v)) },
  { weight: 3, arbitrary: fc.tuple(token, value) },
  { weight: 1, arbitrary: fc.tuple(pick('', ' Host', 'Host ', 'Ho st', 'H\xf6st', 'X\0', 'X\x7f', 'X\t', '"x"', 'X:Y', 'X\r'), value) },
);

const separator = often(': ', pick(':', ':  ', ':\t', ' :', '\t:', ': \t', '::', ' : '));
const lineEnd = often('\r\n', pick('\n', '\r', '\r\r\n', '\n\r', '\r\n ', '\r\n\t'), 12);
const trailing = often('', pick(' ', '\t', '  ', ' \t', '\xa0', '\0'), 8);

const field = fc.tuple(name, separator, trailing, lineEnd).map(([[n, v], sep, trail, eol]) => `${n}${sep}${v}${trail}${eol}`);
const fold = fc.tuple(pick(' ', '\t'), value, lineEnd).map(([ws, v, eol]) => `${ws}${v}${eol}`);
const longLine = fc.integer({ min: 1_000, max: 20_000 }).map((n) => `X-Long: ${'a'.repeat(n)}\r\n`);

const method = often(
  'GET',
  pick('get', 'Get', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'CONNECT', 'PRI', 'DELETE', 'GETX', 'G', 'ACL', 'M-SEARCH', 'SOURCE', 'QUERY', ''),
  10,
);
const target = often(
  '/',
  fc.oneof(
    chars([...TCHARS, '/', '?', '=', '&', '%', '#', ':', '@', '[', ']'], 20).map((t) => `/${t}`),
    pick(
      '/chat?room=1',
      'http://example.com/',
      'https://example.com:443/x',
      'ws://example.com/',
      'example.com:443',
      '*',
      '//x',
      '/%00',
      '/a b',
      '/\x7f',
      '/\xe9',
      '/\t',
      '',
      '/?q=\x01',
      '/#frag',
      '/\\',
    ),
  ),
  3,
);
const version = often(
  'HTTP/1.1',
  pick(
    'HTTP/1.0',
    'HTTP/2.0',
    'HTTP/2',
    'HTTP/1.2',
    'HTTP/0.9',
    'http/1.1',
    'HTTP/1.10',
    'HTTP/11',
    'HTTP/1.1 ',
    'HTTP /1.1',
    'HTTP/1.1\t',
    'HTTP/9.9',
    'HTTP/1.01',
    'HTTP/1.',
  ),
  10,
);
const space = often(' ', pick('  ', '\t', ''), 12);

const BASE: readonly string[] = [
  'Host: example.com',
  'Upgrade: websocket',
  'Connection: Upgrade',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version: 13',
];

/** The field lines: the usual handshake fields (some dropped), extra ones spliced in among them. */
const fields = fc
  .tuple(
    fc.subarray([...BASE], { minLength: 2 }),
    fc.array(fc.oneof({ weight: 10, arbitrary: field }, { weight: 1, arbitrary: fold }, { weight: 1, arbitrary: longLine }), { maxLength: 4 }),
    fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
  )
  .map(([base, extra, at]) => {
    const lines = base.map((l) => l + '\r\n');
    extra.forEach((line, i) => lines.splice(at[i]! % (lines.length + 1), 0, line));
    return lines.join('');
  });

/** A byte edit anywhere in the head: insert, replace or delete. */
const edit = fc.record({
  at: fc.nat(),
  op: pick('insert', 'replace', 'delete'),
  byte: fc.oneof(
    pick(...TRICKY),
    fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b)),
  ),
});

function applyEdits(head: string, edits: readonly { at: number; op: string; byte: string }[]): string {
  let s = head;
  for (const { at, op, byte } of edits) {
    const i = at % (s.length + 1);
    if (op === 'insert') s = s.slice(0, i) + byte + s.slice(i);
    else if (op === 'replace') s = s.slice(0, i) + byte + s.slice(i + 1);
    else s = s.slice(0, i) + s.slice(i + 1);
  }
  return s;
}

const WHOLE = [
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n',
  'GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n\n',
  'GET /\r\n\r\n',
];

/** The bytes a client sends first: a head, the blank line, and sometimes more behind it. */
export const requestBytes: fc.Arbitrary<Buffer> = fc
  .oneof(
    {
      weight: 40,
      arbitrary: fc
        .tuple(
          method,
          space,
          target,
          space,
          version,
          lineEnd,
          fields,
          fc.array(edit, { maxLength: 3 }),
          fc.nat(3),
          pick('', 'REST', '\r\n', 'GET / HTTP/1.1\r\n\r\n'),
        )
        .map(([m, sp1, t, sp2, v, eol, f, edits, editChance, tail]) => {
          const head = `${m}${sp1}${t}${sp2}${v}${eol}${f}`;
          return (editChance === 0 ? applyEdits(head, edits) : head) + '\r\n' + tail;
        }),
    },
    { weight: 1, arbitrary: pick(...WHOLE) },
  )
  .map((s) => Buffer.from(s, 'latin1'));
