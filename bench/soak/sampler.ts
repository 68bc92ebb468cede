// What the gateway looks like at one instant: memory and descriptors from
// /proc, heap, handles and event-loop lag from its own /metrics, sessions and
// totals from /api/stats. Read every few seconds through the soak.
import { readdirSync, readFileSync } from 'node:fs';
import { cpuMicros, rssKiB } from '../suite/proc.js';
import type { Admin } from './admin.js';

export interface Sample {
  /** Seconds since the load started (negative: before it). */
  readonly t: number;
  /** ms since the epoch. */
  readonly at: number;
  /** VmRSS of the gateway process, MiB. */
  readonly rssMiB: number;
  /** nodejs_heap_size_used_bytes, MiB. */
  readonly heapUsedMiB: number;
  /** nodejs_active_handles_total: handles with a JavaScript owner (sockets, servers, timers with ref). */
  readonly handles: number;
  /** nodejs_active_resources_total: everything keeping the event loop alive, the bare TCP handles of the relay included. */
  readonly resources: number;
  /** Entries of /proc/PID/fd. */
  readonly fds: number;
  /** Relayed WebSocket sessions (/api/stats connections.active). */
  readonly sessions: number;
  /** nodejs_eventloop_lag_p99_seconds, ms: prom-client resets its histogram on every scrape, so this covers the time since the previous sample. */
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  /** utime + stime of the gateway so far, seconds. */
  readonly cpuSeconds: number;
  /** Totals since the gateway started. */
  readonly messages: number;
  readonly accepted: number;
  readonly closes: Readonly<Record<string, number>>;
  readonly pings: { readonly sent: number; readonly answered: number; readonly timedOut: number };
  readonly reloads: { readonly success: number; readonly failure: number };
}

interface Stats {
  connections?: { active?: number };
  messages?: { upstream?: number; downstream?: number };
  handshakes?: { accepted?: number };
  closes?: Record<string, number>;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Whether the process still exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

export async function sample(admin: Admin, pid: number, startedAt: number): Promise<Sample> {
  const at = Date.now();
  const [m, stats] = await Promise.all([admin.metrics(), admin.json<Stats>('/api/stats')]);
  const s = stats.body;
  const MiB = 1024 * 1024;
  return {
    t: (at - startedAt) / 1000,
    at,
    rssMiB: rssKiB([pid]) / 1024,
    heapUsedMiB: m.value('nodejs_heap_size_used_bytes') / MiB,
    handles: m.value('nodejs_active_handles_total'),
    resources: m.value('nodejs_active_resources_total'),
    fds: fdCount(pid),
    sessions: s.connections?.active ?? NaN,
    lagP99Ms: m.value('nodejs_eventloop_lag_p99_seconds') * 1000,
    lagMaxMs: m.value('nodejs_eventloop_lag_max_seconds') * 1000,
    cpuSeconds: cpuMicros([pid]) / 1e6,
    messages: (s.messages?.upstream ?? 0) + (s.messages?.downstream ?? 0),
    accepted: s.handshakes?.accepted ?? 0,
    closes: s.closes ?? {},
    pings: {
      sent: m.value('wsgate_pings_total', 'result="sent"'),
      answered: m.value('wsgate_pings_total', 'result="answered"'),
      timedOut: m.value('wsgate_pings_total', 'result="timed_out"'),
    },
    reloads: { success: m.value('wsgate_config_reloads_total', 'result="success"'), failure: m.value('wsgate_config_reloads_total', 'result="failure"') },
  };
}
