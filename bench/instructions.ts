// Instructions per handshake or per echo, counted by valgrind's callgrind: a
// figure that does not move with the machine's load, for an A/B of two
// versions of the handshake or relay path when CPU-time figures swing by
// ±20% (bench/README.md).
// Counts user space only: the kernel's share (system calls, TCP) is left out.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commandOutput, freePort, spawnChild, waitForPort, type Child } from './suite/proc.js';

const USAGE = `usage: node --import tsx bench/instructions.ts [options]

  Runs one proxy under valgrind (callgrind) in front of the echo backend,
  warms it up with the load, then counts the instructions of the next
  --duration seconds of it and prints them per handshake (churn: connect,
  upgrade, one echo, close) or per echo (chatty: 64-byte messages at a fixed
  rate over 100 open connections): the main thread (the JavaScript, Node's C++
  and V8's runtime) and all threads (plus GC and JIT compiler threads). About
  2 minutes; needs valgrind and a build.

  --proxy NAME     wsgate-tunnel (default), wsgate-inspect or node-floor
  --load KIND      churn (default) or chatty
  --rate N         chatty: messages/s in total (default 300)
  --warmup S       seconds of load before counting (default 60: under valgrind
                   the JIT needs thousands of handshakes to settle)
  --duration S     seconds of load counted (default 20)
  --metrics on|off wsgate with an admin listener and admin.metrics on or off
                   (default: no admin listener, which is off too)
  --wsgate FILE    wsgate's built entry point (default dist/main.js), e.g. a
                   build of another version of the code, for an A/B
  --keep DIR       keep the callgrind dumps in DIR (one file per thread), to
                   see where the instructions go: callgrind_annotate FILE
`;

const root = fileURLToPath(new URL('..', import.meta.url));

function fail(message: string): never {
  process.stderr.write(`instructions: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    proxy: { type: 'string', default: 'wsgate-tunnel' },
    load: { type: 'string', default: 'churn' },
    rate: { type: 'string', default: '300' },
    warmup: { type: 'string', default: '60' },
    duration: { type: 'string', default: '20' },
    wsgate: { type: 'string' },
    metrics: { type: 'string' },
    keep: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help === true) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const proxy = values.proxy;
if (!['wsgate-tunnel', 'wsgate-inspect', 'node-floor'].includes(proxy)) fail(`--proxy: unknown "${proxy}"\n${USAGE}`);
const metrics = values.metrics;
if (metrics !== undefined && metrics !== 'on' && metrics !== 'off') fail('--metrics: on or off');
const load = values.load;
if (load !== 'churn' && load !== 'chatty') fail(`--load: churn or chatty, not "${load}"`);
const rate = Number(values.rate);
if (!(Number.isInteger(rate) && rate > 0 && rate <= 5000)) fail('--rate: messages/s from 1 to 5000');
const warmup = Number(values.warmup);
const duration = Number(values.duration);
if (!(warmup >= 0 && duration > 0)) fail('--warmup and --duration are seconds');
for (const tool of ['valgrind', 'callgrind_control']) {
  if (commandOutput('which', [tool]) === undefined) fail(`${tool} is not installed (apt-get install -y valgrind)`);
}
const main = resolve(values.wsgate ?? join(root, 'dist/main.js'));
if (!existsSync(main)) fail(`${main} is not built (npm run build)`);

const tmp = mkdtempSync(join(tmpdir(), 'wsgate-instructions-'));
const children: Child[] = [];

async function startEcho(): Promise<number> {
  const echo = spawnChild('echo backend', process.execPath, ['--import', 'tsx', 'bench/echo-entry.ts', '--port', '0'], { cwd: root });
  children.push(echo);
  for (let i = 0; i < 300 && !echo.hasExited(); i++) {
    const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(echo.output());
    if (m) return Number(m[1]);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the echo backend did not start:\n${echo.output()}`);
}

/** One load run through the proxy; its result. */
async function runLoad(url: string, loadArgs: readonly string[], seconds: number): Promise<Result> {
  const args = [main, 'bench', url, ...loadArgs, '--size', '64', '--duration', `${seconds}s`, '--timeout', '30s', '--json', '--no-progress'];
  const run = spawnChild('load', process.execPath, args, { cwd: root });
  await run.exited;
  const json = /\{[\s\S]*\}\s*$/.exec(run.output());
  if (json === null) throw new Error(`the load tool gave no result:\n${run.output()}`);
  return JSON.parse(json[0]) as Result;
}

interface Result {
  readonly handshakes: { readonly count: number };
  readonly messages: { readonly unsent: number };
  readonly behindSchedule: boolean;
}

const sleep = (s: number): Promise<void> => new Promise((r) => setTimeout(r, s * 1000));

/**
 * Counts `duration` seconds of load after `warmup` seconds of it: the
 * instructions between callgrind's zero and dump, and the units of work
 * (handshakes or echoes) done in between.
 */
async function count(gw: Child, url: string): Promise<{ units: number; unit: string; plural: string }> {
  if (load === 'churn') {
    const churn = ['--churn', '--connections', '4'];
    if (warmup > 0) await runLoad(url, churn, warmup);
    commandOutput('callgrind_control', ['-z', String(gw.pid)], 60_000);
    const handshakes = (await runLoad(url, churn, duration)).handshakes.count;
    commandOutput('callgrind_control', ['-d', String(gw.pid)], 60_000);
    return { units: handshakes, unit: 'handshake', plural: 'handshakes' };
  }
  // One open-loop run on its fixed schedule, counted in the middle: the
  // connections' handshakes and closes stay out of the count, and the echoes
  // in the window are the rate times its length.
  const connections = 100;
  const chatty = ['--rate', String(rate), '--connections', String(connections), '--warmup', `${warmup + 5}s`];
  const run = runLoad(url, chatty, duration + 10);
  const deadline = Date.now() + 120_000;
  while (established(url) < connections) {
    if (Date.now() > deadline) throw new Error('the load tool did not open its connections in 2 minutes');
    await sleep(0.5);
  }
  await sleep(warmup);
  const t0 = Date.now();
  commandOutput('callgrind_control', ['-z', String(gw.pid)], 60_000);
  await sleep(duration);
  commandOutput('callgrind_control', ['-d', String(gw.pid)], 60_000);
  const seconds = (Date.now() - t0) / 1000;
  const result = await run;
  if (result.behindSchedule || result.messages.unsent > 0) throw new Error('the load fell behind its schedule: lower --rate');
  return { units: Math.round(rate * seconds), unit: 'echo', plural: 'echoes' };
}

/** Established connections to the proxy's port (the load tool's). */
function established(url: string): number {
  const port = new URL(url).port;
  const out = commandOutput('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`]) ?? '';
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

/** The instruction count of a callgrind dump file. */
function summary(file: string): number {
  const m = /^summary:\s+(\d+)$/m.exec(readFileSync(file, 'utf8'));
  return m === null ? 0 : Number(m[1]);
}

try {
  const backendPort = await startEcho();
  const port = await freePort();
  const out = join(tmp, 'cg');
  const valgrind = ['--tool=callgrind', '--smc-check=all-non-file', '--separate-threads=yes', `--callgrind-out-file=${out}.%p`, process.execPath];
  let config = `bench/${proxy}.yaml`;
  if (metrics !== undefined && proxy !== 'node-floor') {
    // The suite's config plus an admin listener, as bench/suite/proxies.ts runs it.
    config = join(tmp, 'wsgate.yaml');
    const admin = await freePort();
    writeFileSync(config, `${readFileSync(join(root, `bench/${proxy}.yaml`), 'utf8')}\nadmin: { address: 127.0.0.1:${admin}, metrics: ${metrics === 'on'} }\n`);
  }
  const target = proxy === 'node-floor' ? ['--import', 'tsx', 'bench/node-floor.ts'] : [main, 'start', '-c', config];
  const env = { ...process.env, PORT: String(port), WSGATE_PORT: String(port), BACKEND_PORT: String(backendPort) };
  const gw = spawnChild(proxy, 'valgrind', [...valgrind, ...target], { cwd: root, env });
  children.push(gw);
  await waitForPort(gw, port, 180_000);
  const url = `ws://127.0.0.1:${port}/`;
  process.stdout.write(`${proxy} under callgrind: ${warmup} s of ${load} load to warm up, then ${duration} s counted\n`);
  const { units, unit, plural } = await count(gw, url);
  const dumps = readdirSync(tmp)
    .filter((f) => f.startsWith(`cg.${gw.pid}.1-`))
    .map((f) => join(tmp, f));
  const mainThread = summary(`${out}.${gw.pid}.1-01`);
  const all = dumps.reduce((sum, f) => sum + summary(f), 0);
  if (units === 0 || mainThread === 0) throw new Error(`nothing counted (${units} units, ${dumps.length} dump files)`);
  const k = (n: number): string => `${(n / units / 1000).toLocaleString('en-US', { maximumFractionDigits: 2 })}k`;
  process.stdout.write(`${units} ${plural} counted; instructions per ${unit}: main thread ${k(mainThread)}, all threads ${k(all)}\n`);
} catch (err) {
  process.stderr.write(`instructions: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  for (const c of children.reverse()) await c.stop();
  if (values.keep !== undefined) keepDumps(values.keep);
  rmSync(tmp, { recursive: true, force: true });
}

function keepDumps(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(tmp)) if (f.startsWith('cg.')) copyFileSync(join(tmp, f), join(dir, f));
  process.stdout.write(`callgrind dumps kept in ${dir}\n`);
}
