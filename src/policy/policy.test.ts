import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../errors.js';
import { IpFilter } from './ip-filter.js';
import { LogThrottle } from './log-throttle.js';
import { OriginPolicy } from './origin-check.js';
import { PerIpLimiter } from './per-ip-limiter.js';
import { PerIpTable, limitKey } from './per-ip-table.js';
import { takeToken, type BucketState } from './token-bucket.js';

void describe('token bucket', () => {
  void test('a fresh bucket allows the burst, then refills lazily at the rate', () => {
    const b: BucketState = { tokens: 0, stamp: 0 };
    const t0 = 1_000_000;
    for (let i = 0; i < 4; i++) assert.equal(takeToken(b, t0, 2, 4), 0, `burst ${i}`);
    assert.equal(takeToken(b, t0, 2, 4), 500, 'one token every 500 ms at 2/s');
    assert.equal(takeToken(b, t0 + 250, 2, 4), 250);
    assert.equal(takeToken(b, t0 + 500, 2, 4), 0);
    // A long pause refills to the burst, never beyond.
    for (let i = 0; i < 4; i++) assert.equal(takeToken(b, t0 + 60_000, 2, 4), 0);
    assert.ok(takeToken(b, t0 + 60_000, 2, 4) > 0);
  });

  void test('rate 0 is unlimited; a clock going back refills nothing', () => {
    const b: BucketState = { tokens: 0, stamp: 0 };
    for (let i = 0; i < 1000; i++) assert.equal(takeToken(b, 5, 0, 1), 0);
    const c: BucketState = { tokens: 0, stamp: 0 };
    assert.equal(takeToken(c, 10_000, 1, 1), 0);
    assert.ok(takeToken(c, 9_000, 1, 1) > 0);
  });
});

void describe('per-IP table', () => {
  void test('bounded: a million distinct sources never hold more than maxEntries', () => {
    const table = new PerIpTable(1_000);
    for (let i = 0; i < 1_000_000; i++) table.entry(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(table.size, 1_000);
  });

  void test('least recently used goes first; entries holding connections are never evicted', () => {
    const table = new PerIpTable(3);
    const a = table.entry('a');
    a.conns = 1;
    table.entry('b');
    table.entry('c');
    table.entry('b'); // b is fresh again; c is now the oldest without connections
    table.entry('d');
    assert.equal(table.get('a'), a, 'a holds a connection');
    assert.equal(table.get('c'), undefined);
    assert.ok(table.get('b') && table.get('d'));
  });

  void test('touching the newest entry again keeps the order least recently used first, evictions and pinned entries included', () => {
    const table = new PerIpTable(3);
    const a = table.entry('a');
    for (let i = 0; i < 5; i++) assert.equal(table.entry('a'), a);
    a.conns = 1;
    table.entry('b');
    table.entry('c');
    table.entry('d'); // a is pinned: re-appended, then b (the oldest free) goes, and d is the newest
    assert.equal(table.get('b'), undefined);
    table.entry('c'); // c is older than a now: it moves behind it
    table.entry('e'); // d is the oldest free one
    assert.equal(table.get('d'), undefined);
    assert.ok(table.get('a') && table.get('c') && table.get('e'));
    a.conns = 0;
    table.entry('a'); // the newest is e, so a moves to the back
    table.entry('f'); // c is the oldest now
    assert.equal(table.get('c'), undefined);
    assert.ok(table.get('a') && table.get('e') && table.get('f'));
  });

  void test('a table full of pinned entries grows rather than losing a count', () => {
    const table = new PerIpTable(4);
    for (let i = 0; i < 40; i++) table.entry(`p${i}`).conns = 1;
    assert.equal(table.size, 40);
    for (let i = 0; i < 40; i++) assert.equal(table.get(`p${i}`)?.conns, 1);
  });

  void test('limit keys: IPv4 as is, IPv4-mapped unwrapped, IPv6 by /64', () => {
    assert.equal(limitKey('203.0.113.7'), '203.0.113.7');
    assert.equal(limitKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(limitKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(limitKey('2001:0db8:0001:0002:ffff::1'), '2001:db8:1:2::/64');
    assert.equal(limitKey('::1'), '0:0:0:0::/64');
    assert.equal(limitKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(limitKey('unknown'), 'unknown');
  });
});

void describe('per-IP limiter', () => {
  const limits = { maxConnections: 2, handshakeRate: { perSecond: 1 }, handshakeBurst: 3 };

  void test('rate first, then connections; release gives a slot back', () => {
    const limiter = new PerIpLimiter();
    const a = limiter.admit('', '192.0.2.1', limits, 1_000);
    const b = limiter.admit('', '192.0.2.1', limits, 1_000);
    assert.ok(!(a instanceof GatewayError) && !(b instanceof GatewayError));
    const c = limiter.admit('', '192.0.2.1', limits, 1_000);
    assert.ok(c instanceof GatewayError && c.code === 'PER_IP_CONNECTIONS');
    const d = limiter.admit('', '192.0.2.1', limits, 1_000);
    assert.ok(d instanceof GatewayError && d.code === 'PER_IP_RATE');
    assert.deepEqual(d.headers, ['Retry-After: 1']);
    limiter.release(a);
    const e = limiter.admit('', '192.0.2.1', limits, 2_000);
    assert.ok(!(e instanceof GatewayError));
  });

  void test('scopes are separate; one IPv6 /64 is one client', () => {
    const limiter = new PerIpLimiter();
    const one = { ...limits, maxConnections: 1 };
    assert.ok(!(limiter.admit('', '2001:db8::1', one, 0) instanceof GatewayError));
    assert.ok(limiter.admit('', '2001:db8::2', one, 0) instanceof GatewayError);
    assert.ok(!(limiter.admit('route-a', '2001:db8::2', one, 0) instanceof GatewayError));
  });

  void test('accept-time socket cap', () => {
    const limiter = new PerIpLimiter();
    const s1 = limiter.admitSocket('192.0.2.9', 2);
    const s2 = limiter.admitSocket('192.0.2.9', 2);
    assert.ok(s1 && s2);
    assert.equal(limiter.admitSocket('192.0.2.9', 2), undefined);
    limiter.release(s1);
    assert.ok(limiter.admitSocket('192.0.2.9', 2));
  });

  void test('a flood from spoofed sources stays within the bound', () => {
    const limiter = new PerIpLimiter(500);
    for (let i = 0; i < 100_000; i++) {
      const src = `198.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const e = limiter.admit('', src, limits, i);
      if (!(e instanceof GatewayError)) limiter.release(e);
      const s = limiter.admitSocket(src, 10);
      if (s) limiter.release(s);
    }
    assert.ok(limiter.size <= 1_000, `size ${limiter.size}`);
  });
});

void describe('IP filter', () => {
  void test('deny wins, a non-empty allow list admits only what it lists; IPv4 and IPv6', () => {
    const f = IpFilter.from(['10.0.0.0/8', '2001:db8::/32'], ['10.9.0.0/16', '2001:db8:bad::/48'])!;
    assert.equal(f.allows('10.1.2.3'), true);
    assert.equal(f.allows('::ffff:10.1.2.3'), true, 'IPv4-mapped is checked as IPv4');
    assert.equal(f.allows('10.9.1.1'), false);
    assert.equal(f.allows('192.0.2.1'), false);
    assert.equal(f.allows('2001:db8:1::1'), true);
    assert.equal(f.allows('2001:db8:bad::1'), false);
    assert.equal(f.allows('2001:db9::1'), false);
    assert.equal(f.allows('not an address'), false);
  });

  void test('deny only; nothing at all', () => {
    const f = IpFilter.from([], ['192.0.2.1'])!;
    assert.equal(f.allows('192.0.2.1'), false);
    assert.equal(f.allows('192.0.2.2'), true);
    assert.equal(f.allows('garbage'), true);
    assert.equal(IpFilter.from([], []), undefined);
  });
});

void describe('Origin policy', () => {
  const p = new OriginPolicy(['https://app.example.com', 'https://*.example.org', 'http://localhost:3000'], false);
  const cases: [string | undefined, boolean][] = [
    ['https://app.example.com', true],
    ['https://APP.example.com', true],
    ['https://app.example.com:443', true],
    ['https://app.example.com:8443', false],
    ['http://app.example.com', false],
    ['https://x.example.org', true],
    ['https://x.y.example.org', true],
    ['https://example.org', false],
    ['https://xexample.org', false],
    ['http://x.example.org', false],
    ['http://localhost:3000', true],
    ['http://localhost', false],
    ['null', false],
    ['https://app.example.com/path', false],
    ['not a url', false],
    [undefined, false],
    ['', false],
  ];
  for (const [origin, allowed] of cases) {
    void test(`${origin ?? '(none)'} → ${allowed}`, () => assert.equal(p.allows(origin), allowed));
  }

  void test('"*" takes any origin that is sent; missing follows allowMissing', () => {
    const any = new OriginPolicy(['*'], true);
    assert.equal(any.allows('https://anything.test'), true);
    assert.equal(any.allows('null'), false);
    assert.equal(any.allows(undefined), true);
  });
});

void describe('log throttle', () => {
  void test('at most N a second, and the next line counts what was dropped', () => {
    const t = new LogThrottle(3);
    assert.deepEqual([t.take(1000), t.take(1001), t.take(1002), t.take(1003), t.take(1004)], [0, 0, 0, -1, -1]);
    assert.equal(t.take(2001), 2);
    assert.equal(t.take(2002), 0);
  });

  void test('a window that dropped lines and had no line after it reports its count when it ends', async () => {
    const reported: number[] = [];
    const t = new LogThrottle(2, (n) => reported.push(n));
    const now = Date.now();
    assert.deepEqual([t.take(now), t.take(now), t.take(now), t.take(now), t.take(now)], [0, 0, -1, -1, -1]);
    await new Promise((r) => setTimeout(r, 1_300));
    assert.deepEqual(reported, [3]);
    // Already told: the next line carries nothing more.
    assert.equal(t.take(Date.now()), 0);
    t.close();
  });
});
