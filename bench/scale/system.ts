// What the machine says: CPU time (per process and in total), memory, sockets,
// limits, and where processes may run (taskset).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { commandOutput, cpuMicros, rssKiB } from '../suite/proc.js';

export { cpuMicros, rssKiB };

/** CPUs a process may run on, as taskset takes them ("0", "1", "0,1"); undefined: anywhere. */
export type Cpus = string | undefined;

/** `argv` run through `taskset -c cpus` when pinned. */
export function pinned(cpus: Cpus, argv: readonly string[]): string[] {
  return cpus === undefined ? [...argv] : ['taskset', '-c', cpus, ...argv];
}

/**
 * Moves this process (every thread) to `cpus`; children started afterwards inherit it, so every
 * child is started with an explicit placement. Throws when taskset cannot do it: a placement that
 * silently did not happen would make the figures lie.
 */
export function pinSelf(cpus: string): void {
  if (commandOutput('taskset', ['-a', '-p', '-c', cpus, String(process.pid)]) === undefined) {
    throw new Error(`taskset could not move this process to CPU ${cpus} (is taskset installed?)`);
  }
}

/** Every CPU of the machine (not availableParallelism(): that shrinks once this process is pinned). */
export function cpuCount(): number {
  return cpus().length;
}

export function allCpus(): string {
  return `0-${cpuCount() - 1}`;
}

const TICK_US = 10_000; // /proc/stat counts in USER_HZ, which is 100 on Linux

/**
 * Busy time of each CPU so far, µs, softirq included: on loopback the kernel does much of a
 * packet's receive work as a softirq on the sender's CPU, in no process's figures (or in whichever
 * process it interrupted), but part of every message's cost.
 */
export function busyByCpu(): number[] {
  const out: number[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const f = (m[2] as string).trim().split(/\s+/).slice(0, 8).map(Number);
    out[Number(m[1])] = (f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0)) * TICK_US;
  }
  return out;
}

/**
 * CPU so far (µs) of every process outside this one's tree (everything a scenario starts descends
 * from it), kernel threads included: other work on a shared machine, which takes CPU from what is
 * measured. A process that exits meanwhile is missed; one that starts meanwhile counts in full.
 */
export function foreignCpu(): Map<number, number> {
  const stats = new Map<number, { ppid: number; us: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    stats.set(Number(entry), { ppid: Number(f[1]), us: (Number(f[11]) + Number(f[12])) * TICK_US });
  }
  const ours = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = stats.get(p)?.ppid ?? 0, hops++) if (p === process.pid) return true;
    return false;
  };
  const out = new Map<number, number>();
  for (const [pid, st] of stats) if (!ours(pid)) out.set(pid, st.us);
  return out;
}

/** The kernel's TCP socket figures (/proc/net/sockstat): sockets in use, in TIME_WAIT, and buffer pages. */
export function tcpSockstat(): { inuse: number; timeWait: number; memPages: number } {
  const text = readFileSync('/proc/net/sockstat', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^TCP:.*\\b${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { inuse: field('inuse'), timeWait: field('tw'), memPages: field('mem') };
}

/** net.ipv4.ip_local_port_range: the local ports connect() picks from, per destination address:port. */
export function ephemeralPorts(): { low: number; high: number; size: number } {
  const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [number, number];
  return { low, high, size: high - low + 1 };
}

/** The hard open-files limit of this process (children inherit it; Node raises its soft limit to it). */
export function openFileLimit(): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === 'unlimited' ? Infinity : Number(m?.[1] ?? NaN);
}

/** Established TCP connections whose remote end is 127.0.0.1:port (the gateway's upstream connections to one backend). */
export function establishedTo(port: number): number {
  const r = spawnSync('ss', ['-Htn', 'state', 'established', 'dst', `127.0.0.1:${port}`], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error !== undefined || r.status !== 0) return NaN;
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

/** One line about the machine, for the report: results from machines several times apart are not comparable. */
export function machineLine(): string {
  let cpu = 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: keep "unknown"
  }
  const load = loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
  return `${cpuCount()} CPUs (${cpu}), Linux ${release()}, node ${process.version}, open-file limit ${openFileLimit()} per process; load average before the run: ${load}`;
}
