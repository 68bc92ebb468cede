import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countSize, RelayTally, SIZE_BOUNDS, sizeBucket } from './relay-tally.js';

/** The bucket by the definition: the first bound at or above the size, else the +Inf bucket. */
function byScan(bytes: number): number {
  const i = SIZE_BOUNDS.findIndex((b) => bytes <= b);
  return i === -1 ? SIZE_BOUNDS.length : i;
}

void test('sizeBucket agrees with a scan of the bounds at every edge and in between', () => {
  const sizes = [0, 1, 63, 64, 65, 2 ** 31, 2 ** 40];
  for (const b of SIZE_BOUNDS) sizes.push(b - 1, b, b + 1);
  for (let i = 0; i < 2000; i++) sizes.push(Math.floor(Math.random() * 3 * 1048576));
  for (const bytes of sizes) assert.equal(sizeBucket(bytes), byScan(bytes), `${bytes} bytes`);
});

void test('countSize counts into the bucket and adds to the sum', () => {
  const t = new RelayTally();
  countSize(t.upstreamSizes, 10);
  countSize(t.upstreamSizes, 300);
  countSize(t.upstreamSizes, 5_000_000);
  assert.deepEqual([...t.upstreamSizes], [1, 0, 1, 0, 0, 0, 0, 0, 1, 5_000_310]);
  assert.deepEqual([...t.downstreamSizes], new Array(SIZE_BOUNDS.length + 2).fill(0));
});
