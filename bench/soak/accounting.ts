// Every close a client saw, and every warning or error the gateway logged,
// matched against the scripted faults (faults.ts). What no fault explains is
// listed: the soak passes only with none of it (warnings are listed, errors
// fail the run).
//
// Closes (docs/configuration.md, "Status and close codes"):
// - a drain closes its target's sessions with 1012 over drainPeriod;
// - a killed backend's sessions get 1011 from the gateway (or, seen from a
//   client, a connection lost without a close frame: 1006 / reset), and a
//   handshake meeting it after its retries may get 502;
// - a quiet connection (it only answers pings, which are not data) open for
//   limits.idleTimeout gets 1001 from the idle sweeper;
// - a slow consumer that stopped reading past the keepalive's ping and pong
//   timeout gets 1001, or is cut (1006) when not even the close frame fits;
// - churn cycles end with the client's own 1000 and are not failures at all,
//   nor are the closes of the graceful stop at the end.
// The closes a drain or a kill explains are bounded by the sessions its
// target held when it happened (read from GET /api/connections just before):
// any excess is unexpected.
import { readFileSync } from 'node:fs';
import type { FaultRecord } from './faults.js';
import type { CloseRecord } from './load-protocol.js';

/** Room above a fault's session count: sessions opened between the count and the fault. */
const BOUND_SLACK = 20;
const BOUND_SLACK_SHARE = 0.05;
/** A close seen a little before the fault's record: the record is written once the fault's call returns. */
const EARLY_MS = 1000;
/** Log lines a dead backend causes: failed dials, ejection, failed health checks, until it is back and checked healthy. */
const KILL_LOG_SLACK_MS = 20_000;

export interface CloseRow {
  readonly explanation: string;
  readonly role: string;
  readonly kind: string;
  readonly context: string;
  readonly n: number;
  /** Seconds since the start of the load: the first and last time seen. */
  readonly firstT: number;
  readonly lastT: number;
}

export interface FaultTally {
  readonly kind: string;
  readonly t: number;
  readonly detail: string;
  readonly sessions: number;
  readonly explained: number;
  readonly bound: number;
  readonly excess: number;
}

export interface CloseAccounting {
  readonly rows: readonly CloseRow[];
  readonly faults: readonly FaultTally[];
  readonly expected: number;
  readonly unexpected: number;
}

function closeCode(kind: string): number | undefined {
  const m = /^closed with code (\d+)/.exec(kind);
  if (m) return Number(m[1]);
  return kind === 'reset' ? 1006 : undefined;
}

function within(f: FaultRecord, t: number, slackMs = 0): boolean {
  return t >= f.at - EARLY_MS && t <= (f.until ?? f.at) + slackMs;
}

/** The fault that explains one record, or a reason that needs none, or undefined. */
function explain(r: CloseRecord, faults: readonly FaultRecord[]): FaultRecord | string | undefined {
  const code = closeCode(r.kind);
  if (r.role === 'slow' && (r.context === 'long pause' || r.context === 'after long pause') && (code === 1001 || code === 1006)) {
    return 'slow consumer past the keepalive (pong timeout)';
  }
  if (r.role === 'chatty' && r.context === 'quiet past idleTimeout' && code === 1001) {
    return 'idle timeout (limits.idleTimeout: no data either way; keepalive pings do not count)';
  }
  if (code === 1012) return faults.find((f) => f.kind === 'drain' && within(f, r.t));
  if (code === 1011 || code === 1006 || r.kind === 'handshake status 502') return faults.find((f) => f.kind === 'kill' && within(f, r.t));
  return undefined;
}

export function accountCloses(records: readonly CloseRecord[], faults: readonly FaultRecord[], startedAt: number): CloseAccounting {
  const rows = new Map<string, { explanation: string; role: string; kind: string; context: string; n: number; first: number; last: number }>();
  const perFault = new Map<FaultRecord, number>();
  for (const r of records) {
    const why = explain(r, faults);
    let explanation: string;
    if (why === undefined) explanation = 'unexpected';
    else if (typeof why === 'string') explanation = why;
    else {
      explanation = `${why.kind} at ${why.t.toFixed(0)} s`;
      perFault.set(why, (perFault.get(why) ?? 0) + r.n);
    }
    const key = `${explanation}|${r.role}|${r.kind}|${r.context}`;
    const row = rows.get(key);
    if (row === undefined) rows.set(key, { explanation, role: r.role, kind: r.kind, context: r.context, n: r.n, first: r.t, last: r.t });
    else {
      row.n += r.n;
      row.first = Math.min(row.first, r.t);
      row.last = Math.max(row.last, r.t);
    }
  }
  const tallies: FaultTally[] = faults
    .filter((f) => f.kind === 'drain' || f.kind === 'kill')
    .map((f) => {
      const sessions = f.sessions ?? 0;
      const explained = perFault.get(f) ?? 0;
      const bound = sessions + Math.max(BOUND_SLACK, Math.ceil(sessions * BOUND_SLACK_SHARE));
      return { kind: f.kind, t: f.t, detail: f.detail, sessions, explained, bound, excess: Math.max(0, explained - bound) };
    });
  const out: CloseRow[] = [...rows.values()]
    .map((r) => ({
      explanation: r.explanation,
      role: r.role,
      kind: r.kind,
      context: r.context,
      n: r.n,
      firstT: Math.round((r.first - startedAt) / 1000),
      lastT: Math.round((r.last - startedAt) / 1000),
    }))
    .sort((a, b) => (a.explanation === 'unexpected' ? -1 : 0) - (b.explanation === 'unexpected' ? -1 : 0) || b.n - a.n);
  const unexpectedRows = out.filter((r) => r.explanation === 'unexpected').reduce((s, r) => s + r.n, 0);
  const excess = tallies.reduce((s, f) => s + f.excess, 0);
  const total = out.reduce((s, r) => s + r.n, 0);
  return { rows: out, faults: tallies, unexpected: unexpectedRows + excess, expected: total - unexpectedRows - excess };
}

// --- the gateway's log -------------------------------------------------------

export interface LogRow {
  readonly level: string;
  readonly msg: string;
  readonly lines: number;
  readonly explained: number;
  /** What explained them, when any did. */
  readonly by: string;
}

export interface LogAccounting {
  readonly lines: number;
  readonly byLevel: Readonly<Record<string, number>>;
  /** Warnings and errors by message; info lines by message too, for the record. */
  readonly rows: readonly LogRow[];
  readonly unexplainedErrors: readonly string[];
  readonly unexplainedErrorCount: number;
  readonly unexplainedWarnings: readonly string[];
  readonly unexplainedWarningCount: number;
}

const LEVELS: Readonly<Record<number, string>> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** Unexplained lines kept verbatim in the report. */
const KEEP_LINES = 20;

/** Warnings and errors a fault may cause, by message. */
const LOG_RULES: ReadonlyArray<{ readonly msg: RegExp; readonly fault: FaultRecord['kind']; readonly slackMs: number }> = [
  { msg: /^upstream attempt failed$/, fault: 'kill', slackMs: KILL_LOG_SLACK_MS },
  { msg: /^target ejected$/, fault: 'kill', slackMs: KILL_LOG_SLACK_MS },
  { msg: /^target unhealthy: /, fault: 'kill', slackMs: KILL_LOG_SLACK_MS },
];

function explainLine(level: number, msg: string, time: number, faults: readonly FaultRecord[]): string | undefined {
  if (level < 40) return 'info';
  for (const rule of LOG_RULES) {
    if (!rule.msg.test(msg)) continue;
    const f = faults.find((x) => x.kind === rule.fault && within(x, time, rule.slackMs));
    if (f !== undefined) return `${f.kind} at ${f.t.toFixed(0)} s`;
  }
  return undefined;
}

/** Classifies the gateway's JSON log (stdout) and its stderr, whose every line counts as an error. */
export function accountLog(logFile: string, stderrFile: string, faults: readonly FaultRecord[]): LogAccounting {
  const byLevel: Record<string, number> = {};
  const rows = new Map<string, { level: string; msg: string; lines: number; explained: number; by: Set<string> }>();
  const errors: string[] = [];
  const warnings: string[] = [];
  let errorCount = 0;
  let warningCount = 0;
  let lines = 0;
  const add = (level: string, msg: string, by: string | undefined, raw: string): void => {
    byLevel[level] = (byLevel[level] ?? 0) + 1;
    const key = `${level}|${msg}`;
    let row = rows.get(key);
    if (row === undefined) rows.set(key, (row = { level, msg, lines: 0, explained: 0, by: new Set() }));
    row.lines++;
    if (by !== undefined) {
      row.explained++;
      if (by !== 'info') row.by.add(by.replace(/ at \d+ s$/, ''));
      return;
    }
    if (level === 'warn') {
      warningCount++;
      if (warnings.length < KEEP_LINES) warnings.push(raw.slice(0, 500));
    } else {
      errorCount++;
      if (errors.length < KEEP_LINES) errors.push(raw.slice(0, 500));
    }
  };
  for (const raw of readFileSync(logFile, 'utf8').split('\n')) {
    if (raw.trim() === '') continue;
    lines++;
    let line: { level?: unknown; msg?: unknown; time?: unknown };
    try {
      line = JSON.parse(raw) as typeof line;
    } catch {
      add('error', '(not a JSON line)', undefined, raw);
      continue;
    }
    const level = typeof line.level === 'number' ? line.level : 50;
    const msg = typeof line.msg === 'string' ? line.msg : '(no msg)';
    const time = typeof line.time === 'number' ? line.time : 0;
    // Rows group lines by message: free text after a colon (a reason) would make one row per line.
    const name = msg.replace(/^(target unhealthy|reload rejected): .*/, '$1: …');
    add(LEVELS[level] ?? String(level), name, explainLine(level, msg, time, faults), raw);
  }
  for (const raw of readFileSync(stderrFile, 'utf8').split('\n')) {
    if (raw.trim() === '') continue;
    lines++;
    add('error', '(stderr)', undefined, raw);
  }
  const order = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
  const out: LogRow[] = [...rows.values()]
    .map((r) => ({ level: r.level, msg: r.msg, lines: r.lines, explained: r.explained, by: [...r.by].join(', ') }))
    .sort((a, b) => order.indexOf(a.level) - order.indexOf(b.level) || b.lines - a.lines);
  return {
    lines,
    byLevel,
    rows: out,
    unexplainedErrors: errors,
    unexplainedErrorCount: errorCount,
    unexplainedWarnings: warnings,
    unexplainedWarningCount: warningCount,
  };
}
