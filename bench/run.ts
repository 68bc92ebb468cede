// The benchmark suite: `npm run bench` (not part of `npm test`). See bench/README.md.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/bench/options.js';
import { commandOutput, killAllChildren, spawnChild } from './suite/proc.js';
import type { Child } from './suite/proc.js';
import { PROXIES, versions } from './suite/proxies.js';
import type { RunningProxy, SuiteContext } from './suite/proxies.js';
import { SCENARIOS } from './suite/scenarios.js';
import type { ScenarioOutcome, SuiteSettings } from './suite/scenarios.js';
import { BEHIND_NOTE, formatNumber, markdownTable } from './suite/table.js';
import type { SuiteResults } from './suite/table.js';

const USAGE = `usage: npm run bench -- [options]

  Runs every scenario through every proxy, each proxy pinned to CPU 0 and the
  load generator and echo backend to CPU 1, and writes bench/RESULTS.md and
  bench/results/<timestamp>.json.

  --quick          smoke variant: ~1 s per scenario, tiny loads
  --only NAMES     comma-separated scenarios and/or proxies (repeatable);
                   scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
                   proxies: ${PROXIES.map((p) => p.name).join(', ')}
  --rate N         chatty: messages/s in total (default 20000)
  --duration D     measured load of each scenario (default 2s; --quick 1s)
  --warmup D       unmeasured load before it (default 1s; --quick 0)
  --out DIR        write RESULTS.md and results/ under DIR instead of bench/
  --wsgate FILE    wsgate's built entry point (default dist/main.js)
`;

const root = fileURLToPath(new URL('..', import.meta.url));

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function parse(): { settings: SuiteSettings; only: string[]; out: string; wsgate: string } {
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
        out: { type: 'string' },
        wsgate: { type: 'string' },
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
  const only = (values.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
  const known = new Set([...SCENARIOS.map((s) => s.name), ...PROXIES.map((p) => p.name)]);
  for (const name of only) if (!known.has(name)) fail(`--only: unknown name "${name}" (known: ${[...known].join(', ')})`);
  const rate = Number(values.rate ?? '20000');
  if (!(rate > 0 && rate <= 1_000_000)) fail('--rate: must be a number of messages/s between 1 and 1000000');
  let seconds = quick ? 1 : 2;
  let warmup = quick ? 0 : 1;
  try {
    if (values.duration !== undefined) seconds = parseDuration('duration', values.duration) / 1000;
    if (values.warmup !== undefined) warmup = /^0+(ms|s)?$/.test(values.warmup) ? 0 : parseDuration('warmup', values.warmup) / 1000;
  } catch (err) {
    fail((err as Error).message);
  }
  return {
    settings: { quick, rate, seconds, warmup },
    only,
    out: resolve(values.out ?? join(root, 'bench')),
    wsgate: resolve(values.wsgate ?? join(root, 'dist/main.js')),
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

async function startEcho(pin: readonly string[]): Promise<{ child: Child; port: number }> {
  const node = [process.execPath, '--import', 'tsx', 'bench/echo-entry.ts', '--port', '0'];
  const cmd = pin.length > 0 ? ['taskset', '-c', '1', ...node] : node;
  const child = spawnChild('echo backend', cmd[0] as string, cmd.slice(1), { cwd: root });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !child.hasExited()) {
    const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(child.output());
    if (m) return { child, port: Number(m[1]) };
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

function summary(name: string, o: ScenarioOutcome): string {
  const parts = Object.entries(o.figures)
    .filter((e): e is [string, number] => e[1] !== null)
    .map(([k, v]) => `${k} ${formatNumber(v)}`);
  const errors = Object.entries(o.errors).map(([k, n]) => `${k}: ${n}`);
  return `  ${name.padEnd(7)} ${parts.join(', ')}${errors.length > 0 ? `  [errors ${errors.join(', ')}]` : ''}`;
}

async function main(): Promise<number> {
  const { settings, only, out, wsgate } = parse();
  const wanted = (name: string, all: readonly string[]): boolean => !only.some((n) => all.includes(n)) || only.includes(name);
  const proxyNames = PROXIES.map((p) => p.name);
  const scenarioNames = SCENARIOS.map((s) => s.name);
  const proxies = PROXIES.filter((p) => wanted(p.name, proxyNames));
  const scenarios = SCENARIOS.filter((s) => wanted(s.name, scenarioNames));

  const started = new Date();
  const load = loadavg().map((n) => n.toFixed(2)).join(' ');
  const nproc = availableParallelism(); // before pinning narrows it to 1
  const { pin, note } = pinning();
  const tmp = mkdtempSync(join(tmpdir(), 'wsgate-bench-'));
  const cleanup = (): void => {
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const echo = await startEcho(pin);
  const ctx: SuiteContext = { root, backendPort: echo.port, tmp, pin, wsgate };
  process.stdout.write(`echo backend on port ${echo.port}; ${note}\n`);

  const results: SuiteResults = {};
  const skipped: { name: string; reason: string }[] = [];
  const columns: string[] = [];
  for (const proxy of proxies) {
    const mine = scenarios.filter((s) => proxy.name !== 'direct' || s.direct);
    if (mine.length === 0) continue;
    const reason = proxy.unavailable(ctx);
    if (reason !== undefined) {
      process.stdout.write(`${proxy.name}: skipped: ${reason}\n`);
      skipped.push({ name: proxy.name, reason });
      continue;
    }
    let running: RunningProxy;
    try {
      running = await proxy.start(ctx);
    } catch (err) {
      const why = `did not start: ${(err as Error).message.split('\n').slice(0, 4).join(' / ')}`;
      process.stdout.write(`${proxy.name}: skipped: ${why}\n`);
      skipped.push({ name: proxy.name, reason: why });
      continue;
    }
    process.stdout.write(`${proxy.name}:\n`);
    columns.push(proxy.name);
    const row: SuiteResults[string] = (results[proxy.name] = {});
    try {
      for (const scenario of mine) {
        try {
          const t = Date.now();
          const o = await scenario.run(running, settings);
          row[scenario.name] = o;
          process.stdout.write(`${summary(scenario.name, o)}  (${((Date.now() - t) / 1000).toFixed(1)} s)\n`);
        } catch (err) {
          row[scenario.name] = { failed: (err as Error).message };
          process.stdout.write(`  ${scenario.name.padEnd(7)} failed: ${(err as Error).message}\n`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await running.stop();
    }
  }
  await echo.child.stop();

  const table = markdownTable(results, columns);
  process.stdout.write(`\n${table}\n${table.includes(' †') ? `\n${BEHIND_NOTE}\n` : ''}`);
  const argv = process.argv.slice(2).join(' ');
  const command = process.env.npm_lifecycle_event === 'bench' ? `npm run bench${argv ? ` -- ${argv}` : ''}` : `node --import tsx bench/run.ts${argv ? ` ${argv}` : ''}`;
  const machine = { nproc, cpu: cpuModel(), kernel: release(), loadAverageBefore: load, ...versions() };
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  mkdirSync(join(out, 'results'), { recursive: true });
  const jsonPath = join(out, 'results', `${stamp}.json`);
  writeFileSync(jsonPath, `${JSON.stringify({ date: started.toISOString(), command, machine, pinning: note, settings, skipped, results }, null, 2)}\n`);
  writeFileSync(join(out, 'RESULTS.md'), resultsMarkdown({ table, command, started, machine, note, skipped, settings }));
  process.stdout.write(`\nwrote ${jsonPath} and ${join(out, 'RESULTS.md')}\n`);
  return columns.length > 0 ? 0 : 1;
}

function resultsMarkdown(r: {
  table: string;
  command: string;
  started: Date;
  machine: Record<string, string | number>;
  note: string;
  skipped: readonly { name: string; reason: string }[];
  settings: SuiteSettings;
}): string {
  const m = r.machine;
  const tools = ['node', 'nginx', 'haproxy'].filter((k) => m[k] !== undefined).map((k) => `${k} ${m[k]}`).join(', ');
  const lines = [
    '# Benchmark results',
    '',
    `Made with \`${r.command}\` on ${r.started.toISOString().slice(0, 16).replace('T', ' ')} UTC` +
      `${r.settings.quick ? ' (quick smoke variant: tiny loads, not comparable)' : ''}.`,
    '',
    `Machine: ${m.nproc} CPUs (${m.cpu}), Linux ${m.kernel}; ${tools}. Load average before the run: ${m.loadAverageBefore}.`,
    `Pinning: ${r.note}. Each scenario: ${r.settings.seconds} s measured` +
      `${r.settings.warmup > 0 ? ` after ${r.settings.warmup} s of warm-up` : ''}; chatty at ${r.settings.rate} msg/s.`,
    '',
    r.table,
    '',
    'Each cell: the figure, then its ratio to nginx\'s. ↓ lower is better, ↑ higher is better; "–" where a figure does not apply',
    '(no proxy CPU or memory for "direct"). An echo is one message out and back, so it crosses the proxy twice.',
    ...(r.table.includes(' †') ? [BEHIND_NOTE] : []),
    'Scenarios and caveats: bench/README.md. Raw figures: bench/results/.',
  ];
  if (r.skipped.length > 0) {
    lines.push('', 'Skipped:', ...r.skipped.map((s) => `- ${s.name}: ${s.reason}`));
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
