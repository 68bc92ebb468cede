import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../config/load.js';
import type { HealthCheckConfig, UpstreamConfig } from '../config/types.js';
import { dialFailed, dialSucceeded } from '../health/outlier.js';
import { applyCheckResult } from '../health/health-monitor.js';
import { DrainSchedule, type Closable } from './drain-schedule.js';
import { UpstreamPool } from './pool.js';
import { TargetRegistry } from './target-registry.js';
import type { TargetEvent, TargetState } from './target-state.js';

/** Upstreams from YAML, parsed like the real thing. */
function upstreams(yaml: string): Readonly<Record<string, UpstreamConfig>> {
  const first = /^\s*([\w-]+):/.exec(yaml)![1]!;
  return parseConfig(`listeners: [{ address: 127.0.0.1:0 }]\nroutes: [{ match: { path: / }, upstream: ${first} }]\nupstreams:\n${yaml}`, {}).upstreams;
}

function app(targets: number, extra = ''): Readonly<Record<string, UpstreamConfig>> {
  const list = Array.from({ length: targets }, (_, i) => `{ url: "ws://10.0.0.${i + 1}:3000" }`).join(', ');
  return upstreams(`  app:\n    targets: [${list}]\n${extra}`);
}

function registryWith(config: Readonly<Record<string, UpstreamConfig>>, events: TargetEvent[] = []): TargetRegistry {
  const registry = new TargetRegistry((_s, e) => events.push(e));
  registry.sync(config);
  return registry;
}

function stateOf(registry: TargetRegistry, i: number): TargetState {
  return registry.get(`app/ws://10.0.0.${i + 1}:3000`)!;
}

class FakeSession implements Closable {
  closedAt: number | undefined;
  code: number | undefined;
  readonly #live: Set<Closable>;
  constructor(live: Set<Closable>) {
    this.#live = live;
    live.add(this);
  }
  close(_reason: string, code?: number): void {
    assert.equal(this.closedAt, undefined, 'closed twice');
    this.closedAt = Date.now();
    this.code = code;
    this.#live.delete(this);
  }
}

async function waitFor(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, 'timed out');
    await sleep(10);
  }
}

const HC: HealthCheckConfig = { type: 'http', path: '/health', interval: 1000, timeout: 500, healthyThreshold: 2, unhealthyThreshold: 3 };

void describe('DrainSchedule', () => {
  void it('closes every session with the code, spread evenly over the period', async () => {
    const live = new Set<Closable>();
    const sessions = Array.from({ length: 40 }, () => new FakeSession(live));
    const start = Date.now();
    let done = false;
    new DrainSchedule(live, 400, 1012, 'drain', () => (done = true));
    await sleep(600);
    await waitFor(() => done);
    const times = sessions.map((s) => s.closedAt! - start).sort((a, b) => a - b);
    times.forEach((t, i) => assert.ok(t >= Math.floor((i * 400) / 40), `close ${i} came ${t}ms after the start: too early`));
    for (const s of sessions) assert.equal(s.code, 1012);
  });

  void it('period 0 closes all at once; sessions that ended meanwhile are skipped', () => {
    const live = new Set<Closable>();
    const sessions = Array.from({ length: 5 }, () => new FakeSession(live));
    live.delete(sessions[2]!);
    new DrainSchedule(live, 0, 1012, 'drain', () => {});
    assert.deepEqual(
      sessions.map((s) => s.code),
      [1012, 1012, undefined, 1012, 1012],
    );
  });

  void it('cancel stops further closes', async () => {
    const live = new Set<Closable>();
    const sessions = Array.from({ length: 10 }, () => new FakeSession(live));
    const schedule = new DrainSchedule(live, 1000, 1012, 'drain', () => assert.fail('finished'));
    schedule.cancel();
    await sleep(100);
    assert.ok(sessions.filter((s) => s.closedAt !== undefined).length <= 1);
    assert.ok(schedule.pending >= 9);
  });
});

void describe('TargetRegistry', () => {
  void it('keeps a target state across syncs; pools built on it share connections and availability', () => {
    const registry = registryWith(app(2));
    const a = new UpstreamPool(app(2).app!, registry);
    const b = new UpstreamPool(app(3).app!, registry);
    const changes = registry.sync(app(3));
    assert.deepEqual(
      changes.added.map((s) => s.id),
      ['app/ws://10.0.0.3:3000'],
    );
    assert.equal(a.targets[0]!.state, b.targets[0]!.state);
    a.targets[0]!.active += 3;
    assert.equal(b.targets[0]!.active, 3);
    stateOf(registry, 1).drain('operator');
    assert.equal(a.targets[1]!.available, false);
    assert.equal(b.targets[1]!.available, false);
  });

  void it('a removed target drains; added back, it takes connections again; forgotten once empty', () => {
    const registry = registryWith(app(2, '    drainPeriod: 0\n'));
    const state = stateOf(registry, 1);
    const session = new FakeSession(state.sessions as Set<Closable>);
    const removed = registry.sync(app(1, '    drainPeriod: 0\n')).removed;
    assert.deepEqual(removed, [state]);
    assert.equal(session.code, 1012);
    assert.equal(state.available, false);
    assert.deepEqual(registry.removedStates('app'), [state]);
    const back = registry.sync(app(2, '    drainPeriod: 0\n'));
    assert.deepEqual(back.added, [state]);
    assert.equal(state.available, true);
    registry.sync(app(1, '    drainPeriod: 0\n'));
    registry.sync(app(1, '    drainPeriod: 0\n'));
    assert.equal(registry.get(state.id), undefined, 'an empty removed target is forgotten');
  });

  void it('operator drain and removal are separate causes', () => {
    const registry = registryWith(app(2, '    drainPeriod: 0\n'));
    const state = stateOf(registry, 1);
    state.drain('operator');
    registry.sync(app(1, '    drainPeriod: 0\n'));
    registry.sync(app(2, '    drainPeriod: 0\n'));
    assert.equal(state.available, false, 'still drained by the operator');
    state.undrain('operator');
    assert.equal(state.available, true);
  });
});

void describe('passive ejection', () => {
  void it('ejects after consecutiveFailures in a row; a success in between resets the count', () => {
    const events: TargetEvent[] = [];
    const registry = registryWith(app(3), events);
    const s = stateOf(registry, 0);
    dialFailed(s);
    dialFailed(s);
    dialSucceeded(s);
    dialFailed(s);
    dialFailed(s);
    assert.equal(s.available, true);
    dialFailed(s);
    assert.equal(s.available, false);
    assert.ok(s.ejectedUntil > Date.now() + 9_000 && s.ejectedUntil <= Date.now() + 10_000);
    assert.deepEqual(events.at(-1), { kind: 'ejected', ms: 10_000, failures: 3 });
    registry.stopTimers();
  });

  void it('the ejection doubles each time, up to maxEjection, and starts over after a quiet maxEjection', () => {
    const registry = registryWith(app(2, '    outlier: { consecutiveFailures: 1, baseEjection: 1s, maxEjection: 5s }\n'));
    const s = stateOf(registry, 0);
    const lengths: number[] = [];
    let now = 1_000_000;
    for (let i = 0; i < 5; i++) {
      dialFailed(s, now);
      lengths.push(s.ejectedUntil - Date.now());
      s.endEjection('backoff');
      s.returnedAt = now;
      now += 100;
    }
    assert.deepEqual(
      lengths.map((ms) => Math.round(ms / 1000)),
      [1, 2, 4, 5, 5],
    );
    dialFailed(s, now + 5_000);
    assert.equal(Math.round((s.ejectedUntil - Date.now()) / 1000), 1);
    registry.stopTimers();
  });

  void it('returns by itself once the ejection is over', async () => {
    const events: TargetEvent[] = [];
    const registry = registryWith(app(2, '    outlier: { consecutiveFailures: 1, baseEjection: 50ms }\n'), events);
    const s = stateOf(registry, 0);
    dialFailed(s);
    assert.equal(s.available, false);
    await sleep(150);
    assert.equal(s.available, true);
    assert.deepEqual(events.at(-1), { kind: 'returned', by: 'backoff' });
  });

  void it('never ejects more than maxEjectionPercent of the targets', () => {
    const registry = registryWith(app(4, '    outlier: { consecutiveFailures: 1 }\n'));
    for (let i = 0; i < 4; i++) dialFailed(stateOf(registry, i));
    const out = [0, 1, 2, 3].filter((i) => !stateOf(registry, i).available);
    assert.deepEqual(out, [0, 1], 'default 50% of 4 targets');
    const single = registryWith(upstreams('  solo: { targets: [{ url: ws://10.0.0.9:1 }], outlier: { consecutiveFailures: 1 } }\n'));
    const solo = single.get('solo/ws://10.0.0.9:1')!;
    dialFailed(solo);
    assert.equal(solo.available, true, 'a lone target is never ejected at 50%');
    const all = registryWith(upstreams('  solo: { targets: [{ url: ws://10.0.0.9:1 }], outlier: { consecutiveFailures: 1, maxEjectionPercent: 100 } }\n'));
    dialFailed(all.get('solo/ws://10.0.0.9:1')!);
    assert.equal(all.get('solo/ws://10.0.0.9:1')!.available, false);
    registry.stopTimers();
    all.stopTimers();
  });

  void it('consecutiveFailures: 0 turns it off', () => {
    const registry = registryWith(app(2, '    outlier: { consecutiveFailures: 0 }\n'));
    const s = stateOf(registry, 0);
    for (let i = 0; i < 20; i++) dialFailed(s);
    assert.equal(s.available, true);
  });
});

void describe('active check results', () => {
  void it('the first verdict counts at once; later ones need the thresholds', () => {
    const registry = registryWith(app(2));
    const s = stateOf(registry, 0);
    applyCheckResult(s, HC, { ok: false, reason: 'ECONNREFUSED' });
    assert.equal(s.healthy, false);
    applyCheckResult(s, HC, { ok: true });
    assert.equal(s.healthy, false);
    applyCheckResult(s, HC, { ok: true });
    assert.equal(s.healthy, true);
    applyCheckResult(s, HC, { ok: false, reason: 'x' });
    applyCheckResult(s, HC, { ok: false, reason: 'x' });
    assert.equal(s.available, true);
    applyCheckResult(s, HC, { ok: false, reason: 'status 500' });
    assert.equal(s.available, false);
    assert.deepEqual(s.status().lastCheck?.reason, 'status 500');
  });

  void it('a passing check ends a passive ejection', () => {
    const registry = registryWith(app(2, '    outlier: { consecutiveFailures: 1 }\n'));
    const s = stateOf(registry, 0);
    dialFailed(s);
    assert.equal(s.available, false);
    applyCheckResult(s, HC, { ok: true });
    assert.equal(s.available, true);
  });
});

void describe('slow start', () => {
  void it('a recovered target gets a small, growing share of new connections', async () => {
    const config = app(2, '    balance: round-robin\n    slowStart: 400ms\n');
    const registry = registryWith(config);
    const pool = new UpstreamPool(config.app!, registry);
    const s = stateOf(registry, 1);
    s.drain('operator');
    s.undrain('operator');
    assert.ok(s.warmUntil > 0);
    const share = (): number => {
      let n = 0;
      for (let i = 0; i < 2000; i++) if (pool.pick(undefined, undefined)!.state === s) n++;
      return n / 2000;
    };
    const early = share();
    assert.ok(early < 0.2, `early share ${early}`);
    await sleep(450);
    const late = share();
    assert.ok(late > 0.45 && late < 0.55, `share after the ramp ${late}`);
    assert.equal(s.warmUntil, 0);
  });

  void it('without other targets, the slow-starting one still gets picked', () => {
    const config = upstreams('  solo: { targets: [{ url: ws://10.0.0.9:1 }], slowStart: 10s }\n');
    const registry = registryWith(config);
    const pool = new UpstreamPool(config.solo!, registry);
    pool.targets[0]!.state.warm();
    for (let i = 0; i < 50; i++) assert.equal(pool.pick(undefined, undefined), pool.targets[0]);
  });
});
