import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isRequestId, parseTraceparent, randomHex, readTrace, traceOf } from './trace-context.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

void describe('parseTraceparent', () => {
  void it('reads a version-00 value', () => {
    assert.equal(parseTraceparent(VALID), TRACE);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-00`), TRACE);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-ff`), TRACE);
  });

  const invalid: [string, string][] = [
    ['empty', ''],
    ['too short', VALID.slice(0, 54)],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['uppercase version', `0A-${TRACE}-${PARENT}-01`],
    ['version not hex', `0g-${TRACE}-${PARENT}-01`],
    ['version of one digit', `0-${TRACE}-${PARENT}-01-`],
    ['version 00 with more fields', `${VALID}-what-the-future-will-be-like`],
    ['version 00, one character more', `${VALID}0`],
    ['uppercase trace id', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['uppercase parent id', `00-${TRACE}-00F067AA0BA902B7-01`],
    ['uppercase flags', `00-${TRACE}-${PARENT}-0A`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['trace id too short', `00-${TRACE.slice(1)}-${PARENT}-01x`],
    ['no dash after the trace id', `00-${TRACE}_${PARENT}-01`],
    ['no dash after the parent id', `00-${TRACE}-${PARENT}_01`],
    ['flags not hex', `00-${TRACE}-${PARENT}-0x`],
    ['two headers combined', `${VALID}, ${VALID}`],
    ['a space inside', `00-${TRACE.slice(0, 31)} -${PARENT}-01`],
    ['higher version followed by something not a dash', `cc-${TRACE}-${PARENT}-01.what-the-future-will-be-like`],
    ['higher version, too short', `cc-${TRACE}-${PARENT}-1`],
  ];
  for (const [name, value] of invalid) {
    void it(`refuses: ${name}`, () => assert.equal(parseTraceparent(value), undefined));
  }

  void it('reads a higher version by its prefix (forward compatibility)', () => {
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-01`), TRACE);
    assert.equal(parseTraceparent(`01-${TRACE}-${PARENT}-01-what-the-future-will-be-like`), TRACE);
  });
});

void describe('isRequestId', () => {
  void it('keeps 1 to 200 visible ASCII characters', () => {
    assert.ok(isRequestId('abc-123'));
    assert.ok(isRequestId('f47ac10b-58cc-4372-a567-0e02b2c3d479'));
    assert.ok(isRequestId('x'.repeat(200)));
    assert.ok(isRequestId('!~'));
  });
  void it('refuses the rest', () => {
    assert.ok(!isRequestId(''));
    assert.ok(!isRequestId('x'.repeat(201)));
    assert.ok(!isRequestId('a b'));
    assert.ok(!isRequestId('a\tb'));
    assert.ok(!isRequestId('a\x7fb'));
    assert.ok(!isRequestId('caf\xe9'));
    assert.ok(!isRequestId('one, two'));
  });
});

void describe('readTrace', () => {
  void it('continues a valid traceparent: same trace id and flags, a new parent id per upstream request', () => {
    const t = readTrace({ traceparent: `00-${TRACE}-${PARENT}-03`, tracestate: 'congo=t61rcWkgMzE' });
    assert.equal(t.traceId, TRACE);
    assert.equal(t.flags, '03');
    assert.equal(t.continued, true);
    const a = TRACEPARENT.exec(t.traceparent());
    const b = TRACEPARENT.exec(t.traceparent());
    assert.ok(a && b);
    assert.equal(a[1], TRACE);
    assert.equal(a[3], '03');
    assert.notEqual(a[2], PARENT);
    assert.notEqual(a[2], b[2]);
  });

  void it('a higher version is continued as version 00', () => {
    const t = readTrace({ traceparent: `cc-${TRACE}-${PARENT}-01-future` });
    assert.equal(t.continued, true);
    assert.match(t.traceparent(), new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  });

  void it('without a valid traceparent, starts a trace: new ids, flags 01', () => {
    for (const headers of [{}, { traceparent: 'garbage' }, { traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01`, tracestate: 'a=b' }]) {
      const t = readTrace(headers);
      assert.equal(t.continued, false);
      assert.match(t.traceId, /^[0-9a-f]{32}$/);
      assert.notEqual(t.traceId, TRACE);
      assert.equal(t.flags, '01');
      const m = TRACEPARENT.exec(t.traceparent());
      assert.ok(m);
      assert.equal(parseTraceparent(t.traceparent()), t.traceId);
    }
  });

  void it("keeps the client's X-Request-Id when sane, else makes one", () => {
    assert.equal(readTrace({ 'x-request-id': 'req-42' }).requestId, 'req-42');
    for (const headers of [{}, { 'x-request-id': 'has space' }, { 'x-request-id': 'x'.repeat(201) }, { 'x-request-id': '' }]) {
      assert.match(readTrace(headers).requestId, /^[0-9a-f]{32}$/);
    }
  });

  void it('new ids differ from one request to the next, and from each other', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const t = readTrace({});
      seen.add(t.traceId);
      seen.add(t.requestId);
      // Parent ids are half as long: padded, so a prefix of another id would not pass for it.
      seen.add(TRACEPARENT.exec(t.traceparent())![2]!.padEnd(32, '-'));
    }
    assert.equal(seen.size, 3_000);
  });
});

void describe('traceOf', () => {
  void it('computes once per request', () => {
    const req = { headers: {} };
    const a = traceOf(req);
    assert.equal(traceOf(req), a);
    assert.notEqual(traceOf({ headers: {} }).traceId, a.traceId);
  });
});

void describe('randomHex', () => {
  void it('gives lowercase hex of the asked length across pool refills', () => {
    for (let i = 0; i < 2_000; i++) {
      const bytes = 1 + (i % 16);
      const h = randomHex(bytes);
      assert.equal(h.length, 2 * bytes);
      assert.match(h, /^[0-9a-f]+$/);
      assert.notEqual(h, '0'.repeat(2 * bytes));
    }
  });
});
