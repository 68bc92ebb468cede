// Processes of the suite (echo backend, proxies) and what /proc says about them.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const TAIL_BYTES = 4096;
const live = new Set<ChildProcess>();

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** The last few KiB of stdout+stderr, for error messages. */
  output(): string;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL (with descendants) if it has not exited in time. */
  stop(): Promise<void>;
}

export function spawnChild(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  const proc = spawn(command, [...args], { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let done = false;
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => {
      done = true;
      live.delete(proc);
      resolve();
    });
    proc.once('error', (err) => {
      keep(Buffer.from(`${err.message}\n`));
      done = true;
      live.delete(proc);
      resolve();
    });
  });
  const pid = proc.pid ?? -1;
  return {
    name,
    pid,
    output: () => tail,
    exited,
    hasExited: () => done,
    stop: async () => {
      if (done) return;
      const family = [pid, ...descendants(pid)];
      proc.kill('SIGTERM');
      const timer = setTimeout(() => {
        for (const p of family) killQuietly(p, 'SIGKILL');
      }, 5000);
      await exited;
      clearTimeout(timer);
      // nginx's worker follows its master; make sure nothing is left behind.
      for (const p of family) killQuietly(p, 'SIGKILL');
    },
  };
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Last resort on exit: no proxy or backend may outlive the suite. */
export function killAllChildren(): void {
  for (const proc of live) {
    if (proc.pid !== undefined) for (const p of [proc.pid, ...descendants(proc.pid)]) killQuietly(p, 'SIGKILL');
  }
  live.clear();
}

/** A port that was free a moment ago (the proxies need theirs before they start). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => resolve(false));
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
  });
}

/** Waits until `port` accepts TCP connections; throws with the child's output if it exits or takes too long. */
export async function waitForPort(child: Child, port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.hasExited()) throw new Error(`${child.name} exited before listening:\n${child.output().trim()}`);
    if (await tryConnect(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${child.name} did not listen on port ${port} within ${timeoutMs / 1000} s:\n${child.output().trim()}`);
}

interface ProcStat {
  readonly ppid: number;
  readonly ticks: number;
  /** Of which in the kernel (stime). */
  readonly sysTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), sysTicks: Number(f[12]) };
}

export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat === undefined) continue;
    const list = children.get(stat.ppid);
    if (list) list.push(Number(entry));
    else children.set(stat.ppid, [Number(entry)]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift() as number) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** `pid` and its descendants: read once before a load, so the load is not slowed by a scan of /proc. */
export function family(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

/** utime+stime of these processes (all their threads), in microseconds. */
export function cpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const p of pids) ticks += readStat(p)?.ticks ?? 0;
  return (ticks * 1_000_000) / ticksPerSecond();
}

/** stime of these processes (all their threads): their CPU time in the kernel, in microseconds. */
export function kernelMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const p of pids) ticks += readStat(p)?.sysTicks ?? 0;
  return (ticks * 1_000_000) / ticksPerSecond();
}

/** VmRSS of these processes, in KiB. */
export function rssKiB(pids: readonly number[]): number {
  let total = 0;
  for (const p of pids) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      total += m ? Number(m[1]) : 0;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Interrupt and softirq time of one CPU, µs. On loopback, the kernel does much of a packet's
 * receive work as a softirq on the sender's CPU, and that time is in no process's figures.
 */
export function cpuIrqMicros(cpu: number): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${cpu} `));
    const f = (line ?? '').trim().split(/\s+/);
    // cpuN user nice system idle iowait irq softirq steal …
    return ((Number(f[6]) || 0) + (Number(f[7]) || 0)) * (1_000_000 / ticksPerSecond());
  } catch {
    return 0;
  }
}

/**
 * All the work one CPU did, µs: user, nice, system, interrupt, softirq and steal time, whatever
 * process it was for (on a shared machine, other work on the proxy's core shows here and not in
 * the proxy's own figures).
 */
export function cpuBusyMicros(cpu: number): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${cpu} `));
    const f = (line ?? '').trim().split(/\s+/).map(Number);
    // cpuN user nice system idle iowait irq softirq steal …
    const busy = [1, 2, 3, 6, 7, 8].reduce((sum, i) => sum + (f[i] || 0), 0);
    return busy * (1_000_000 / ticksPerSecond());
  } catch {
    return 0;
  }
}

/** stdout+stderr of a command (`nginx -v` answers on stderr), or undefined when it cannot run or fails. */
export function commandOutput(command: string, args: readonly string[], timeoutMs = 10_000): string | undefined {
  const r = spawnSync(command, [...args], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error !== undefined || r.status !== 0) return undefined;
  return `${r.stdout}${r.stderr}`;
}
