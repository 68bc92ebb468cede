// Scale-out benchmarks of the gateway's cluster mode: `node --import tsx bench/scale.ts <scenario>`.
// Each scenario starts what it needs (echo backends, the gateway from a temp
// config, load processes), runs bounded, tears everything down (also on an
// error or a signal), prints a markdown table and a JSON line, and writes the
// table to bench/results/scale-<scenario>-<timestamp>.md. See bench/README.md.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/bench/options.js';
import { keepYoungGenerationSmall } from '../src/cli/young-generation.js';
import { killAllChildren } from './suite/proc.js';
import { c50kScenario } from './scale/c50k.js';
import { growScenario } from './scale/grow.js';
import { killAllHolders } from './scale/hold-process.js';
import { PLACEMENT_NAMES, TOPOLOGY_NAMES, instancesScenario } from './scale/instances.js';
import { policyScenario } from './scale/policy.js';
import type { RelayMode, ScaleEnv, SchedPolicy } from './scale/processes.js';
import { ScaleUsageError } from './scale/scenario.js';
import type { Scenario, ScaleSettings, ScenarioReport } from './scale/scenario.js';
import { machineLine } from './scale/system.js';

const USAGE = `usage: node --import tsx bench/scale.ts <policy|grow|c50k|instances> [options]

  policy   Node's cluster scheduling, rr vs none, 2 workers: handshake churn
           (handshakes/s, gateway CPU per handshake, the primary's share) and
           how 10,000 idle connections spread over the workers
  grow     1 worker vs 2: closed-loop messages/s and churn handshakes/s with
           the gateway's CPU per message/handshake, with the gateway pinned to
           CPU 1 (load on CPU 0) and with nothing pinned
  c50k     50,000 proxied WebSockets held with keepalive pings, 8 workers,
           one echo on every connection at the end; zero errors required
  instances  1 instance vs 3 (and 3 of 2 workers) behind HAProxy (mode tcp,
           send-proxy-v2) with one Redis: grow's loads through HAProxy,
           messages/s, handshakes/s, gateway CPU per message/handshake (all
           instances), Redis and HAProxy CPU, the 3 ÷ 1 ratios; pinned and shared

  --duration D     policy: churn measured (default 10s); grow, instances: each
                   load (default 5s); c50k: how long connections are held (default 60s)
  --warmup D       policy, grow, instances: unmeasured load before it (default 1s; 0 = none)
  --rounds N       policy, grow, instances: alternating rounds; figures are medians (default 3)
  --connections N  policy: idle connections (default 10000); c50k: held (default 50000)
  --workers N      c50k: gateway workers (default 8)
  --loaders N      c50k: load processes, at most 19,000 connections each (default 4)
  --backends N     c50k: echo backends, at most 19,000 connections each (default 4)
  --ramp R         c50k: new connections/s in total (default 2000)
  --mode M         relay mode: inspect (default) or tunnel; c50k needs inspect (pings)
  --policy P       grow, c50k, instances: cluster scheduling, none (default, as wsgate) or rr
  --topologies L   instances: instances×workers to run, from 1x1,3x1,3x2 (default all;
                   1x1 required: the ratios are to it)
  --placement P    instances: pinned, shared or both (default both)
  --wsgate FILE    the gateway's entry point (default dist/main.js when built,
                   else src/main.ts under tsx)
  --out DIR        where the markdown goes (default bench/results)
`;

const root = fileURLToPath(new URL('..', import.meta.url));

const SCENARIOS: Readonly<Record<string, Scenario>> = { policy: policyScenario, grow: growScenario, c50k: c50kScenario, instances: instancesScenario };

/** Per-scenario defaults: the brief's loads, bounded so that each run stays within a few minutes. */
const DEFAULTS: Readonly<Record<string, Pick<ScaleSettings, 'durationMs' | 'connections'>>> = {
  policy: { durationMs: 10_000, connections: 10_000 },
  grow: { durationMs: 5_000, connections: 0 },
  c50k: { durationMs: 60_000, connections: 50_000 },
  instances: { durationMs: 5_000, connections: 0 },
};

function fail(message: string): never {
  process.stderr.write(`scale: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function whole(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) fail(`--${name}: must be a whole number from ${min} to ${max}`);
  return n;
}

function duration(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  if (/^0+(ms|s)?$/.test(raw)) return 0;
  try {
    return parseDuration(name, raw);
  } catch (err) {
    fail((err as Error).message);
  }
}

interface Parsed {
  readonly scenario: string;
  readonly settings: ScaleSettings;
  readonly wsgate: string;
  readonly out: string;
}

function parse(argv: readonly string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        duration: { type: 'string' },
        warmup: { type: 'string' },
        rounds: { type: 'string' },
        connections: { type: 'string' },
        workers: { type: 'string' },
        loaders: { type: 'string' },
        backends: { type: 'string' },
        ramp: { type: 'string' },
        mode: { type: 'string' },
        policy: { type: 'string' },
        topologies: { type: 'string' },
        placement: { type: 'string' },
        wsgate: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.help === true) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const scenario = positionals[0] ?? fail('name a scenario');
  const defaults = DEFAULTS[scenario] ?? fail(`unknown scenario "${scenario}"`);
  if (positionals.length > 1) fail('name one scenario');
  const mode = v.mode ?? 'inspect';
  if (mode !== 'inspect' && mode !== 'tunnel') fail('--mode: inspect or tunnel');
  if (scenario === 'c50k' && mode !== 'inspect') fail('c50k needs --mode inspect: keepalive pings are an inspect-mode feature');
  const policy = v.policy ?? 'none';
  if (policy !== 'rr' && policy !== 'none') fail('--policy: rr or none');
  if (scenario !== 'instances' && (v.topologies !== undefined || v.placement !== undefined)) fail('--topologies and --placement are for instances');
  const topologies = (v.topologies ?? TOPOLOGY_NAMES.join(',')).split(',').map((t) => t.trim());
  if (topologies.some((t) => !(TOPOLOGY_NAMES as readonly string[]).includes(t)) || new Set(topologies).size !== topologies.length) {
    fail(`--topologies: a list of distinct ${TOPOLOGY_NAMES.join(', ')}`);
  }
  if (!topologies.includes('1x1')) fail('--topologies: must include 1x1 (the ratios are to it)');
  const placement = v.placement ?? 'both';
  if (placement !== 'both' && !(PLACEMENT_NAMES as readonly string[]).includes(placement)) fail('--placement: pinned, shared or both');
  const settings: ScaleSettings = {
    durationMs: duration('duration', v.duration, defaults.durationMs),
    warmupMs: duration('warmup', v.warmup, 1000),
    rounds: whole('rounds', v.rounds, 3, 1, 9),
    connections: whole('connections', v.connections, defaults.connections, 1, 200_000),
    workers: whole('workers', v.workers, 8, 1, 64),
    loaders: whole('loaders', v.loaders, 4, 1, 32),
    backends: whole('backends', v.backends, 4, 1, 32),
    ramp: whole('ramp', v.ramp, 2000, 1, 100_000),
    mode: mode as RelayMode,
    policy: policy as SchedPolicy,
    // Only instances has these: the other scenarios' settings (and JSON lines) stay as they were.
    ...(scenario === 'instances'
      ? { topologies: TOPOLOGY_NAMES.filter((t) => topologies.includes(t)), placements: placement === 'both' ? [...PLACEMENT_NAMES] : [placement] }
      : {}),
  };
  const builtOrSource = existsSync(join(root, 'dist/main.js')) ? 'dist/main.js' : 'src/main.ts';
  return { scenario, settings, wsgate: resolve(root, v.wsgate ?? builtOrSource), out: resolve(v.out ?? join(root, 'bench/results')) };
}

/** How to run `wsgate`: a .ts entry goes through tsx. */
function wsgateCommand(entry: string): string[] {
  if (!existsSync(entry)) fail(`--wsgate: ${entry} does not exist`);
  return entry.endsWith('.ts') ? [process.execPath, '--import', 'tsx', entry] : [process.execPath, entry];
}

function markdown(r: ScenarioReport, header: readonly string[]): string {
  return [...header, '', r.summary, '', r.table, '', ...r.notes.map((n) => `- ${n}`)].join('\n').trimEnd();
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { scenario, settings, wsgate, out } = parse(argv);
  // The load generator runs in this process: its own GC pauses would count against the gateway.
  keepYoungGenerationSmall();
  const machine = machineLine();
  const started = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'wsgate-scale-'));
  process.on('exit', () => {
    killAllHolders();
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

  const env: ScaleEnv = { root, tmp, wsgate: wsgateCommand(wsgate) };
  const command = `node --import tsx bench/scale.ts ${argv.join(' ')}`.trim();
  process.stdout.write(`scale ${scenario}: gateway ${relative(root, wsgate)}; ${machine}\n`);
  const report = await (SCENARIOS[scenario] as Scenario)(env, settings, (l) => process.stdout.write(`${l}\n`));
  const took = Math.round((Date.now() - started.getTime()) / 1000);

  const header = [
    `# Scale: ${scenario}`,
    '',
    `Made with \`${command}\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC; the run took ${took} s.`,
    '',
    `Machine: ${machine}. Gateway: \`${relative(root, wsgate)}\`${wsgate.endsWith('.ts') ? ' under tsx' : ''}.`,
  ];
  const md = markdown(report, header);
  const record = { scenario, date: started.toISOString(), command, machine, settings, seconds: took, errors: report.errors, ...(report.data as object) };
  // Maps are working state (CPU readings by pid), not figures: left out.
  const json = JSON.stringify(record, (_key, value: unknown) => (value instanceof Map ? undefined : value));
  process.stdout.write(`\n${md}\n\n${json}\n`);
  mkdirSync(out, { recursive: true });
  const file = join(out, `scale-${scenario}-${started.toISOString().replace(/[:.]/g, '-')}.md`);
  writeFileSync(file, `${md}\n\nThe run's JSON line:\n\n\`\`\`json\n${json}\n\`\`\`\n`);
  process.stdout.write(`\nwrote ${relative(process.cwd(), file)}\n`);
  return report.errors > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ScaleUsageError) {
      process.stderr.write(`scale: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`scale: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
