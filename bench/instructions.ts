// Instructions per handshake, counted by valgrind's callgrind: a figure that
// does not move with the machine's load, for an A/B of two versions of the
// handshake path when CPU-time figures swing by ±20% (bench/README.md).
// Counts user space only: the kernel's share (system calls, TCP) is left out.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commandOutput, freePort, spawnChild, waitForPort, type Child } from './suite/proc.js';

const USAGE = `usage: node --import tsx bench/instructions.ts [options]

  Runs one proxy under valgrind (callgrind) in front of the echo backend,
  warms it up with churn (connect, upgrade, one echo, close), then counts the
  instructions of the next churn run and prints them per handshake: the main
  thread (the JavaScript, Node's C++ and V8's runtime) and all threads (plus
  GC and JIT compiler threads). About 2 minutes; needs valgrind and a build.

  --proxy NAME     wsgate-tunnel (default), wsgate-inspect or node-floor
  --warmup S       seconds of churn before counting (default 60: under valgrind
                   the JIT needs thousands of handshakes to settle)
  --duration S     seconds of churn counted (default 20)
  --wsgate FILE    wsgate's built entry point (default dist/main.js), e.g. a
                   build of another version of the code, for an A/B
`;

const root = fileURLToPath(new URL('..', import.meta.url));

function fail(message: string): never {
  process.stderr.write(`instructions: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    proxy: { type: 'string', default: 'wsgate-tunnel' },
    warmup: { type: 'string', default: '60' },
    duration: { type: 'string', default: '20' },
    wsgate: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help === true) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const proxy = values.proxy;
if (!['wsgate-tunnel', 'wsgate-inspect', 'node-floor'].includes(proxy)) fail(`--proxy: unknown "${proxy}"\n${USAGE}`);
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

/** One churn run through the proxy; the number of handshakes it made. */
async function churn(url: string, seconds: number): Promise<number> {
  const args = [main, 'bench', url, '--churn', '--connections', '4', '--size', '64', '--duration', `${seconds}s`, '--timeout', '30s', '--json', '--no-progress'];
  const run = spawnChild('load', process.execPath, args, { cwd: root });
  await run.exited;
  const json = /\{[\s\S]*\}\s*$/.exec(run.output());
  if (json === null) throw new Error(`the load tool gave no result:\n${run.output()}`);
  return (JSON.parse(json[0]) as { handshakes: { count: number } }).handshakes.count;
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
  const target =
    proxy === 'node-floor'
      ? ['--import', 'tsx', 'bench/node-floor.ts']
      : [main, 'start', '-c', `bench/${proxy}.yaml`];
  const env = { ...process.env, PORT: String(port), WSGATE_PORT: String(port), BACKEND_PORT: String(backendPort) };
  const gw = spawnChild(proxy, 'valgrind', [...valgrind, ...target], { cwd: root, env });
  children.push(gw);
  await waitForPort(gw, port, 180_000);
  const url = `ws://127.0.0.1:${port}/`;
  process.stdout.write(`${proxy} under callgrind: ${warmup} s of warm-up churn, then ${duration} s counted\n`);
  if (warmup > 0) await churn(url, warmup);
  commandOutput('callgrind_control', ['-z', String(gw.pid)], 60_000);
  const handshakes = await churn(url, duration);
  commandOutput('callgrind_control', ['-d', String(gw.pid)], 60_000);
  const dumps = readdirSync(tmp)
    .filter((f) => f.startsWith(`cg.${gw.pid}.1-`))
    .map((f) => join(tmp, f));
  const mainThread = summary(`${out}.${gw.pid}.1-01`);
  const all = dumps.reduce((sum, f) => sum + summary(f), 0);
  if (handshakes === 0 || mainThread === 0) throw new Error(`nothing counted (${handshakes} handshakes, ${dumps.length} dump files)`);
  const k = (n: number): string => `${Math.round(n / handshakes / 1000).toLocaleString('en-US')}k`;
  process.stdout.write(`${handshakes} handshakes counted; instructions per handshake: main thread ${k(mainThread)}, all threads ${k(all)}\n`);
} catch (err) {
  process.stderr.write(`instructions: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  for (const c of children.reverse()) await c.stop();
  rmSync(tmp, { recursive: true, force: true });
}
