// Endings seen by a load process's clients, counted per second and kind, so
// that a reconnect storm of thousands of closes crosses the IPC channel as a
// few records, each still precise enough (one second) to be matched with the
// fault that caused it.
import type { CloseRecord, LoadRole } from './load-protocol.js';

interface Bucket {
  t: number;
  role: LoadRole;
  kind: string;
  context: string;
  n: number;
}

export class CloseTally {
  #buckets = new Map<string, Bucket>();

  add(role: LoadRole, kind: string, context: string): void {
    const now = Date.now();
    const key = `${Math.floor(now / 1000)}|${role}|${kind}|${context}`;
    const b = this.#buckets.get(key);
    if (b !== undefined) b.n++;
    else this.#buckets.set(key, { t: now, role, kind, context, n: 1 });
  }

  /** The records since the last call. */
  take(): CloseRecord[] {
    const out = [...this.#buckets.values()];
    this.#buckets.clear();
    return out;
  }
}
