import type { Balancer, BalancerTarget } from './balancer.js';

/**
 * Ring points per unit of weight. 160 is what ketama (and nginx's `hash ... consistent`) use:
 * enough that each target's share of the ring is within a few percent of its weight.
 */
const POINTS_PER_WEIGHT = 160;

/**
 * Consistent hashing on a ring with virtual nodes (ketama style).
 *
 * Why a ring and not Maglev: a ring gives the property sticky WebSocket sessions care about
 * most — a key whose target survives a change never moves, whether the change is a target
 * removed from the config or one marked unavailable at run time (the walk just steps past its
 * points). Maglev's table rebuild moves a few surviving keys, and skipping an unavailable entry
 * needs a second lookup scheme anyway. The ring's cost, a binary search per pick, is nothing
 * next to a handshake.
 *
 * Each target owns POINTS_PER_WEIGHT × weight points at hash("<id>#<n>"), so a target's points
 * depend only on its own id and weight: the same target lands on the same points in every
 * snapshot, and adding or removing one of N targets remaps about 1/N of the keys.
 *
 * The ring is built once, here; a pick only hashes the key and searches.
 */
export class HashBalancer implements Balancer {
  readonly #targets: readonly BalancerTarget[];
  /** Ring positions, ascending. */
  readonly #points: Uint32Array;
  /** #owners[i] is the index in #targets of the target owning #points[i]. */
  readonly #owners: Uint32Array;

  constructor(targets: readonly BalancerTarget[]) {
    this.#targets = targets;
    // Points are numbered in id order, so "sort by point, then by number" puts colliding points
    // in id order: the ring then does not depend on the order the targets were listed in.
    const byId = targets.map((_, i) => i).sort((x, y) => compareIds(targets[x]!.id, targets[y]!.id));
    let size = 0;
    for (const target of targets) size += target.weight * POINTS_PER_WEIGHT;
    const pointOf = new Uint32Array(size);
    const ownerOf = new Uint32Array(size);
    let n = 0;
    for (const i of byId) {
      const target = targets[i]!;
      const count = target.weight * POINTS_PER_WEIGHT;
      const prefix = fnv1a(FNV_OFFSET, `${target.id}#`);
      for (let v = 0; v < count; v++) {
        pointOf[n] = fmix32(fnv1aDecimal(prefix, v));
        ownerOf[n] = i;
        n++;
      }
    }
    const order = sortedOrder(pointOf);
    this.#points = new Uint32Array(size);
    this.#owners = new Uint32Array(size);
    for (let k = 0; k < size; k++) {
      this.#points[k] = pointOf[order[k]!]!;
      this.#owners[k] = ownerOf[order[k]!]!;
    }
  }

  pick(key: string | undefined, exclude?: ReadonlySet<BalancerTarget>): BalancerTarget | undefined {
    if (key === undefined) return this.#pickRandom(exclude);
    const points = this.#points;
    const owners = this.#owners;
    const targets = this.#targets;
    const size = points.length;
    if (size === 0) return undefined;

    const h = hash32(key);
    // Lower bound: the first point at or clockwise after the key's hash, wrapping past the top.
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    let idx = lo === size ? 0 : lo;

    let target = targets[owners[idx]!]!;
    if (target.available && (exclude === undefined || !exclude.has(target))) return target;
    // The slow path walks the ring; make sure it can end well before walking all of it for nothing.
    if (!this.#anyEligible(exclude)) return undefined;
    for (let step = 1; step < size; step++) {
      idx++;
      if (idx === size) idx = 0;
      target = targets[owners[idx]!]!;
      if (target.available && (exclude === undefined || !exclude.has(target))) return target;
    }
    return undefined;
  }

  /** No key (header missing, …): any eligible target, weighted, so the load still follows the weights. */
  #pickRandom(exclude: ReadonlySet<BalancerTarget> | undefined): BalancerTarget | undefined {
    const targets = this.#targets;
    let total = 0;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (target.available && (exclude === undefined || !exclude.has(target))) total += target.weight;
    }
    if (total === 0) return undefined;
    let r = Math.random() * total;
    let chosen: BalancerTarget | undefined;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (!target.available || (exclude !== undefined && exclude.has(target))) continue;
      chosen = target;
      r -= target.weight;
      if (r < 0) break;
    }
    return chosen;
  }

  #anyEligible(exclude: ReadonlySet<BalancerTarget> | undefined): boolean {
    const targets = this.#targets;
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]!;
      if (target.available && (exclude === undefined || !exclude.has(target))) return true;
    }
    return false;
  }
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Point numbers that fit beside a 32-bit point in a double's 53-bit mantissa. */
const PACKED_INDEX_LIMIT = 2 ** 21;

/** Indices of `points` sorted by (point, index). */
function sortedOrder(points: Uint32Array): Uint32Array {
  const size = points.length;
  const order = new Uint32Array(size);
  if (size <= PACKED_INDEX_LIMIT) {
    // A native numeric sort of packed point·2²¹+index is several times faster than a comparator
    // sort; it matters on reload, which builds every upstream's ring on the event loop.
    const packed = new Float64Array(size);
    for (let i = 0; i < size; i++) packed[i] = points[i]! * PACKED_INDEX_LIMIT + i;
    packed.sort();
    for (let k = 0; k < size; k++) order[k] = packed[k]! % PACKED_INDEX_LIMIT;
    return order;
  }
  for (let i = 0; i < size; i++) order[i] = i;
  return order.sort((x, y) => points[x]! - points[y]! || x - y);
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * The key hash: 32-bit FNV-1a over the string's UTF-16 code units (low byte, then high byte when
 * non-zero), followed by murmur3's fmix32 finaliser, because FNV-1a alone mixes poorly for short
 * keys that differ only in their last characters ("t#1", "t#2", …) and would bunch a target's
 * points together.
 */
function hash32(s: string): number {
  return fmix32(fnv1a(FNV_OFFSET, s));
}

function fnv1a(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), FNV_PRIME);
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), FNV_PRIME);
  }
  return h;
}

/** fnv1a(h, String(n)) for a non-negative integer n, without building the string (ring build hot loop). */
function fnv1aDecimal(h: number, n: number): number {
  let div = 1;
  while (div * 10 <= n) div *= 10;
  for (; div >= 1; div /= 10) {
    h = Math.imul(h ^ (0x30 + (Math.floor(n / div) % 10)), FNV_PRIME);
  }
  return h;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
