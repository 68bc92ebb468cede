// The benchmark suite: `npm run bench` (not part of `npm test`). See bench/README.md.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/bench/options.js';
import { http2HandshakeTable } from './http2-handshake.js';
import { echoPath } from './loadgen/build.js';
import { commandOutput, killAllChildren, spawnChild } from './suite/proc.js';
import type { Child } from './suite/proc.js';
import { calibrate, fixedRate } from './suite/calibrate.js';
import type { Calibration } from './suite/calibrate.js';
import { PROXIES, versions } from './suite/proxies.js';
import type { ProxyDef, RunningProxy, SuiteContext } from './suite/proxies.js';
import { combineRounds, HANDSHAKE_RATE, SATURATED_PCT, SATURATED_ROUNDS, SCENARIOS, saturatedCount } from './suite/scenarios.js';
import type { LoadSide, OutcomeOrFailure, RunSettings, ScenarioDef, ScenarioOutcome, SuiteSettings } from './suite/scenarios.js';
import { BASELINE, BEHIND_NOTE, formatNumber, markdownTable, UNSATURATED_NOTE } from './suite/table.js';
import type { SuiteResults } from './suite/table.js';
import { judgeTargets, targetsMarkdown, WSGATE_MODES } from './suite/targets.js';

const USAGE = `usage: npm run bench -- [options]

  Runs every scenario through every proxy, each proxy pinned to CPU 0 and the
  load generator and echo backend to CPU 1, and writes bench/RESULTS.md and
  bench/results/<timestamp>.json.

  --quick          smoke variant: ~1 s per scenario, tiny loads
  --only NAMES     comma-separated scenarios and/or proxies (repeatable);
                   scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
                   proxies: ${PROXIES.map((p) => p.name).join(', ')}
  --rate N         chatty: messages/s in total (default: calibrated so that
                   nginx uses about 40% of its core, capped at what the load
                   side can offer)
  --duration D     measured load of each scenario (default 2s; chatty, churn,
                   handshake and churn-sat 5s; --quick 1s)
  --warmup D       unmeasured load before it (default 1s; --quick 0)
  --rounds N       runs of each scenario through nginx and wsgate, alternating;
                   figures are the median (default 3; --quick 1)
  --out DIR        write RESULTS.md and results/ under DIR instead of bench/
  --echo c|node    the echo backend: c (default; bench/loadgen/echo.c) or
                   node (wsgate echo, the backend the suite used before)
  --wsgate FILE    wsgate's built entry point (default dist/main.js)
`;

const root = fileURLToPath(new URL('..', import.meta.url));
/** At most this many more rounds of the saturating scenarios (see main). */
const EXTRA_SATURATION_ROUNDS = 5;
/** Repeated in every round: the proxies the targets compare. */
const REPEATED = new Set(['nginx', 'wsgate-tunnel', 'wsgate-inspect', 'wsgate-tunnel-nometrics', 'wsgate-inspect-nometrics', 'wsgate-inspect-js']);

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

interface Parsed {
  readonly settings: SuiteSettings;
  readonly rounds: number;
  readonly only: string[];
  readonly out: string;
  readonly wsgate: string;
  readonly echo: 'c' | 'node';
}

function parse(): Parsed {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string', multiple: true },
        rate: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        rounds: { type: 'string' },
        out: { type: 'string' },
        wsgate: { type: 'string' },
        echo: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick === true;
  const echo = values.echo ?? 'c';
  if (echo !== 'c' && echo !== 'node') fail('--echo: c or node');
  const only = (values.only ?? [])
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const known = new Set([...SCENARIOS.map((s) => s.name), HTTP2, ...PROXIES.map((p) => p.name)]);
  for (const name of only) if (!known.has(name)) fail(`--only: unknown name "${name}" (known: ${[...known].join(', ')})`);
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && !(rate > 0 && rate <= 1_000_000)) fail('--rate: must be a number of messages/s between 1 and 1000000');
  const rounds = Number(values.rounds ?? (quick ? '1' : '3'));
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) fail('--rounds: must be a whole number from 1 to 9');
  let seconds = quick ? 1 : 2;
  let longSeconds = quick ? 1 : 5;
  let warmup = quick ? 0 : 1;
  try {
    if (values.duration !== undefined) seconds = longSeconds = parseDuration('duration', values.duration) / 1000;
    if (values.warmup !== undefined) warmup = /^0+(ms|s)?$/.test(values.warmup) ? 0 : parseDuration('warmup', values.warmup) / 1000;
  } catch (err) {
    fail((err as Error).message);
  }
  return {
    settings: { quick, rate, seconds, longSeconds, warmup },
    rounds,
    only,
    out: resolve(values.out ?? join(root, 'bench')),
    wsgate: resolve(values.wsgate ?? join(root, 'dist/main.js')),
    echo,
  };
}

/** Pins this process (the load generator; forked load workers inherit it) to CPU 1; proxies go to CPU 0. */
function pinning(): { pin: string[]; note: string } {
  if (availableParallelism() < 2) return { pin: [], note: 'not pinned (fewer than 2 CPUs)' };
  if (commandOutput('taskset', ['-a', '-p', '-c', '1', String(process.pid)]) === undefined) {
    return { pin: [], note: 'not pinned (taskset is missing or not allowed)' };
  }
  return { pin: ['taskset', '-c', '0'], note: 'each proxy pinned to CPU 0 (`taskset -c 0`); load generator and echo backend on CPU 1' };
}

/**
 * The echo backend, on the load side's core. The C one by default: `wsgate echo` costs about
 * as much per echo as nginx does, so with it the load side runs out of core before a proxy
 * does. `wsgate echo` when asked (--echo node) or when the C one cannot be built.
 */
async function startEcho(pin: readonly string[], kind: 'c' | 'node'): Promise<{ child: Child; port: number; name: string }> {
  let binary: string | undefined;
  if (kind === 'c') {
    try {
      binary = await echoPath();
    } catch (err) {
      process.stdout.write(`the C echo backend did not build, using wsgate echo: ${(err as Error).message}\n`);
    }
  }
  // Small young-generation halves, as `wsgate echo` keeps them: its own pauses would show in every proxy's p99.
  const command =
    binary !== undefined ? [binary, '--port', '0'] : [process.execPath, '--max-semi-space-size=1', '--import', 'tsx', 'bench/echo-entry.ts', '--port', '0'];
  const name = binary !== undefined ? 'the C echo backend (bench/loadgen/echo.c)' : '`wsgate echo`';
  const cmd = pin.length > 0 ? ['taskset', '-c', '1', ...command] : command;
  const child = spawnChild('echo backend', cmd[0] as string, cmd.slice(1), { cwd: root });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !child.hasExited()) {
    const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(child.output());
    if (m) return { child, port: Number(m[1]), name };
    await new Promise((r) => setTimeout(r, 50));
  }
  await child.stop();
  throw new Error(`the echo backend did not start:\n${child.output()}`);
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function summary(scenario: string, proxy: string, o: ScenarioOutcome): string {
  const parts = Object.entries(o.figures)
    .filter((e): e is [string, number] => e[1] !== null)
    .map(([k, v]) => `${k} ${formatNumber(v)}`);
  const errors = Object.entries(o.errors).map(([k, n]) => `${k}: ${n}`);
  const busy = o.figures.proxyBusyPct;
  const flags =
    `${o.behind ? '  [behind schedule]' : ''}${typeof busy === 'number' && busy < SATURATED_PCT ? '  [proxy not saturated]' : ''}` +
    `${errors.length > 0 ? `  [errors ${errors.join(', ')}]` : ''}`;
  return `  ${scenario.padEnd(9)} ${proxy.padEnd(15)} ${parts.join(', ')}${flags}`;
}

/** The --only name of the HTTP/2 handshake table. */
const HTTP2 = 'http2';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  const { settings, rounds, only, out, wsgate, echo: echoKind } = parse();
  const wanted = (name: string, all: readonly string[]): boolean => !only.some((n) => all.includes(n)) || only.includes(name);
  const proxyNames = PROXIES.map((p) => p.name);
  const scenarioNames = [...SCENARIOS.map((s) => s.name), HTTP2];
  const proxies = PROXIES.filter((p) => wanted(p.name, proxyNames));
  const scenarios = SCENARIOS.filter((s) => wanted(s.name, scenarioNames));

  const started = new Date();
  const suiteStart = Date.now();
  const load = loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
  const nproc = availableParallelism(); // before pinning narrows it to 1
  const { pin, note } = pinning();
  const tmp = mkdtempSync(join(tmpdir(), 'wsgate-bench-'));
  const cleanup = (): void => {
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const echo = await startEcho(pin, echoKind);
  const side: LoadSide = { echoPid: echo.child.pid, cpu: pin.length > 0 ? 1 : undefined, proxyCpu: pin.length > 0 ? 0 : undefined };
  const ctx: SuiteContext = { root, backendPort: echo.port, tmp, pin, wsgate };
  process.stdout.write(`echo backend: ${echo.name} on port ${echo.port}; ${note}\n`);

  // Every proxy runs from the start (an idle one costs nothing), so each scenario can go
  // through them back to back, and nginx and wsgate alternate in every round.
  const running = new Map<string, RunningProxy>();
  const skipped: { name: string; reason: string }[] = [];
  for (const proxy of proxies) {
    if (proxy.name === 'direct' && !scenarios.some((s) => s.direct)) continue;
    const reason = proxy.unavailable(ctx);
    if (reason !== undefined) {
      process.stdout.write(`${proxy.name}: skipped: ${reason}\n`);
      skipped.push({ name: proxy.name, reason });
      continue;
    }
    try {
      running.set(proxy.name, await proxy.start(ctx));
    } catch (err) {
      const why = `did not start: ${(err as Error).message.split('\n').slice(0, 4).join(' / ')}`;
      process.stdout.write(`${proxy.name}: skipped: ${why}\n`);
      skipped.push({ name: proxy.name, reason: why });
    }
  }
  const columns = [...running.keys()];
  const raw: Record<string, Record<string, OutcomeOrFailure[]>> = {};
  const record = (proxy: string, scenario: string, o: OutcomeOrFailure): void => {
    ((raw[proxy] ??= {})[scenario] ??= []).push(o);
  };
  const runOne = async (scenario: ScenarioDef, name: string, s: RunSettings): Promise<void> => {
    const t = Date.now();
    try {
      const o = await scenario.run(running.get(name) as RunningProxy, s, side);
      record(name, scenario.name, o);
      process.stdout.write(`${summary(scenario.name, name, o)}  (${((Date.now() - t) / 1000).toFixed(1)} s)\n`);
    } catch (err) {
      record(name, scenario.name, { failed: (err as Error).message });
      process.stdout.write(`  ${scenario.name.padEnd(9)} ${name.padEnd(15)} failed: ${(err as Error).message}\n`);
    }
    await sleep(200);
  };

  let calibration: Calibration = fixedRate(settings.rate ?? 0);
  let extraRounds = 0;
  let http2: string | undefined;
  try {
    // idle first on each proxy: a fresh process gives a clean memory baseline (a garbage-collected
    // proxy keeps the heap that earlier scenarios grew, which would hide its per-connection cost).
    const idle = scenarios.find((s) => s.name === 'idle');
    if (idle !== undefined) for (const name of columns) if (name !== 'direct') await runOne(idle, name, { ...settings, rate: 0 });

    const loads = scenarios.filter((s) => s.name !== 'idle');
    if (loads.some((s) => s.name === 'chatty')) {
      if (settings.rate !== undefined) calibration = fixedRate(settings.rate);
      else {
        // The rate is nginx's, even when nginx is not among the proxies measured (not in --quick).
        const nginxDef = PROXIES.find((p) => p.name === 'nginx') as ProxyDef;
        let nginx = running.get('nginx');
        let own: RunningProxy | undefined;
        if (nginx === undefined && !settings.quick && nginxDef.unavailable(ctx) === undefined) {
          nginx = own = await nginxDef.start(ctx).catch(() => undefined);
        }
        const through = nginx ?? (await (PROXIES.find((p) => p.name === 'direct') as ProxyDef).start(ctx));
        process.stdout.write(`calibrating the chatty rate through ${nginx === undefined ? 'no proxy (nginx is not running)' : 'nginx'}…\n`);
        try {
          calibration = await calibrate(through, nginx !== undefined, settings, side);
        } finally {
          await own?.stop();
        }
        await sleep(200);
      }
      process.stdout.write(`chatty rate: ${calibration.how}\n`);
    }
    const runSettings: RunSettings = { ...settings, rate: calibration.rate };
    for (let round = 1; round <= rounds; round++) {
      const names = columns.filter((n) => round === 1 || REPEATED.has(n));
      if (names.length === 0) break;
      if (rounds > 1) process.stdout.write(`round ${round} of ${rounds}: ${names.join(', ')}\n`);
      for (const scenario of loads) {
        for (const name of names) if (name !== 'direct' || scenario.direct) await runOne(scenario, name, runSettings);
      }
    }
    // On a machine where one core of load side only just keeps up with nginx, some rounds of a
    // saturating scenario leave nginx (or wsgate) short of its limit, and those rounds do not count.
    // More rounds of those scenarios, through nginx and the wsgate modes only, until each has
    // SATURATED_ROUNDS at saturation or EXTRA_SATURATION_ROUNDS more have run.
    const compared = [BASELINE, ...WSGATE_MODES].filter((n) => columns.includes(n));
    const saturating = loads.filter((s) => s.saturating === true);
    if (rounds >= SATURATED_ROUNDS && compared.length > 1) {
      while (extraRounds < EXTRA_SATURATION_ROUNDS) {
        const short = saturating.filter((s) => compared.some((n) => saturatedCount(raw[n]?.[s.name]) < SATURATED_ROUNDS));
        if (short.length === 0) break;
        extraRounds++;
        process.stdout.write(
          `saturation round ${extraRounds} of at most ${EXTRA_SATURATION_ROUNDS}: ${short.map((s) => s.name).join(', ')}: ${compared.join(', ')}\n`,
        );
        for (const scenario of short) for (const name of compared) await runOne(scenario, name, runSettings);
      }
    }
    // RFC 8441: wsgate only (nginx has no extended CONNECT), so a table of its own, not in the ratios.
    if (!settings.quick && wanted(HTTP2, scenarioNames) && proxies.some((p) => (WSGATE_MODES as readonly string[]).includes(p.name))) {
      try {
        http2 = await http2HandshakeTable({ wsgate, pin, backendPort: echo.port });
      } catch (err) {
        http2 = `The HTTP/2 handshake figures failed: ${(err as Error).message}`;
      }
      process.stdout.write(`\n${http2}\n`);
    }
  } finally {
    for (const r of running.values()) await r.stop();
    await echo.child.stop();
  }

  const results: SuiteResults = {};
  for (const [proxy, byScenario] of Object.entries(raw)) {
    const row: SuiteResults[string] = (results[proxy] = {});
    for (const [scenario, outcomes] of Object.entries(byScenario)) {
      const combined = combineRounds(outcomes);
      if (combined !== undefined) row[scenario] = combined;
    }
  }
  const table = markdownTable(results, columns);
  const verdicts = judgeTargets(results);
  const judged = columns.includes(BASELINE) && columns.some((c) => (WSGATE_MODES as readonly string[]).includes(c));
  const targets = judged ? targetsMarkdown(verdicts) : undefined;
  const elapsed = (Date.now() - suiteStart) / 1000;
  const notes = `${table.includes(' †') ? `\n${BEHIND_NOTE}\n` : ''}${table.includes(' ‡') ? `\n${UNSATURATED_NOTE}\n` : ''}`;
  process.stdout.write(`\n${table}\n${notes}${targets === undefined ? '' : `\n${targets}\n`}`);
  process.stdout.write(`\nsuite took ${elapsed.toFixed(0)} s\n`);
  const argv = process.argv.slice(2).join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench' ? `npm run bench${argv ? ` -- ${argv}` : ''}` : `node --import tsx bench/run.ts${argv ? ` ${argv}` : ''}`;
  const machine = { nproc, cpu: cpuModel(), kernel: release(), loadAverageBefore: load, ...versions() };
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  mkdirSync(join(out, 'results'), { recursive: true });
  const jsonPath = join(out, 'results', `${stamp}.json`);
  const json = {
    date: started.toISOString(),
    command,
    machine,
    pinning: note,
    settings: { ...settings, rate: calibration.rate, rounds, extraSaturationRounds: extraRounds },
    calibration,
    skipped,
    results,
    targets: judged ? verdicts : [],
    rounds: raw,
    seconds: Math.round(elapsed),
  };
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  const resultsPath = join(out, 'RESULTS.md');
  writeFileSync(
    resultsPath,
    resultsMarkdown({ table, targets, http2, command, started, machine, note, echo: echo.name, skipped, settings, rounds, extraRounds, calibration }) +
      keptSections(resultsPath),
  );
  process.stdout.write(`\nwrote ${jsonPath} and ${join(out, 'RESULTS.md')}\n`);
  return columns.length > 0 ? 0 : 1;
}

function resultsMarkdown(r: {
  table: string;
  targets: string | undefined;
  http2: string | undefined;
  command: string;
  started: Date;
  machine: Record<string, string | number>;
  note: string;
  echo: string;
  skipped: readonly { name: string; reason: string }[];
  settings: SuiteSettings;
  rounds: number;
  extraRounds: number;
  calibration: Calibration;
}): string {
  const m = r.machine;
  const s = r.settings;
  const tools = ['node', 'nginx', 'haproxy']
    .filter((k) => m[k] !== undefined)
    .map((k) => `${k} ${m[k]}`)
    .join(', ');
  const warm = s.warmup > 0 ? ` after ${s.warmup} s of warm-up` : '';
  const lines = [
    '# Benchmark results',
    '',
    `Made with \`${r.command}\` on ${r.started.toISOString().slice(0, 16).replace('T', ' ')} UTC` +
      `${s.quick ? ' (quick smoke variant: tiny loads, not comparable)' : ''}.`,
    '',
    `Machine: ${m.nproc} CPUs (${m.cpu}), Linux ${m.kernel}; ${tools}. Load average before the run: ${m.loadAverageBefore}.`,
    `Pinning: ${r.note}. Echo backend: ${r.echo}. Each scenario: ${s.seconds} s measured${warm} (chatty, churn, handshake and churn-sat ${s.longSeconds} s)` +
      `${r.rounds > 1 ? `; ${r.rounds} rounds through nginx and wsgate, alternating, each figure the median` : ''}.`,
    '',
    `Chatty rate: ${r.calibration.how}.`,
    '',
    `Handshake rate: ${s.quick ? 50 : HANDSHAKE_RATE} connect/upgrade/echo/close cycles/s through every proxy, at most 64 at once (churn runs as fast as 32 loops go).`,
    '',
    `saturate and churn-sat: the C load generator (bench/loadgen), ${s.quick ? '20 connections × 2' : '200 connections × 4'} messages in flight of 64 B, ` +
      `and ${s.quick ? 4 : 50} connect/upgrade/echo/close loops; "proxy core busy" is the proxy's CPU ÷ wall time, and below ${SATURATED_PCT}% the proxy was not the limit (‡). ` +
      `Their figures are medians of the rounds at saturation only; a target on them needs ${SATURATED_ROUNDS} such rounds from nginx and from the wsgate mode, ` +
      `so these two scenarios run again through nginx and the wsgate modes until each has them, at most ${EXTRA_SATURATION_ROUNDS} more times ` +
      `(this run: ${r.extraRounds} more).`,
    '',
    r.table,
    '',
    'Each cell: the figure, then its ratio to nginx\'s. ↓ lower is better, ↑ higher is better; "–" where a figure does not apply',
    '(no proxy CPU or memory for "direct"). An echo is one message out and back, so it crosses the proxy twice.',
    'The load side is the load generator and the echo backend, sharing one core: past about 60% of it, its own queueing shows in the latencies.',
    ...(r.table.includes(' †') ? [BEHIND_NOTE] : []),
    ...(r.table.includes(' ‡') ? [UNSATURATED_NOTE] : []),
  ];
  if (r.targets !== undefined) lines.push('', '## Targets', '', r.targets);
  if (r.http2 !== undefined) lines.push('', '## WebSocket handshakes over HTTP/2 (RFC 8441)', '', r.http2);
  lines.push('', 'Scenarios and caveats: bench/README.md. Raw figures (every round): bench/results/.');
  if (r.skipped.length > 0) {
    lines.push('', 'Skipped:', ...r.skipped.map((x) => `- ${x.name}: ${x.reason}`));
  }
  return `${lines.join('\n')}\n`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

/** Sections of RESULTS.md that other runs write (the soak's): from this line on, a suite run keeps them. */
const KEPT = '<!-- kept by npm run bench: the sections below come from other runs -->';

function keptSections(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return '';
  }
  const at = text.indexOf(KEPT);
  return at === -1 ? '' : `\n${text.slice(at)}`;
}
