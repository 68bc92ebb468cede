// The soak: `node --import tsx bench/soak.ts [--minutes 15] [--connections 2000] [--out DIR]`.
// One gateway under 15 minutes of mixed load and scripted faults (bench/soak/
// run.ts and faults.ts), sampled every 5 s; at the end the slopes of its
// memory, handles and descriptors, every close the clients saw and every
// warning or error it logged, each matched to a fault or listed as unexpected.
// Writes bench/results/soak-<timestamp>.{json,md,png}; exit status 1 when a
// check fails. See bench/README.md, "Soak".
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAllChildren } from './suite/proc.js';
import { machineLine } from './scale/system.js';
import { accountCloses, accountLog } from './soak/accounting.js';
import { killAllLoads } from './soak/load-process.js';
import { plot } from './soak/plot.js';
import { killAllGateways } from './soak/processes.js';
import { checksTable, closesTable, faultTable, gatewayClosesTable, logTable, rows, rowsTable, slope, slopesTable } from './soak/report.js';
import type { Check, Slope } from './soak/report.js';
import { runSoak } from './soak/run.js';
import type { SoakResult } from './soak/run.js';
import { budgetProblems, defaults, slopeWindowMin } from './soak/settings.js';
import type { SoakSettings } from './soak/settings.js';

const USAGE = `usage: node --import tsx bench/soak.ts [options]    (or: npm run soak -- [options])

  One gateway (inspect mode, keepalive pings, metrics on) in front of three
  \`wsgate echo\` backends and a flooding backend, under mixed load with
  scripted faults; sampled every 5 s, reported every 30 s; checks at the end.

  --minutes M       load time after the connections are open (default 15; 1 to 120)
  --connections N   chatty connections in all, a tenth of them quiet (default 2000)
  --loaders N       processes the chatty connections are split over (default 4)
  --rate R          messages/s per sending connection (default 0.5)
  --churn-rate R    handshake churn cycles/s (default 20)
  --slow N          slow consumers (default connections / 125, at least 4)
  --vanish N        connections of each vanishing process (default connections / 20, at least 10)
  --wsgate FILE     the gateway's entry point (default dist/main.js when built,
                    else src/main.ts under tsx)
  --out DIR         where the results go (default bench/results)
  --keep-log        also copy the gateway's log next to the results
`;

const root = fileURLToPath(new URL('..', import.meta.url));

function fail(message: string): never {
  process.stderr.write(`soak: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function num(name: string, raw: string | undefined, fallback: number, min: number, max: number, whole = true): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!(whole ? /^\d+$/ : /^\d+(\.\d+)?$/).test(raw) || n < min || n > max) fail(`--${name}: must be a ${whole ? 'whole ' : ''}number from ${min} to ${max}`);
  return n;
}

interface Parsed {
  readonly settings: SoakSettings;
  readonly wsgate: string;
  readonly out: string;
  readonly keepLog: boolean;
}

function parse(argv: readonly string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        minutes: { type: 'string' },
        connections: { type: 'string' },
        loaders: { type: 'string' },
        rate: { type: 'string' },
        'churn-rate': { type: 'string' },
        slow: { type: 'string' },
        vanish: { type: 'string' },
        wsgate: { type: 'string' },
        out: { type: 'string' },
        'keep-log': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const v = parsed.values;
  if (v.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const connections = num('connections', v.connections, 2000, 10, 100_000);
  const d = defaults(connections);
  const settings: SoakSettings = {
    ...d,
    minutes: num('minutes', v.minutes, 15, 1, 120, false),
    connections,
    loaders: num('loaders', v.loaders, 4, 1, 32),
    ratePerConnection: num('rate', v.rate, d.ratePerConnection, 0, 100, false),
    churnRate: num('churn-rate', v['churn-rate'], d.churnRate, 0, 1000, false),
    slow: num('slow', v.slow, d.slow, 0, 1000),
    vanish: num('vanish', v.vanish, d.vanish, 1, 10_000),
  };
  const problems = budgetProblems(settings);
  if (problems.length > 0) fail(`cannot run as asked:\n  ${problems.join('\n  ')}`);
  const builtOrSource = existsSync(join(root, 'dist/main.js')) ? 'dist/main.js' : 'src/main.ts';
  const wsgate = resolve(root, v.wsgate ?? builtOrSource);
  if (!existsSync(wsgate)) fail(`--wsgate: ${wsgate} does not exist`);
  return { settings, wsgate, out: resolve(v.out ?? join(root, 'bench/results')), keepLog: v['keep-log'] === true };
}

/** The figures, the checks and the markdown of one run. */
function analyse(
  r: SoakResult,
  s: SoakSettings,
): { slopes: Slope[]; checks: Check[]; accounting: ReturnType<typeof accountCloses>; log: ReturnType<typeof accountLog> } {
  const last = r.samples[r.samples.length - 1];
  const windowMin = slopeWindowMin(s);
  const from = (last?.t ?? 0) - windowMin * 60;
  const win = r.samples.filter((x) => x.t >= from - 0.5);
  const pts = (f: (x: (typeof win)[number]) => number): Array<[number, number]> => win.map((x) => [x.t / 60, f(x)]);
  const slopes = [
    slope(
      'RSS',
      'MiB',
      pts((x) => x.rssMiB),
      windowMin,
      s.flatPct,
      true,
    ),
    slope(
      'open file descriptors',
      'count',
      pts((x) => x.fds),
      windowMin,
      s.flatPct,
      true,
    ),
    slope(
      'active handles',
      'count',
      pts((x) => x.handles),
      windowMin,
      s.flatPct,
      true,
    ),
    slope(
      'active resources',
      'count',
      pts((x) => x.resources),
      windowMin,
      s.flatPct,
      true,
    ),
    slope(
      'heap used',
      'MiB',
      pts((x) => x.heapUsedMiB),
      windowMin,
      s.flatPct,
      false,
    ),
    slope(
      'sessions',
      'count',
      pts((x) => x.sessions),
      windowMin,
      s.flatPct,
      false,
    ),
  ];
  const accounting = accountCloses(r.closes, r.faults, r.startedAt);
  const log = accountLog(r.logFile, r.stderrFile, r.faults);
  const byKind = (k: string): typeof r.faults => r.faults.filter((f) => f.kind === k);
  const faultCheck = (name: string, kinds: readonly string[]): Check => {
    const all = kinds.flatMap((k) => byKind(k));
    const bad = all.filter((f) => !f.ok);
    return {
      name,
      ok: bad.length === 0,
      detail: `${all.length - bad.length} of ${all.length}${bad.length === 0 ? '' : `; failed: ${bad.map((f) => `${f.t.toFixed(0)} s ${f.detail}`).join('; ')}`}`,
    };
  };
  const loadFailures = r.loads.filter((l) => l.failure !== undefined);
  const badEchoes = r.loads.reduce((a, l) => a + l.counts.badEchoes, 0);
  const fmtSlope = (x: Slope): string => `${x.changePct.toFixed(2)}% of the mean over ${+x.windowMin.toFixed(2)} min`;
  const checks: Check[] = [
    ...slopes.filter((x) => x.judged).map((x) => ({ name: `${x.metric}: flat`, ok: x.flat, detail: fmtSlope(x) })),
    {
      name: 'no unexpected close',
      ok: accounting.unexpected === 0,
      detail: `${accounting.unexpected} unexpected, ${accounting.expected} explained by the faults`,
    },
    {
      name: 'no unexplained error in the gateway log',
      ok: log.unexplainedErrorCount === 0,
      detail: `${log.unexplainedErrorCount} error lines unexplained (${log.unexplainedWarningCount} warnings unexplained, not judged)`,
    },
    faultCheck('reloads applied (seen in GET /api/config)', ['reload']),
    faultCheck('drains and undrains answered', ['drain', 'undrain']),
    faultCheck('backend killed and restarted', ['kill', 'restart']),
    faultCheck('frozen clients reaped by the keepalive before SIGKILL', ['vanish reaped']),
    { name: 'echoes came back intact and in order', ok: badEchoes === 0, detail: `${badEchoes} bad echoes` },
    { name: 'load processes ran to the end', ok: loadFailures.length === 0, detail: loadFailures.map((l) => l.failure).join('; ') || 'all' },
    { name: 'the gateway ran to the end', ok: r.gatewayExit === undefined, detail: r.gatewayExit ?? 'yes' },
    {
      name: 'the admin API answered every sample',
      ok: r.sampleFailures.length === 0,
      detail: r.sampleFailures.slice(0, 3).join('; ') || `${r.samples.length} samples`,
    },
    {
      name: 'sessions released once the load stopped',
      ok: r.afterLoad?.sessions === 0,
      detail: `${r.afterLoad?.sessions ?? '?'} sessions after ${r.releaseSeconds.toFixed(1)} s; fds ${r.idle.fds} idle → ${r.afterLoad?.fds ?? '?'}; RSS ${r.idle.rssMiB.toFixed(1)} → ${r.afterLoad?.rssMiB.toFixed(1) ?? '?'} MiB`,
    },
  ];
  return { slopes, checks, accounting, log };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { settings: s, wsgate, out, keepLog } = parse(argv);
  const machine = machineLine();
  const started = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'wsgate-soak-'));
  process.on('exit', () => {
    killAllLoads();
    killAllGateways();
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const wsgateCmd = wsgate.endsWith('.ts') ? [process.execPath, '--import', 'tsx', wsgate] : [process.execPath, wsgate];
  const command = `node --import tsx bench/soak.ts ${argv.join(' ')}`.trim();
  const progress = (l: string): void => void process.stdout.write(`${l}\n`);
  progress(`soak: ${s.minutes} min, ${s.connections} chatty connections; gateway ${relative(root, wsgate)}; ${machine}`);
  const r = await runSoak({ root, tmp, wsgate: wsgateCmd, progress }, s);
  const took = Math.round((Date.now() - started.getTime()) / 1000);
  const { slopes, checks, accounting, log } = analyse(r, s);
  const passed = checks.every((c) => c.ok);
  const table = rows(r.samples, r.faults, s.rowS);
  const first = r.samples[0];
  const last = r.samples[r.samples.length - 1];

  const stamp = started.toISOString().replace(/[:.]/g, '-');
  mkdirSync(out, { recursive: true });
  const base = join(out, `soak-${stamp}`);
  let plotNote = `![RSS and sessions over time](${relative(out, `${base}.png`)})`;
  try {
    await plot(
      `${base}.png`,
      `wsgate soak, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC: ${s.connections} chatty connections, ${s.minutes} min`,
      r.samples,
      r.faults,
    );
  } catch (err) {
    plotNote = `(no plot: ${(err as Error).message.split('\n')[0]})`;
  }
  if (keepLog) copyFileSync(r.logFile, `${base}.gateway.log`);

  const sent = r.loads.reduce((a, l) => a + l.counts.sent, 0);
  const echoed = r.loads.reduce((a, l) => a + l.counts.received, 0);
  const churn = r.loads.find((l) => l.role === 'churn')?.counts;
  const slow = r.loads.find((l) => l.role === 'slow')?.counts;
  const pings =
    first !== undefined && last !== undefined
      ? { sent: last.pings.sent - first.pings.sent, answered: last.pings.answered - first.pings.answered, timedOut: last.pings.timedOut - first.pings.timedOut }
      : undefined;
  const md = [
    `# Soak: ${passed ? 'passed' : 'FAILED'}`,
    '',
    `Made with \`${command}\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC; the run took ${took} s. Machine: ${machine}. ` +
      `Gateway: \`${relative(root, wsgate)}\`${wsgate.endsWith('.ts') ? ' under tsx' : ''}, one process, inspect mode, ` +
      `relay.pingInterval ${s.pingIntervalS}s / pongTimeout ${s.pongTimeoutS}s, limits.idleTimeout ${s.idleTimeoutS}s, metrics on, access log on.`,
    '',
    `Load: ${s.connections} chatty connections from ${s.loaders} processes (${Math.round(s.quietShare * 100)}% quiet, the rest ${s.size}-byte messages at ${s.ratePerConnection}/s each), ` +
      `opened in ${r.rampSeconds.toFixed(1)} s; handshake churn at ${s.churnRate}/s (at most ${s.churnConcurrency} at once); ${s.slow} slow consumers of a flooding backend; ` +
      `a vanishing process of ${s.vanish} connections every 2 min. Faults: a reload every 30 s, echo target 1 drained for 30 s and backend 3 killed for 5 s every 2 min. ` +
      `Slopes over the last ${+slopeWindowMin(s).toFixed(2)} min; flat = the trend changes the value by less than ${s.flatPct}% of its mean over that window.`,
    '',
    '## Every 30 s',
    '',
    rowsTable(table),
    '',
    `Idle before the load: RSS ${r.idle.rssMiB.toFixed(1)} MiB, ${r.idle.fds} fds. ` +
      "Handles: nodejs_active_handles_total / nodejs_active_resources_total (the relay's bare TCP handles count only in the second). " +
      "Loop lag: nodejs_eventloop_lag_p99_seconds, the worst of the 5-s scrapes in the row; Node's histogram behind it samples every 10 ms (prom-client's default) " +
      'and records the whole interval, so an idle process reads about 10–11 ms: the lag is what is above that.',
    '',
    plotNote,
    '',
    '## Summary',
    '',
    checksTable(checks),
    '',
    slopesTable(slopes, s.flatPct),
    '',
    `Messages: ${sent.toLocaleString('en-US')} sent, ${echoed.toLocaleString('en-US')} echoed back (${(sent - echoed).toLocaleString('en-US')} lost with the sessions that faults closed). ` +
      `Churn: ${(churn?.churnCycles ?? 0).toLocaleString('en-US')} cycles closed by the client with 1000, ${churn?.churnSkipped ?? 0} skipped (all slots busy). ` +
      `Slow consumers: ${(slow?.slowPauses ?? 0).toLocaleString('en-US')} pauses, ${((slow?.slowBytes ?? 0) / 1e6).toFixed(0)} MB read. ` +
      (pings === undefined
        ? ''
        : `Keepalive pings: ${pings.sent.toLocaleString('en-US')} sent, ${pings.answered.toLocaleString('en-US')} answered, ${pings.timedOut.toLocaleString('en-US')} timed out.`),
    '',
    '### Closes seen by the clients',
    '',
    closesTable(accounting),
    '',
    faultTable(accounting),
    '',
    first !== undefined && last !== undefined ? gatewayClosesTable(first, last) : '',
    '',
    '### The gateway log',
    '',
    `${log.lines.toLocaleString('en-US')} lines: ${Object.entries(log.byLevel)
      .map(([k, n]) => `${n.toLocaleString('en-US')} ${k}`)
      .join(', ')}.`,
    '',
    logTable(log),
    ...(log.unexplainedErrors.length > 0 ? ['', 'Unexplained error lines (first ones):', '', '```', ...log.unexplainedErrors, '```'] : []),
    ...(log.unexplainedWarnings.length > 0 ? ['', 'Unexplained warnings (first ones):', '', '```', ...log.unexplainedWarnings, '```'] : []),
    '',
    '### Faults',
    '',
    ...r.faults.map((f) => `- ${f.t.toFixed(0)} s: ${f.kind}: ${f.detail}${f.ok ? '' : ' **(failed)**'}`),
  ].join('\n');

  const record = {
    date: started.toISOString(),
    command,
    machine,
    gateway: relative(root, wsgate),
    settings: s,
    seconds: took,
    passed,
    checks,
    slopes,
    rows: table,
    idle: r.idle,
    afterLoad: r.afterLoad,
    samples: r.samples,
    faults: r.faults,
    closes: { accounting, records: r.closes },
    log,
    loads: r.loads,
    config: r.configText,
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(record, null, 1)}\n`);
  writeFileSync(`${base}.md`, `${md}\n`);
  progress(`\n${md}\n`);
  progress(`wrote ${relative(process.cwd(), base)}.{json,md${plotNote.startsWith('!') ? ',png' : ''}}`);
  return passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
