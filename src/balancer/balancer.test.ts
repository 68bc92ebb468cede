import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BalanceAlgorithm, HashKeySpec } from '../config/types.js';
import { createBalancer, InvalidBalancerTargetsError } from './balancer.js';
import type { BalancerTarget } from './balancer.js';
import { hashKeyOf } from './hash-key.js';

// ---------------------------------------------------------------------------------------------
// Helpers

function makeTargets(...weights: number[]): BalancerTarget[] {
  return weights.map((weight, i) => ({ id: `app/ws://10.0.0.${i + 1}:3000`, weight, active: 0, available: true }));
}

function idsOf(targets: readonly BalancerTarget[]): Set<string> {
  return new Set(targets.map((t) => t.id));
}

/** Picks `n` times with distinct keys (so hash spreads too), counting how often each target won. */
function countPicks(
  algorithm: BalanceAlgorithm,
  targets: BalancerTarget[],
  n: number,
  opts: { exclude?: ReadonlySet<BalancerTarget>; holdOpen?: boolean; keyPrefix?: string } = {},
): Map<BalancerTarget, number> {
  const balancer = createBalancer(algorithm, targets);
  const counts = new Map<BalancerTarget, number>();
  for (let i = 0; i < n; i++) {
    const picked = balancer.pick(`${opts.keyPrefix ?? 'key'}-${i}`, opts.exclude);
    assert.ok(picked, `pick ${i} returned undefined`);
    counts.set(picked, (counts.get(picked) ?? 0) + 1);
    if (opts.holdOpen === true) picked.active++;
  }
  return counts;
}

function assertProportional(counts: Map<BalancerTarget, number>, targets: BalancerTarget[], n: number, tolerance: number): void {
  const totalWeight = targets.reduce((sum, t) => sum + t.weight, 0);
  for (const target of targets) {
    const share = (counts.get(target) ?? 0) / n;
    const expected = target.weight / totalWeight;
    assert.ok(
      Math.abs(share - expected) <= tolerance,
      `${target.id} (weight ${target.weight}) got ${(share * 100).toFixed(1)}%, expected ${(expected * 100).toFixed(1)}% ± ${tolerance * 100}%`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The shared suite: every case runs against every algorithm.

interface AlgorithmEntry {
  readonly algorithm: BalanceAlgorithm;
  /**
   * How "weights are respected" is checked:
   * exact — a fixed number of picks splits exactly by weight;
   * connections — with connections held open, active counts end up proportional to weight;
   * keys — many distinct keys spread roughly by weight.
   */
  readonly weights: 'exact' | 'connections' | 'keys';
}

const ALGORITHMS: readonly AlgorithmEntry[] = [
  { algorithm: 'round-robin', weights: 'exact' },
  { algorithm: 'least-connections', weights: 'connections' },
  { algorithm: 'power-of-two', weights: 'connections' },
  { algorithm: 'hash', weights: 'keys' },
];

interface SharedCase {
  readonly name: string;
  run(entry: AlgorithmEntry): void;
}

const SHARED_CASES: readonly SharedCase[] = [
  {
    name: 'never picks an unavailable target, and uses every available one',
    run({ algorithm }) {
      const targets = makeTargets(1, 1, 1, 1);
      targets[0]!.available = false;
      targets[2]!.available = false;
      const counts = countPicks(algorithm, targets, 1000);
      assert.deepEqual(idsOf([...counts.keys()]), idsOf([targets[1]!, targets[3]!]));
    },
  },
  {
    name: 'never picks an excluded target, and uses every other one',
    run({ algorithm }) {
      const targets = makeTargets(1, 1, 1, 1);
      const counts = countPicks(algorithm, targets, 1000, { exclude: new Set([targets[0]!, targets[1]!]) });
      assert.deepEqual(idsOf([...counts.keys()]), idsOf([targets[2]!, targets[3]!]));
    },
  },
  {
    name: 'unavailable and excluded together leave the one remaining target',
    run({ algorithm }) {
      const targets = makeTargets(3, 1, 2, 1);
      targets[0]!.available = false;
      const counts = countPicks(algorithm, targets, 200, { exclude: new Set([targets[1]!, targets[2]!]) });
      assert.deepEqual([...counts.keys()], [targets[3]]);
    },
  },
  {
    name: 'returns undefined when no target is available',
    run({ algorithm }) {
      const targets = makeTargets(1, 2, 3);
      for (const t of targets) t.available = false;
      const balancer = createBalancer(algorithm, targets);
      for (let i = 0; i < 50; i++) assert.equal(balancer.pick(`key-${i}`), undefined);
      assert.equal(balancer.pick(undefined), undefined);
    },
  },
  {
    name: 'returns undefined when every target is excluded',
    run({ algorithm }) {
      const targets = makeTargets(1, 2, 3);
      const balancer = createBalancer(algorithm, targets);
      const all = new Set(targets);
      for (let i = 0; i < 50; i++) assert.equal(balancer.pick(`key-${i}`, all), undefined);
      assert.equal(balancer.pick(undefined, all), undefined);
    },
  },
  {
    name: 'returns undefined for an empty target list',
    run({ algorithm }) {
      const balancer = createBalancer(algorithm, []);
      assert.equal(balancer.pick('key'), undefined);
      assert.equal(balancer.pick(undefined), undefined);
    },
  },
  {
    name: 'always picks a single target, whatever its load',
    run({ algorithm }) {
      const [only] = makeTargets(3);
      const balancer = createBalancer(algorithm, [only!]);
      for (let i = 0; i < 100; i++) {
        only!.active = i * 7;
        assert.equal(balancer.pick(i % 3 === 0 ? undefined : `key-${i}`), only);
      }
    },
  },
  {
    name: 'a retry loop that excludes each failed target visits every target once, then runs out',
    run({ algorithm }) {
      const targets = makeTargets(2, 1, 1, 3);
      const balancer = createBalancer(algorithm, targets);
      for (let round = 0; round < 20; round++) {
        const tried = new Set<BalancerTarget>();
        for (let attempt = 0; attempt < targets.length; attempt++) {
          const picked = balancer.pick(`session-${round}`, tried);
          assert.ok(picked && !tried.has(picked), `round ${round}: attempt ${attempt} repeated a target`);
          tried.add(picked);
        }
        assert.equal(balancer.pick(`session-${round}`, tried), undefined);
      }
    },
  },
  {
    name: 'honours availability changes made after the balancer was built',
    run({ algorithm }) {
      const targets = makeTargets(1, 1, 1);
      const balancer = createBalancer(algorithm, targets);
      const target = targets[1]!;
      target.available = false;
      for (let i = 0; i < 300; i++) assert.notEqual(balancer.pick(`key-${i}`), target);
      target.available = true;
      let seen = 0;
      for (let i = 0; i < 300; i++) if (balancer.pick(`key-${i}`) === target) seen++;
      assert.ok(seen > 30, `target picked ${seen} times after becoming available again`);
    },
  },
  {
    name: 'a missing key still yields an available target, spread over all of them',
    run({ algorithm }) {
      const targets = makeTargets(1, 1, 1, 1);
      targets[3]!.available = false;
      const balancer = createBalancer(algorithm, targets);
      const counts = new Map<BalancerTarget, number>();
      for (let i = 0; i < 600; i++) {
        const picked = balancer.pick(undefined);
        assert.ok(picked?.available);
        counts.set(picked, (counts.get(picked) ?? 0) + 1);
      }
      for (const t of targets.slice(0, 3)) assert.ok((counts.get(t) ?? 0) >= 100, `${t.id}: ${counts.get(t) ?? 0} of 600`);
    },
  },
  {
    name: 'respects weights',
    run({ algorithm, weights }) {
      switch (weights) {
        case 'exact': {
          // Smooth round-robin is exact over any whole number of cycles.
          const targets = makeTargets(5, 1, 1);
          const counts = countPicks(algorithm, targets, 700);
          assert.deepEqual(
            targets.map((t) => counts.get(t)),
            [500, 100, 100],
          );
          const uneven = makeTargets(3, 2, 4, 1);
          const unevenCounts = countPicks(algorithm, uneven, 1000);
          assert.deepEqual(
            uneven.map((t) => unevenCounts.get(t)),
            [300, 200, 400, 100],
          );
          return;
        }
        case 'connections': {
          // Connections stay open, so every pick adds load to its target.
          const targets = makeTargets(4, 2, 1, 1);
          countPicks(algorithm, targets, 800, { holdOpen: true });
          const expected = [400, 200, 100, 100];
          targets.forEach((t, i) => {
            assert.ok(Math.abs(t.active - expected[i]!) <= 24, `${t.id}: ${t.active} active, expected about ${expected[i]}`);
          });
          return;
        }
        case 'keys': {
          const targets = makeTargets(3, 1, 1);
          const n = 20_000;
          assertProportional(countPicks(algorithm, targets, n), targets, n, 0.05);
          return;
        }
      }
    },
  },
  {
    name: 'rejects targets it cannot balance over',
    run({ algorithm }) {
      for (const weight of [0, -1, 1.5, Number.NaN]) {
        assert.throws(
          () => createBalancer(algorithm, makeTargets(1, weight)),
          (err: unknown) => err instanceof InvalidBalancerTargetsError && err.code === 'ERR_BALANCER_TARGETS',
        );
      }
      const [a] = makeTargets(1);
      assert.throws(() => createBalancer(algorithm, [a!, { ...a! }]), InvalidBalancerTargetsError);
    },
  },
];

for (const entry of ALGORITHMS) {
  void describe(`balancer (shared suite): ${entry.algorithm}`, () => {
    for (const c of SHARED_CASES) void it(c.name, () => c.run(entry));
  });
}

// ---------------------------------------------------------------------------------------------
// Algorithm-specific behaviour

void describe('round-robin', () => {
  void it("follows nginx's smooth sequence for 5:1:1 (a,a,b,a,c,a,a), cycle after cycle", () => {
    const targets = makeTargets(5, 1, 1);
    const names = new Map(targets.map((t, i) => [t, 'abc'[i]!]));
    const balancer = createBalancer('round-robin', targets);
    const seq = Array.from({ length: 21 }, () => names.get(balancer.pick(undefined)!)).join('');
    assert.equal(seq, 'aabacaa'.repeat(3));
  });

  void it('keeps interleaving among the remaining targets when one is unavailable', () => {
    const targets = makeTargets(1, 1, 1);
    targets[1]!.available = false;
    const balancer = createBalancer('round-robin', targets);
    const seq = Array.from({ length: 6 }, () => balancer.pick(undefined));
    assert.deepEqual(seq, [targets[0], targets[2], targets[0], targets[2], targets[0], targets[2]]);
  });

  void it('ignores active connections', () => {
    const targets = makeTargets(1, 1);
    targets[0]!.active = 1000;
    const counts = countPicks('round-robin', targets, 100);
    assert.deepEqual(
      targets.map((t) => counts.get(t)),
      [50, 50],
    );
  });
});

void describe('least-connections', () => {
  void it('picks the target with the fewest connections per unit of weight', () => {
    const targets = makeTargets(1, 1, 1);
    [5, 2, 7].forEach((active, i) => (targets[i]!.active = active));
    const balancer = createBalancer('least-connections', targets);
    for (let i = 0; i < 50; i++) assert.equal(balancer.pick(undefined), targets[1]);

    const weighted = makeTargets(4, 1);
    weighted[0]!.active = 6; // 1.5 per unit of weight
    weighted[1]!.active = 2; // 2 per unit of weight
    assert.equal(createBalancer('least-connections', weighted).pick(undefined), weighted[0]);
  });

  void it('breaks ties at random', () => {
    const targets = makeTargets(1, 1, 1);
    const balancer = createBalancer('least-connections', targets);
    const counts = new Map<BalancerTarget, number>();
    for (let i = 0; i < 300; i++) {
      for (const t of targets) t.active = 0;
      const picked = balancer.pick(undefined)!;
      counts.set(picked, (counts.get(picked) ?? 0) + 1);
    }
    for (const t of targets) assert.ok((counts.get(t) ?? 0) >= 50, `${t.id}: ${counts.get(t) ?? 0} of 300`);
  });
});

void describe('power-of-two', () => {
  void it('draws two distinct candidates: of two targets, the less loaded always wins', () => {
    const targets = makeTargets(1, 1);
    targets[0]!.active = 3;
    const balancer = createBalancer('power-of-two', targets);
    for (let i = 0; i < 200; i++) assert.equal(balancer.pick(undefined), targets[1]);
  });

  void it('honours weights beyond 2/N: 8:1:1 settles at 80% on the heavy target', () => {
    const targets = makeTargets(8, 1, 1);
    countPicks('power-of-two', targets, 1000, { holdOpen: true });
    assert.ok(Math.abs(targets[0]!.active - 800) <= 30, `heavy target has ${targets[0]!.active} of 1000`);
  });

  void it('never picks the single most loaded target, and weighs load by weight', () => {
    const targets = makeTargets(1, 1, 1, 10);
    [10, 2, 3, 40].forEach((active, i) => (targets[i]!.active = active)); // per weight: 10, 2, 3, 4
    const counts = countPicks('power-of-two', targets, 600);
    assert.equal(counts.get(targets[0]!), undefined);
    for (const t of targets.slice(1)) assert.ok((counts.get(t) ?? 0) > 0, `${t.id} never picked`);
  });
});

void describe('hash', () => {
  function mapKeys(targets: BalancerTarget[], keys: readonly string[]): Map<string, string> {
    const balancer = createBalancer('hash', targets);
    return new Map(keys.map((k) => [k, balancer.pick(k)!.id]));
  }
  const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

  void it('maps the same key to the same target, in every balancer built over the same targets', () => {
    const targets = makeTargets(1, 2, 1, 1);
    const first = mapKeys(targets, KEYS);
    assert.deepEqual(mapKeys(targets, KEYS), first);
    assert.deepEqual(mapKeys([...targets].reverse(), KEYS), first, 'target order changed the mapping');
    const balancer = createBalancer('hash', targets);
    for (let i = 0; i < 20; i++) assert.equal(balancer.pick('user-42')!.id, first.get('user-42'));
  });

  void it("removing one of 5 targets moves about 1/5 of the keys, and only that target's keys", () => {
    const targets = makeTargets(1, 1, 1, 1, 1);
    const before = mapKeys(targets, KEYS);
    const removed = targets[2]!;
    const after = mapKeys(
      targets.filter((t) => t !== removed),
      KEYS,
    );
    let moved = 0;
    for (const key of KEYS) {
      if (before.get(key) === after.get(key)) continue;
      moved++;
      assert.equal(before.get(key), removed.id, `${key} moved although its target survived`);
    }
    const fraction = moved / KEYS.length;
    assert.ok(fraction >= 0.1 && fraction <= 0.35, `moved ${fraction}`);
  });

  void it('adding a 6th target moves about 1/6 of the keys, all of them to the new target', () => {
    const targets = makeTargets(1, 1, 1, 1, 1, 1);
    const before = mapKeys(targets.slice(0, 5), KEYS);
    const after = mapKeys(targets, KEYS);
    let moved = 0;
    for (const key of KEYS) {
      if (before.get(key) === after.get(key)) continue;
      moved++;
      assert.equal(after.get(key), targets[5]!.id);
    }
    const fraction = moved / KEYS.length;
    assert.ok(fraction >= 0.08 && fraction <= 0.3, `moved ${fraction}`);
  });

  void it("an unavailable target's keys move to the others and come back; no other key moves", () => {
    const targets = makeTargets(1, 1, 1, 1, 1);
    const balancer = createBalancer('hash', targets);
    const before = KEYS.map((k) => balancer.pick(k));
    targets[0]!.available = false;
    const during = KEYS.map((k) => balancer.pick(k));
    const removedRing = mapKeys(targets.slice(1), KEYS);
    KEYS.forEach((k, i) => {
      if (before[i] !== targets[0]) assert.equal(during[i], before[i], `${k} moved`);
      // Walking past the unavailable target's points lands where a ring without it would.
      assert.equal(during[i]!.id, removedRing.get(k));
    });
    targets[0]!.available = true;
    KEYS.forEach((k, i) => assert.equal(balancer.pick(k), before[i]));
  });

  void it('a missing key falls back to a random available target, weighted', () => {
    const targets = makeTargets(3, 1, 1);
    targets[2]!.available = false;
    const balancer = createBalancer('hash', targets);
    let heavy = 0;
    for (let i = 0; i < 4000; i++) {
      const picked = balancer.pick(undefined);
      assert.ok(picked === targets[0] || picked === targets[1]);
      if (picked === targets[0]) heavy++;
    }
    assert.ok(Math.abs(heavy / 4000 - 0.75) <= 0.05, `weight-3 target got ${heavy} of 4000`);
  });

  void it("an excluded target's keys go to the next target on the ring, others stay put", () => {
    const targets = makeTargets(1, 1, 1);
    const balancer = createBalancer('hash', targets);
    for (const key of KEYS.slice(0, 500)) {
      const home = balancer.pick(key)!;
      const next = balancer.pick(key, new Set([home]))!;
      assert.notEqual(next, home);
      const other = targets.find((t) => t !== home && t !== next)!;
      assert.equal(balancer.pick(key, new Set([other])), home);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Hash keys

void describe('hashKeyOf', () => {
  const req = (headers: Record<string, string | string[]>, url = '/chat') => ({ headers, url });
  const header = (name: string): HashKeySpec => ({ source: 'header', name });
  const cookie = (name: string): HashKeySpec => ({ source: 'cookie', name });
  const query = (name: string): HashKeySpec => ({ source: 'query', name });
  const claim = (name: string): HashKeySpec => ({ source: 'claim', name });

  void it('ip: the client address', () => {
    assert.equal(hashKeyOf({ source: 'ip' }, req({}), '203.0.113.7'), '203.0.113.7');
    assert.equal(hashKeyOf({ source: 'ip' }, req({}), '::1'), '::1');
  });

  void it('header: the value, the first of several, case-insensitive name, undefined when missing or empty', () => {
    assert.equal(hashKeyOf(header('x-user-id'), req({ 'x-user-id': 'u-1' }), '1.2.3.4'), 'u-1');
    assert.equal(hashKeyOf(header('X-User-Id'), req({ 'x-user-id': 'u-1' }), '1.2.3.4'), 'u-1');
    assert.equal(hashKeyOf(header('x-user-id'), req({ 'x-user-id': ['u-2', 'u-3'] }), '1.2.3.4'), 'u-2');
    assert.equal(hashKeyOf(header('x-user-id'), req({ 'x-other': 'u-1' }), '1.2.3.4'), undefined);
    assert.equal(hashKeyOf(header('x-user-id'), req({ 'x-user-id': '' }), '1.2.3.4'), undefined);
  });

  void it('cookie: parses several pairs, spaces and quotes; undefined when missing', () => {
    const headers = { cookie: 'theme=dark;  sid = abc123 ;token="q v";empty=; flag; a=b=c;session=s1; sid=second' };
    assert.equal(hashKeyOf(cookie('sid'), req(headers), ''), 'abc123');
    assert.equal(hashKeyOf(cookie('theme'), req(headers), ''), 'dark');
    assert.equal(hashKeyOf(cookie('token'), req(headers), ''), 'q v');
    assert.equal(hashKeyOf(cookie('a'), req(headers), ''), 'b=c');
    assert.equal(hashKeyOf(cookie('session'), req(headers), ''), 's1');
    assert.equal(hashKeyOf(cookie('empty'), req(headers), ''), undefined);
    assert.equal(hashKeyOf(cookie('flag'), req(headers), ''), undefined);
    assert.equal(hashKeyOf(cookie('missing'), req(headers), ''), undefined);
    assert.equal(hashKeyOf(cookie('ses'), req(headers), ''), undefined, 'prefix of a name matched');
    assert.equal(hashKeyOf(cookie('SID'), req(headers), ''), undefined, 'cookie names are case-sensitive');
    assert.equal(hashKeyOf(cookie('sid'), req({}), ''), undefined);
    assert.equal(hashKeyOf(cookie('sid'), req({ cookie: '' }), ''), undefined);
  });

  void it('query: from the query string, decoded; undefined when missing', () => {
    assert.equal(hashKeyOf(query('room'), req({}, '/chat?room=lobby&x=1'), ''), 'lobby');
    assert.equal(hashKeyOf(query('x'), req({}, '/chat?room=lobby&x=1'), ''), '1');
    assert.equal(hashKeyOf(query('room'), req({}, '/chat?room=a%20b&room=second'), ''), 'a b');
    assert.equal(hashKeyOf(query('room'), req({}, '/chat?room=a+b#frag'), ''), 'a b');
    assert.equal(hashKeyOf(query('room'), req({}, '/chat?other=1'), ''), undefined);
    assert.equal(hashKeyOf(query('room'), req({}, '/chat'), ''), undefined);
    assert.equal(hashKeyOf(query('room'), req({}, '/chat?room='), ''), undefined);
  });

  void it('claim: the claim as a string; undefined when absent, null or not an own property', () => {
    const claims = { sub: 'user-9', tenant: 42, admin: false, nothing: null };
    assert.equal(hashKeyOf(claim('sub'), req({}), '', claims), 'user-9');
    assert.equal(hashKeyOf(claim('tenant'), req({}), '', claims), '42');
    assert.equal(hashKeyOf(claim('admin'), req({}), '', claims), 'false');
    assert.equal(hashKeyOf(claim('nothing'), req({}), '', claims), undefined);
    assert.equal(hashKeyOf(claim('missing'), req({}), '', claims), undefined);
    assert.equal(hashKeyOf(claim('constructor'), req({}), '', claims), undefined);
    assert.equal(hashKeyOf(claim('sub'), req({}), ''), undefined);
  });
});
