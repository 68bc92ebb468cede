import type { LatencySummary } from './histogram.js';
import type { LoadMode } from './options.js';
import type { BenchResult, LoadProgress } from './run-load.js';

const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function int(n: number): string {
  return intFormat.format(n);
}

/** Milliseconds with microsecond resolution, trailing zeros dropped. */
export function ms(n: number): string {
  return `${Number(n.toFixed(n >= 100 ? 1 : 3))} ms`;
}

function megabytes(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(bytesPerSecond >= 1e8 ? 0 : 2)} MB/s`;
}

function describeMode(mode: LoadMode, r: BenchResult): string {
  switch (mode.kind) {
    case 'open':
      return `open loop, ${int(mode.rate)} msg/s in total over ${int(r.connections)} connections`;
    case 'closed':
      return `closed loop, ${mode.inflight} in flight on each of ${int(r.connections)} connections`;
    case 'idle':
      return `idle, ${int(r.connections)} connections held open`;
    case 'churn':
      return mode.rate === undefined
        ? `churn, ${int(r.connections)} concurrent connect/echo/close loops`
        : `churn, ${int(mode.rate)} connect/echo/close cycles/s on a fixed schedule, at most ${int(r.connections)} at once`;
  }
}

function latencyLine(label: string, s: LatencySummary, what: string): string {
  const head = label.padEnd(13);
  if (s.count === 0) return `${head}none`;
  return `${head}p50 ${ms(s.p50)}  p90 ${ms(s.p90)}  p99 ${ms(s.p99)}  p99.9 ${ms(s.p999)}  max ${ms(s.max)}  (${int(s.count)} ${what})`;
}

/** The human-readable final report. */
export function formatReport(r: BenchResult): string {
  const lines: string[] = [];
  const payload = r.mode.kind === 'idle' ? '' : `, ${int(r.size)} B ${r.binary ? 'binary' : 'text'}`;
  const procs = r.workers > 1 ? `, ${r.workers} processes` : '';
  lines.push(`${'target'.padEnd(13)}${r.target}`);
  const warm = r.warmupMs > 0 ? ` after ${r.warmupMs / 1000} s of warm-up` : '';
  lines.push(`${'load'.padEnd(13)}${describeMode(r.mode, r)}${payload}, ${r.durationMs / 1000} s${warm}${procs}`);
  if (r.mode.kind !== 'churn') lines.push(`${'connections'.padEnd(13)}${int(r.connectionsOpened)} opened, ${int(r.connectionsFailed)} failed`);
  lines.push(latencyLine('handshake', r.handshakes.latency, 'handshakes'));
  if (r.mode.kind !== 'idle') lines.push(latencyLine('round trip', r.latency, 'echoes'));
  if (r.mode.kind === 'churn') {
    lines.push(`${'handshakes'.padEnd(13)}${int(r.handshakes.perSecond)}/s (${int(r.handshakes.count)} in ${(r.elapsedMs / 1000).toFixed(1)} s)`);
  } else if (r.mode.kind !== 'idle') {
    lines.push(
      `${'throughput'.padEnd(13)}${int(r.messages.perSecond)} msg/s, ${megabytes(r.messages.bytesPerSecond)} ` +
        `(${int(r.messages.sent)} sent, ${int(r.messages.received)} echoed in ${(r.elapsedMs / 1000).toFixed(1)} s)`,
    );
  }
  if (r.sendLag !== null) lines.push(`${'send lag'.padEnd(13)}p99 ${ms(r.sendLag.p99)}, max ${ms(r.sendLag.max)} (tool's own delay against its schedule)`);
  const kinds = Object.entries(r.errors);
  if (kinds.length === 0) lines.push(`${'errors'.padEnd(13)}none`);
  else kinds.forEach(([kind, n], i) => lines.push(`${(i === 0 ? 'errors' : '').padEnd(13)}${kind}: ${int(n)}`));
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return `${lines.join('\n')}\n`;
}

/** One line for a TTY, rewritten in place. */
export function formatProgress(p: LoadProgress, previousReceived: number, intervalMs: number): string {
  const c = p.counters;
  const rate = ((c.received - previousReceived) * 1000) / intervalMs;
  const p99 = p.p99 > 0 ? ms(p.p99) : '-';
  return (
    `${p.phase.padEnd(10)} ${(p.elapsedMs / 1000).toFixed(1).padStart(5)} s  open ${int(c.open)}  ` + `${int(rate)} msg/s  errors ${int(c.errors)}  p99 ${p99}`
  );
}
