import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, isIP, SocketAddress, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeProxyV2 } from '../upstream/proxy-header.js';
import type { Peer } from './peer-address.js';
import { formatIpv6, parseProxyHeader, ProxyHeaderReader, V2_MAX_PAYLOAD, type ProxyParse } from './proxy-protocol.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16);
  SIG.copy(head);
  head[12] = 0x20 | command;
  head[13] = family;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

void describe('PROXY protocol v1', () => {
  const ok: [string, string | undefined, number][] = [
    ['PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n', '203.0.113.7', 51_000],
    ['PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n', '2001:db8::7', 51_000],
    ['PROXY UNKNOWN\r\n', undefined, 0],
    ['PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n', undefined, 0],
  ];
  for (const [line, address, port] of ok) {
    void test(`parses ${JSON.stringify(line)}`, () => {
      const buf = Buffer.from(`${line}GET / HTTP/1.1\r\n`);
      const parsed = parseProxyHeader(buf);
      assert.equal(parsed.status, 'done');
      if (parsed.status !== 'done') return;
      assert.equal(parsed.length, line.length);
      assert.deepEqual(parsed.source, address === undefined ? undefined : { address, port });
    });
  }

  void test('needs more bytes until the line ends, byte by byte', () => {
    const line = Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n');
    for (let n = 1; n < line.length; n++) assert.equal(parseProxyHeader(line.subarray(0, n)).status, 'more', `at ${n} bytes`);
    assert.equal(parseProxyHeader(line).status, 'done');
  });

  const bad: [string, RegExp][] = [
    ['GET / HTTP/1.1\r\n', /no PROXY protocol header/],
    ['POST / HTTP/1.1\r\n', /no PROXY protocol header/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /6 fields/],
    ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', /not TCP4, TCP6 or UNKNOWN/],
    ['PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n', /not TCP4 addresses/],
    ['PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n', /not TCP6 addresses/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', /ports/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 x 2\r\n', /ports/],
    [`PROXY TCP4 ${'1'.repeat(120)}`, /longer than 107/],
  ];
  for (const [text, reason] of bad) {
    void test(`refuses ${JSON.stringify(text.slice(0, 40))}`, () => {
      const parsed = parseProxyHeader(Buffer.from(text));
      assert.equal(parsed.status, 'invalid');
      if (parsed.status === 'invalid') assert.match(parsed.reason, reason);
    });
  }
});

void describe('PROXY protocol v2', () => {
  void test('TCP4 with TLVs behind the addresses', () => {
    const body = Buffer.alloc(12 + 7);
    Buffer.from([198, 51, 100, 9, 10, 0, 0, 1]).copy(body, 0);
    body.writeUInt16BE(40_000, 8);
    body.writeUInt16BE(443, 10);
    Buffer.from([0x04, 0x00, 0x04, 1, 2, 3, 4]).copy(body, 12); // a NOOP TLV
    const header = v2(1, 0x11, body);
    const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from('GET')]));
    assert.deepEqual(parsed, { status: 'done', source: { address: '198.51.100.9', port: 40_000 }, length: header.length });
  });

  void test('TCP6, and IPv4-mapped IPv6 in the form Node reports', () => {
    const body = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(body, 0);
    body.writeUInt16BE(5, 32);
    const parsed = parseProxyHeader(v2(1, 0x21, body));
    assert.deepEqual(parsed.status === 'done' && parsed.source, { address: '2001:db8::7', port: 5 });
    assert.equal(formatIpv6(Buffer.from('00000000000000000000ffffc0000201', 'hex')), '::ffff:192.0.2.1');
    assert.equal(formatIpv6(Buffer.from('00000000000000000000000000000001', 'hex')), '::1');
    assert.equal(formatIpv6(Buffer.from('20010db8000000010000000000000000', 'hex')), '2001:db8:0:1::');
    assert.equal(formatIpv6(Buffer.from('20010db8000100000001000000000001', 'hex')), '2001:db8:1:0:1::1');
  });

  void test('LOCAL and UNSPEC keep the connection address', () => {
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0))), { status: 'done', source: undefined, length: 16 });
    assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(4))), { status: 'done', source: undefined, length: 20 });
  });

  void test('needs more bytes until the whole block is there', () => {
    const header = v2(1, 0x11, Buffer.alloc(12));
    for (let n = 1; n < header.length; n++) assert.equal(parseProxyHeader(header.subarray(0, n)).status, 'more', `at ${n} bytes`);
  });

  const bad: [string, Buffer, RegExp][] = [
    ['a broken signature', Buffer.concat([SIG.subarray(0, 11), Buffer.from([0x0b, 0x21, 0x11, 0, 0])]), /no PROXY protocol header/],
    [
      'version 3',
      (() => {
        const b = v2(1, 0x11, Buffer.alloc(12));
        b[12] = 0x31;
        return b;
      })(),
      /version 3/,
    ],
    ['command 2', v2(2, 0x11, Buffer.alloc(12)), /command 2/],
    ['a short IPv4 block', v2(1, 0x11, Buffer.alloc(8)), /short/],
    ['a short IPv6 block', v2(1, 0x21, Buffer.alloc(20)), /short/],
    ['an unknown family', v2(1, 0x41, Buffer.alloc(12)), /family 4/],
    [
      'an oversized header',
      (() => {
        const b = v2(1, 0x11, Buffer.alloc(12));
        b.writeUInt16BE(V2_MAX_PAYLOAD + 1, 14);
        return b;
      })(),
      /over 4096/,
    ],
  ];
  for (const [name, buf, reason] of bad) {
    void test(`refuses ${name}`, () => {
      const parsed = parseProxyHeader(buf);
      assert.equal(parsed.status, 'invalid');
      if (parsed.status === 'invalid') assert.match(parsed.reason, reason);
    });
  }
});

void describe('PROXY v2 encoding (to upstreams)', () => {
  const cases: [string, string, string, string | undefined][] = [
    ['IPv4', '203.0.113.7', '10.0.0.1', '203.0.113.7'],
    ['IPv6', '2001:db8::7', '2001:db8::1', '2001:db8::7'],
    ['IPv4-mapped client on an IPv4 socket', '::ffff:203.0.113.7', '127.0.0.1', '203.0.113.7'],
    ['an IPv4 client on an IPv6 socket', '203.0.113.7', '::1', '::ffff:203.0.113.7'],
    ['a client that is not an address', 'unknown', '127.0.0.1', undefined],
  ];
  for (const [name, client, local, expected] of cases) {
    void test(`round-trips ${name}`, () => {
      const header = encodeProxyV2({ address: client, port: 4242 }, { address: local, port: 8080 });
      const parsed = parseProxyHeader(header);
      assert.equal(parsed.status, 'done');
      if (parsed.status !== 'done') return;
      assert.equal(parsed.length, header.length);
      assert.deepEqual(parsed.source, expected === undefined ? undefined : { address: expected, port: 4242 });
    });
  }
});

// --- fuzzing --------------------------------------------------------------------

/** A generated header, what the parser must make of it, and bytes that follow it. */
interface Case {
  readonly header: Buffer;
  /** The source it names; undefined: keep the connection's own address. */
  readonly source: Peer | undefined;
}

const port = fc.integer({ min: 0, max: 65_535 });
const ipv6Bytes = fc.array(fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }).map((groups) => {
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
});

const v1Case: fc.Arbitrary<Case> = fc.oneof(
  fc
    .tuple(fc.ipV4(), fc.ipV4(), port, port)
    .map(([s, d, sp, dp]) => ({ header: Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`), source: { address: s, port: sp } })),
  fc
    .tuple(fc.ipV6(), fc.ipV6(), port, port)
    .map(([s, d, sp, dp]) => ({ header: Buffer.from(`PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`), source: { address: s, port: sp } })),
  // UNKNOWN: the rest of the line is ignored, whatever it holds (but a line ending).
  fc
    .string({ unit: fc.constantFrom(...' 0123456789abcdef:.ABCDEF'.split('')), maxLength: 80 })
    .map((junk) => ({ header: Buffer.from(`PROXY UNKNOWN${junk === '' ? '' : ` ${junk}`}\r\n`), source: undefined })),
);

const tlv = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 })).map(([type, value]) => {
  const b = Buffer.alloc(3 + value.length);
  b[0] = type;
  b.writeUInt16BE(value.length, 1);
  b.set(value, 3);
  return b;
});

const v2Case: fc.Arbitrary<Case> = fc
  .record({
    command: fc.constantFrom(0, 1),
    family: fc.constantFrom(0, 1, 2, 3),
    transport: fc.constantFrom(0, 1, 2),
    v4: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    v6: ipv6Bytes,
    ports: fc.tuple(port, port),
    unixPaths: fc.uint8Array({ minLength: 216, maxLength: 216 }),
    tlvs: fc.array(tlv, { maxLength: 6 }),
  })
  .map(({ command, family, transport, v4, v6, ports, unixPaths, tlvs }) => {
    let block = Buffer.alloc(0);
    let source: Peer | undefined;
    if (family === 1) {
      block = Buffer.alloc(12);
      block.set(v4, 0);
      block.writeUInt16BE(ports[0], 8);
      block.writeUInt16BE(ports[1], 10);
      source = { address: [...v4.subarray(0, 4)].join('.'), port: ports[0] };
    } else if (family === 2) {
      block = Buffer.alloc(36);
      v6.copy(block, 0);
      block.writeUInt16BE(ports[0], 32);
      block.writeUInt16BE(ports[1], 34);
      source = { address: fullIpv6(v6), port: ports[0] };
    } else if (family === 3) {
      block = Buffer.from(unixPaths);
    }
    const header = Buffer.concat([SIG, Buffer.from([0x20 | command, (family << 4) | transport, 0, 0]), block, ...tlvs]);
    header.writeUInt16BE(header.length - 16, 14);
    return { header, source: command === 1 ? source : undefined };
  });

const validCase = fc.oneof(v1Case, v2Case);

/** Uncompressed IPv6 text; the parser's compressed form is compared after normalising both. */
function fullIpv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

function sameAddress(got: string, expected: string): boolean {
  if (isIP(expected) === 4) return got === expected;
  return isIP(got) === 6 && new SocketAddress({ address: got, family: 'ipv6' }).address === new SocketAddress({ address: expected, family: 'ipv6' }).address;
}

function assertSource(got: Peer | undefined, expected: Peer | undefined): void {
  if (expected === undefined) return assert.equal(got, undefined);
  assert.ok(got !== undefined, 'a source');
  assert.equal(got.port, expected.port);
  assert.ok(sameAddress(got.address, expected.address), `${got.address} is ${expected.address}`);
}

/** Damage done to a valid header: every way a sender (or an attacker) gets one wrong. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    kind: fc.constant('length' as const),
    value: fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0, 11, 12, 35, 36, 4096, 4097, 0xffff)),
  }),
  fc.record({ kind: fc.constant('pad' as const), n: fc.integer({ min: 1, max: 200 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(header: Buffer, m: Mutation): Buffer {
  const b = Buffer.from(header);
  switch (m.kind) {
    case 'flip':
      b[m.at % b.length] = m.byte;
      return b;
    case 'truncate':
      return b.subarray(0, m.at % b.length);
    case 'insert': {
      const at = m.at % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    }
    case 'delete': {
      const at = m.at % b.length;
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
    }
    case 'length':
      if (b[0] === 0x0d && b.length >= 16) b.writeUInt16BE(m.value, 14);
      return b;
    case 'pad':
      // An over-long v1 line, or a v2 header whose length field does not cover the padding.
      if (b[0] === 0x50) return Buffer.concat([b.subarray(0, b.length - 2), Buffer.alloc(m.n, 0x20), b.subarray(b.length - 2)]);
      return Buffer.concat([b, Buffer.alloc(m.n)]);
  }
}

const V1_MAX = 107;
const MAX_HEADER = 16 + V2_MAX_PAYLOAD;

/**
 * What must hold for any input: no throw; 'done' names a length within the
 * input and the format's bounds; 'invalid' says why; 'more' only while the
 * input is shorter than the longest header. And every prefix agrees with the
 * whole: once a prefix decides, longer inputs decide the same, which is what
 * makes the answer independent of how the bytes were chunked.
 */
function checkParse(input: Buffer): ProxyParse {
  let decided: ProxyParse | undefined;
  let decidedAt = 0;
  for (let n = 0; n <= input.length; n++) {
    const r = parseProxyHeader(input.subarray(0, n));
    if (r.status === 'more') {
      assert.equal(decided, undefined, `decided at ${decidedAt} bytes, 'more' at ${n}`);
      assert.ok(n < MAX_HEADER, `'more' at ${n} bytes`);
      continue;
    }
    if (r.status === 'done') {
      assert.ok(r.length <= n && r.length >= 15, `length ${r.length} of ${n}`);
      assert.ok(input[0] === 0x50 ? r.length <= V1_MAX : r.length <= MAX_HEADER);
    } else {
      assert.match(r.reason, /^(no PROXY protocol header|v1 |v2 )/);
      assert.ok(r.reason.length < 120);
    }
    if (decided === undefined) {
      decided = r;
      decidedAt = n;
    } else {
      assert.deepEqual(r, decided, `at ${n} bytes vs ${decidedAt}`);
    }
  }
  return decided ?? { status: 'more' };
}

void describe('PROXY protocol fuzz: the parser', () => {
  void test('every valid header of every family parses to its source, whatever follows it', () => {
    fc.assert(
      fc.property(validCase, fc.uint8Array({ maxLength: 64 }), ({ header, source }, after) => {
        const r = checkParse(Buffer.concat([header, after]));
        assert.equal(r.status, 'done');
        if (r.status !== 'done') return;
        assert.equal(r.length, header.length);
        assertSource(r.source, source);
      }),
      { numRuns: 400 },
    );
  });

  void test('a mutated header gets an answer or waits, never throws, and chunking cannot change the answer', () => {
    fc.assert(
      fc.property(validCase, fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.uint8Array({ maxLength: 32 }), ({ header }, ms, after) => {
        let b = header;
        for (const m of ms) b = b.length === 0 ? b : mutate(b, m);
        checkParse(Buffer.concat([b, after]));
      }),
      { numRuns: 400 },
    );
  });

  void test('random bytes, and random bytes behind each signature', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY '), SIG, Buffer.concat([SIG, Buffer.from([0x21])])),
        fc.uint8Array({ maxLength: 300 }),
        (prefix, rest) => {
          checkParse(Buffer.concat([prefix, rest]));
        },
      ),
      { numRuns: 400 },
    );
  });

  const edges: [string, Buffer, RegExp | 'more'][] = [
    ['a bare LF ending a v1 line', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET / HTTP/1.1\r\n'), /CRLF/],
    ['a CR not followed by LF', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), /CRLF/],
    ['a v1 line cut at its CR', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r'), 'more'],
    ['an IPv6 zone in a v1 address', Buffer.from('PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n'), /not TCP6 addresses/],
    ['a v1 line of exactly 108 bytes', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`), /longer than 107/],
    ['a v2 transport of 3', v2(1, 0x13, Buffer.alloc(12)), /transport 3/],
    ['a v2 header of 4096 + 1 bytes announced before it arrives', v2(1, 0x11, Buffer.alloc(0)).fill(0xff, 14, 16), /over 4096/],
  ];
  for (const [name, buf, expected] of edges) {
    void test(`refuses ${name}`, () => {
      const r = checkParse(buf);
      if (expected === 'more') return assert.equal(r.status, 'more');
      assert.equal(r.status, 'invalid');
      if (r.status === 'invalid') assert.match(r.reason, expected);
    });
  }

  void test('a v1 line of exactly 107 bytes is taken', () => {
    const line = `PROXY UNKNOWN ${'x'.repeat(91)}\r\n`;
    assert.equal(line.length, 107);
    assert.deepEqual(parseProxyHeader(Buffer.from(line)), { status: 'done', source: undefined, length: 107 });
  });
});

// --- the reader, on real connections ----------------------------------------------

interface ReaderOutcome {
  readonly err: string | undefined;
  readonly source: Peer | undefined;
  /** `rest` and everything the socket delivered after the callback, until the client's end. */
  readonly after: Buffer;
}

/** A server whose every connection gets a ProxyHeaderReader, as a PROXY listener's do. */
async function readerServer(timeout: number): Promise<{ port: number; next(): Promise<ReaderOutcome>; close(): Promise<void> }> {
  const outcomes: ReaderOutcome[] = [];
  const waiting: ((o: ReaderOutcome) => void)[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    new ProxyHeaderReader(socket, timeout, (err, source, rest) => {
      const chunks: Buffer[] = rest === undefined ? [] : [rest];
      const deliver = (): void => {
        const o = { err, source, after: Buffer.concat(chunks) };
        const w = waiting.shift();
        if (w !== undefined) w(o);
        else outcomes.push(o);
      };
      if (err !== undefined) {
        socket.destroy();
        return deliver();
      }
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => {
        socket.end();
        deliver();
      });
      socket.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    next: () => new Promise((resolve) => (outcomes.length > 0 ? resolve(outcomes.shift()!) : waiting.push(resolve))),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Writes `data` in the given pieces, a turn of the event loop apart, then ends (unless told not to). */
async function sendInPieces(port: number, data: Buffer, cuts: readonly number[], end = true): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {});
  await once(socket, 'connect');
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    if (cut <= at) continue;
    socket.write(data.subarray(at, cut));
    at = cut;
    await new Promise((r) => setTimeout(r, 1));
  }
  if (end) socket.end();
  return socket;
}

function cutsOf(length: number, seeds: readonly number[]): number[] {
  return [...new Set(seeds.map((s) => s % (length + 1)))].sort((a, b) => a - b);
}

void describe('PROXY protocol fuzz: the reader on a connection', () => {
  let srv: Awaited<ReturnType<typeof readerServer>>;
  before(async () => {
    srv = await readerServer(5_000);
  });
  after(() => srv.close());

  void test('a valid header in any chunking: its source, and every byte behind it handed on intact', async () => {
    await fc.assert(
      fc.asyncProperty(validCase, fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 6 }), async ({ header, source }, body, seeds) => {
        const data = Buffer.concat([header, body]);
        const socket = await sendInPieces(srv.port, data, cutsOf(data.length, seeds));
        const o = await srv.next();
        socket.destroy();
        assert.equal(o.err, undefined);
        assertSource(o.source, source);
        assert.ok(o.after.equals(body), `${o.after.length} bytes handed on, ${body.length} sent`);
      }),
      { numRuns: 60 },
    );
  });

  void test('a damaged header in any chunking: the parser’s verdict, or a clear error when the client ends first', async () => {
    await fc.assert(
      fc.asyncProperty(validCase, fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 6 }), async ({ header }, ms, seeds) => {
        let data = header;
        for (const m of ms) data = data.length === 0 ? data : mutate(data, m);
        const verdict = parseProxyHeader(data);
        const socket = await sendInPieces(srv.port, data, cutsOf(data.length, seeds));
        const o = await srv.next();
        socket.destroy();
        if (verdict.status === 'invalid') assert.equal(o.err, verdict.reason);
        else if (verdict.status === 'more') assert.equal(o.err, 'closed before the PROXY header was complete');
        else {
          assert.equal(o.err, undefined);
          assert.ok(o.after.equals(data.subarray(verdict.length)));
        }
      }),
      { numRuns: 60 },
    );
  });
});

void describe('PROXY protocol reader deadline', () => {
  void test('an incomplete header waits for the timeout, not forever; a header dripped byte by byte does not extend it', async () => {
    const srv = await readerServer(400);
    try {
      const silent = await sendInPieces(srv.port, Buffer.from('PROXY TCP4 1.2'), [], false);
      const o = await srv.next();
      silent.destroy();
      assert.equal(o.err, 'no complete PROXY header in time');

      // 120 bytes, one every 50 ms: 6 s if each byte re-armed an idle timer, and the header would complete.
      const header = Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0, 104]), Buffer.alloc(104)]);
      const socket = connect(srv.port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      let sent = 0;
      let stop = false;
      const outcome = srv.next().finally(() => (stop = true));
      while (!stop && sent < header.length) {
        socket.write(header.subarray(sent, sent + 1));
        sent++;
        await new Promise((r) => setTimeout(r, 50));
      }
      const d = await outcome;
      socket.destroy();
      assert.equal(d.err, 'no complete PROXY header in time');
      assert.ok(sent < header.length, `the whole header (${sent} bytes) went out before the deadline struck`);
    } finally {
      await srv.close();
    }
  });
});
