import type { BucketState } from './token-bucket.js';

/** What the gateway keeps per client address: a handshake token bucket and an open-connection count. */
export interface IpEntry extends BucketState {
  readonly key: string;
  conns: number;
}

/** Enough for any real client population; a spoofed-source flood only churns the oldest entries. */
export const DEFAULT_MAX_ENTRIES = 100_000;

/** Entries looked at per eviction before the table is allowed to grow past its bound. */
const EVICTION_PROBES = 16;

/**
 * Per-address state in a Map kept in least-recently-used order (a Map
 * iterates in insertion order, so a touch is delete + set), bounded at
 * `maxEntries`. Entries with open connections are never evicted — their
 * count must be released later — so the table can exceed its bound only by
 * the number of addresses holding connections, which maxConnections bounds.
 */
export class PerIpTable {
  readonly #map = new Map<string, IpEntry>();
  readonly #max: number;
  /**
   * The entry last in the Map's order. Touching it again needs no move: one client (or one NAT)
   * handshaking over and over would otherwise delete and re-add the table's only entry each time,
   * and V8 shrinks and regrows the Map's storage around that (about 150 bytes a touch).
   */
  #newest: IpEntry | undefined;

  constructor(maxEntries = DEFAULT_MAX_ENTRIES) {
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The entry for `key`, created when missing, marked most recently used. */
  entry(key: string): IpEntry {
    const map = this.#map;
    let e = map.get(key);
    if (e !== undefined) {
      if (e !== this.#newest) {
        map.delete(key);
        map.set(key, e);
        this.#newest = e;
      }
      return e;
    }
    if (map.size >= this.#max) this.#evict();
    e = { key, conns: 0, tokens: 0, stamp: 0 };
    map.set(key, e);
    this.#newest = e;
    return e;
  }

  get(key: string): IpEntry | undefined {
    return this.#map.get(key);
  }

  #evict(): void {
    const map = this.#map;
    for (let i = 0; i < EVICTION_PROBES; i++) {
      const oldest = map.values().next();
      if (oldest.done === true) return;
      const e = oldest.value;
      map.delete(e.key);
      if (e.conns === 0) return;
      map.set(e.key, e);
    }
  }
}

/**
 * The key a client address is limited under: IPv4 as is (IPv4-mapped IPv6
 * unwrapped), IPv6 by its /64 — one host usually owns a whole /64, and
 * limiting single IPv6 addresses would limit nothing.
 */
export function limitKey(address: string): string {
  // Idempotent: a key handed on (to a cluster primary, to Redis) may be keyed again.
  if (!address.includes(':') || address.endsWith('::/64')) return address;
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  return prefix64(address);
}

function prefix64(address: string): string {
  const zone = address.indexOf('%');
  const a = (zone === -1 ? address : address.slice(0, zone)).toLowerCase();
  const gap = a.indexOf('::');
  let groups: string[];
  if (gap === -1) {
    groups = a.split(':');
  } else {
    const head = gap === 0 ? [] : a.slice(0, gap).split(':');
    const tailText = a.slice(gap + 2);
    const tail = tailText === '' ? [] : tailText.split(':');
    // An embedded IPv4 tail ("::1.2.3.4") takes two groups.
    const tailGroups = tail.length > 0 && tail[tail.length - 1]!.includes('.') ? tail.length + 1 : tail.length;
    groups = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tailGroups)).fill('0'), ...tail];
  }
  const out: string[] = [];
  for (let i = 0; i < 4; i++) out.push((groups[i] ?? '0').replace(/^0+(?=.)/, ''));
  return `${out.join(':')}::/64`;
}
