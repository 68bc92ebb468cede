import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeProxyV2 } from '../upstream/proxy-header.js';
import { formatIpv6, parseProxyHeader, V2_MAX_PAYLOAD } from './proxy-protocol.js';

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
