import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IdleSweeper, type Sweepable } from './idle-sweeper.js';

function member(idleMs: number): Sweepable & { idled: number } {
  return {
    active: true,
    quietMs: 0,
    idleMs,
    idled: 0,
    onIdle() {
      this.idled++;
    },
  };
}

/** Sweeps until `m` goes idle; the number of sweeps it took (the first one only sees its traffic). */
function sweepsToIdle(s: IdleSweeper<Sweepable>, m: ReturnType<typeof member>, max = 100): number {
  for (let i = 1; i <= max; i++) {
    s.sweep();
    if (m.idled > 0) return i;
  }
  return -1;
}

void describe('IdleSweeper', () => {
  void it('closes a member quiet for its idle time, counted in ticks; traffic starts the count over', () => {
    const s = new IdleSweeper<Sweepable>(100);
    const m = member(300);
    s.add(m);
    s.sweep();
    s.sweep();
    m.active = true; // traffic: 200 ms of quiet forgotten
    assert.equal(sweepsToIdle(s, m), 4, 'one sweep sees the traffic, three quiet ones make 300 ms');
    s.stop();
  });

  void it('never closes a member whose idle time is 0', () => {
    const s = new IdleSweeper<Sweepable>(100);
    const m = member(0);
    s.add(m);
    assert.equal(sweepsToIdle(s, m), -1);
    s.stop();
  });

  void it('after retune, quiet time is counted with the new tick', () => {
    const s = new IdleSweeper<Sweepable>(1_000);
    const m = member(300);
    s.add(m);
    s.retune(50);
    assert.equal(s.tickMs, 50);
    assert.equal(sweepsToIdle(s, m), 7, 'one sweep sees the traffic, six of 50 ms make 300 ms');
    s.delete(m);
  });

  void it('retune restarts a running sweep at the new tick (a reload lowered the shortest idle timeout)', async () => {
    const s = new IdleSweeper<Sweepable>(60_000);
    let idled!: () => void;
    let timer: NodeJS.Timeout | undefined;
    const gone = new Promise<void>((resolve, reject) => {
      idled = resolve;
      // At the old tick nothing would happen for a minute. (This timer also keeps the process up: the sweep's is unref'd.)
      timer = setTimeout(() => reject(new Error('not idled within 10 s')), 10_000);
    });
    const m: Sweepable = { active: true, quietMs: 0, idleMs: 100, onIdle: () => idled() };
    s.add(m);
    s.retune(20);
    try {
      await gone;
    } finally {
      clearTimeout(timer);
      s.delete(m);
    }
  });
});
