import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { TimerQueue, TimerQueues } from '../src/timer-queue.js';

interface Owner {
  readonly id: number;
  setAt: number;
  firedAt?: number;
}

function owners(n: number): Owner[] {
  return Array.from({ length: n }, (_, id) => ({ id, setAt: 0 }));
}

void test('a timer fires once, after its duration, and a cleared one never does', async () => {
  const fired: Owner[] = [];
  const q = new TimerQueue<Owner>(40, (o) => {
    o.firedAt = performance.now();
    fired.push(o);
  });
  const [a, b, c] = owners(3) as [Owner, Owner, Owner];
  a.setAt = performance.now();
  q.set(a);
  const tb = q.set(b);
  c.setAt = performance.now();
  q.set(c);
  q.clear(tb);
  await sleep(300);
  assert.deepEqual(
    fired.map((o) => o.id),
    [0, 2],
  );
  // At most the queue's 1 ms of slack early (and a little for the clock's rounding).
  assert.ok(a.firedAt! - a.setAt >= 38, `fired after ${a.firedAt! - a.setAt} ms`);
  assert.ok(c.firedAt! - c.setAt >= 38, `fired after ${c.firedAt! - c.setAt} ms`);
  assert.equal(q.size, 0);
  // A ticket already fired is ignored: it does not clear a later timer in its slot.
  const d: Owner = { id: 3, setAt: 0 };
  q.set(d);
  q.clear(0);
  await sleep(150);
  assert.deepEqual(
    fired.map((o) => o.id),
    [0, 2, 3],
  );
});

void test('thousands of timers, the ring grown under them and tickets near the wrap: every kept one fires, no cleared one does', async () => {
  for (const first of [0, 0x3fffffff - 700]) {
    const fired = new Set<number>();
    const q = new TimerQueue<Owner>(
      30,
      (o) => {
        assert.ok(!fired.has(o.id), `owner ${o.id} fired twice`);
        fired.add(o.id);
      },
      first,
    );
    const all = owners(3000);
    const tickets = all.map((o) => q.set(o));
    // Cleared before and after the growths that came with the later sets.
    for (let i = 1; i < all.length; i += 2) q.clear(tickets[i]!);
    await sleep(400);
    const expected = all.filter((o) => o.id % 2 === 0).map((o) => o.id);
    assert.deepEqual(
      [...fired].sort((x, y) => x - y),
      expected,
      `first ticket ${first}`,
    );
    assert.equal(q.size, 0);
  }
});

void test('a timer set by a firing one (a keepalive that pings and waits again) fires in its turn', async () => {
  const rounds: number[] = [];
  const o: Owner = { id: 7, setAt: 0 };
  const q: TimerQueue<Owner> = new TimerQueue<Owner>(20, (owner) => {
    rounds.push(owner.id);
    if (rounds.length < 3) q.set(owner);
  });
  q.set(o);
  await sleep(400);
  assert.deepEqual(rounds, [7, 7, 7]);
});

void test('queues by duration: each fires at its own', async () => {
  const fired: string[] = [];
  const queues = new TimerQueues<{ name: string }>((o) => fired.push(o.name));
  assert.equal(queues.of(25), queues.of(25));
  queues.of(150).set({ name: 'slow' });
  queues.of(25).set({ name: 'fast' });
  await sleep(80);
  assert.deepEqual(fired, ['fast']);
  await sleep(300);
  assert.deepEqual(fired, ['fast', 'slow']);
});

void test('a callback that throws does not strand the timers behind it', async () => {
  const fired: number[] = [];
  const q = new TimerQueue<Owner>(20, (o) => {
    fired.push(o.id);
    if (o.id === 0) throw new Error('owner 0 failed');
  });
  const [a, b] = owners(2) as [Owner, Owner];
  q.set(a);
  q.set(b);
  // Both due, and the queue run here rather than by its timer, so the throw is caught: spin past
  // the duration (a sleep would let the queue's own timer fire first).
  const until = performance.now() + 30;
  while (performance.now() < until);
  assert.throws(() => q.run(), /owner 0 failed/);
  assert.deepEqual(fired, [0]);
  await sleep(200);
  assert.deepEqual(fired, [0, 1]);
  assert.equal(q.size, 0);
});

void test('a ring grown by a storm shrinks back once its timers are done, and later tickets still clear', async () => {
  const fired: number[] = [];
  const q = new TimerQueue<Owner>(30, (o) => fired.push(o.id));
  const storm = owners(5000);
  const tickets = storm.map((o) => q.set(o));
  assert.ok(q.capacity >= 5000, `capacity ${q.capacity}`);
  for (const t of tickets.slice(0, 4990)) q.clear(t);
  await sleep(300);
  assert.deepEqual(fired, [4990, 4991, 4992, 4993, 4994, 4995, 4996, 4997, 4998, 4999]);
  assert.equal(q.size, 0);
  assert.equal(q.capacity, 64, 'the ring is back to its first size');
  // A ticket from before the shrink clears nothing now; new ones work as before.
  const [x, y] = [
    { id: 9000, setAt: 0 },
    { id: 9001, setAt: 0 },
  ];
  q.set(x);
  const ty = q.set(y);
  q.clear(tickets[0]!);
  q.clear(ty);
  await sleep(150);
  assert.deepEqual(fired.slice(10), [9000]);
});
