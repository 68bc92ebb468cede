import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DURATION_MESSAGE, RATE_MESSAGE, SIZE_MESSAGE, UnitError, parseDuration, parseRate, parseSize } from './units.js';

function throwsUnit(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UnitError, `expected UnitError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG_UNIT_INVALID');
    assert.ok(err.message.startsWith(message), `"${err.message}" should start with "${message}"`);
    return true;
  });
}

void describe('parseDuration', () => {
  const good: [string | number, number][] = [
    ['250ms', 250],
    ['10s', 10_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['.5s', 500],
    ['0', 0],
    [0, 0],
    ['0s', 0],
    [1234, 1234],
    ['1234', 1234],
    [' 10s ', 10_000],
    ['596h', 596 * 3_600_000],
  ];
  for (const [input, ms] of good) {
    void test(`${JSON.stringify(input)} → ${ms} ms`, () => assert.equal(parseDuration(input), ms));
  }
  const bad: unknown[] = ['', 'abc', '10 s', '-1s', -5, Number.NaN, Infinity, '1d', '5sec', '1e3ms', '10S', '597h', 2 ** 31, true, null];
  for (const input of bad) {
    void test(`rejects ${String(input)}`, () => throwsUnit(() => parseDuration(input as string), DURATION_MESSAGE));
  }
  void test('the message is the documented one', () => {
    assert.equal(DURATION_MESSAGE, 'must be a duration such as 250ms, 10s, 5m or 1h');
  });
});

void describe('parseSize', () => {
  const good: [string | number, number][] = [
    ['512B', 512],
    ['64KiB', 65_536],
    ['1MiB', 1_048_576],
    ['1GiB', 1_073_741_824],
    ['16kib', 16_384],
    ['1.5KiB', 1536],
    [1024, 1024],
    ['1024', 1024],
    [0, 0],
  ];
  for (const [input, bytes] of good) {
    void test(`${JSON.stringify(input)} → ${bytes} B`, () => assert.equal(parseSize(input), bytes));
  }
  const bad: unknown[] = ['', 'x', '1TiB', '1 KiB', '-1B', -1, Infinity, 'KiB', false];
  for (const input of bad) {
    void test(`rejects ${String(input)}`, () => throwsUnit(() => parseSize(input as string), SIZE_MESSAGE));
  }
  void test('KB/MB/GB are refused with a pointer to the binary unit', () => {
    throwsUnit(() => parseSize('1MB'), SIZE_MESSAGE);
    assert.throws(() => parseSize('64KB'), /write KiB/);
    assert.throws(() => parseSize('1GB'), /write GiB/);
  });
});

void describe('parseRate', () => {
  const good: [string | number, number][] = [
    ['20/s', 20],
    ['600/m', 10],
    ['10/h', 10 / 3600],
    ['1.5/s', 1.5],
    [0, 0],
    ['0', 0],
    ['0/s', 0],
  ];
  for (const [input, perSecond] of good) {
    void test(`${JSON.stringify(input)} → ${perSecond}/s`, () => assert.deepEqual(parseRate(input), { perSecond }));
  }
  const bad: unknown[] = ['20', 20, '20/d', '/s', '-1/s', '20/ s', '20/sec', '', null];
  for (const input of bad) {
    void test(`rejects ${String(input)}`, () => throwsUnit(() => parseRate(input as string), RATE_MESSAGE));
  }
});
