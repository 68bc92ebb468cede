// The proxies under test, each started in front of the echo backend.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { commandOutput, freePort, spawnChild, waitForPort } from './proc.js';
import type { Child } from './proc.js';

export interface SuiteContext {
  readonly root: string;
  readonly backendPort: number;
  /** A temporary directory for generated configs, pids and logs. */
  readonly tmp: string;
  /** Prefix pinning a proxy to its CPU (`taskset -c 0`), or empty. */
  readonly pin: readonly string[];
  /** wsgate's built entry point (dist/main.js). */
  readonly wsgate: string;
}

export interface RunningProxy {
  readonly url: string;
  /** The process whose CPU and memory are measured (with its descendants); undefined for "direct". */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export interface ProxyDef {
  readonly name: string;
  /** Undefined when it can run; else why it is skipped. */
  unavailable(ctx: SuiteContext): string | undefined;
  start(ctx: SuiteContext): Promise<RunningProxy>;
}

/** Replaces ${NAME} for the given names only (nginx's own $variables stay). */
function render(template: string, values: Readonly<Record<string, string | number>>): string {
  return template.replace(/\$\{([A-Z_]+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole));
}

function spawnPinned(ctx: SuiteContext, name: string, command: string, args: string[], env?: NodeJS.ProcessEnv): Child {
  const [head, ...rest] = ctx.pin.length > 0 ? [...ctx.pin, command, ...args] : [command, ...args];
  return spawnChild(name, head as string, rest, { cwd: ctx.root, env: { ...process.env, ...env } });
}

async function started(child: Child, port: number): Promise<RunningProxy> {
  try {
    await waitForPort(child, port);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { url: `ws://127.0.0.1:${port}/`, pid: child.pid, stop: () => child.stop() };
}

let apt: 'untried' | 'failed' | 'done' = 'untried';

/** Installs a missing Debian package once per run (root only); false when that is not possible. */
export function ensurePackage(binary: string, pkg: string): boolean {
  if (existsSync(binary)) return true;
  if (apt === 'failed' || process.getuid?.() !== 0 || commandOutput('which', ['apt-get']) === undefined) return false;
  process.stdout.write(`${binary} is missing: apt-get install -y ${pkg}\n`);
  if (apt === 'untried') commandOutput('apt-get', ['update'], 120_000);
  apt = commandOutput('apt-get', ['install', '-y', pkg], 300_000) === undefined ? 'failed' : 'done';
  return existsSync(binary);
}

const NGINX = '/usr/sbin/nginx';
const HAPROXY = '/usr/sbin/haproxy';

export const PROXIES: readonly ProxyDef[] = [
  {
    name: 'direct',
    unavailable: () => undefined,
    start: async (ctx) => ({ url: `ws://127.0.0.1:${ctx.backendPort}/`, pid: undefined, stop: async () => {} }),
  },
  {
    name: 'nginx',
    unavailable: () => (ensurePackage(NGINX, 'nginx-light') ? undefined : `${NGINX} is not installed and could not be installed`),
    start: async (ctx) => {
      const port = await freePort();
      const dir = join(ctx.tmp, 'nginx');
      mkdirSync(dir, { recursive: true });
      const conf = join(dir, 'nginx.conf');
      const template = readFileSync(join(ctx.root, 'bench/nginx.conf'), 'utf8');
      writeFileSync(conf, render(template, { PORT: port, BACKEND_PORT: ctx.backendPort, TMP: dir }));
      const child = spawnPinned(ctx, 'nginx', NGINX, ['-c', conf, '-p', dir, '-e', join(dir, 'error.log'), '-g', 'daemon off;']);
      return started(child, port);
    },
  },
  {
    name: 'haproxy',
    unavailable: () => (ensurePackage(HAPROXY, 'haproxy') ? undefined : `${HAPROXY} is not installed and could not be installed`),
    start: async (ctx) => {
      const port = await freePort();
      const conf = join(ctx.tmp, 'haproxy.cfg');
      const template = readFileSync(join(ctx.root, 'bench/haproxy.cfg'), 'utf8');
      writeFileSync(conf, render(template, { PORT: port, BACKEND_PORT: ctx.backendPort }));
      return started(spawnPinned(ctx, 'haproxy', HAPROXY, ['-f', conf, '-db']), port);
    },
  },
  {
    name: 'http-proxy',
    unavailable: (ctx) => (existsSync(join(ctx.root, 'node_modules/http-proxy')) ? undefined : 'npm package http-proxy is not installed'),
    start: async (ctx) => {
      const port = await freePort();
      const env = { PORT: String(port), BACKEND_PORT: String(ctx.backendPort) };
      return started(spawnPinned(ctx, 'http-proxy', process.execPath, ['--import', 'tsx', 'bench/http-proxy.ts'], env), port);
    },
  },
  {
    // Node's own floor: raw sockets, no checks (bench/node-floor.ts). wsgate cannot cost less than this.
    name: 'node-floor',
    unavailable: () => undefined,
    start: async (ctx) => {
      const port = await freePort();
      const env = { PORT: String(port), BACKEND_PORT: String(ctx.backendPort) };
      return started(spawnPinned(ctx, 'node-floor', process.execPath, ['--import', 'tsx', 'bench/node-floor.ts'], env), port);
    },
  },
  // wsgate as deployed: an admin listener with metrics on (the default). The "-nometrics" twins run
  // with `admin.metrics: false`, so one run measures what the metrics cost per message.
  ...(['tunnel', 'inspect'] as const).flatMap((mode) =>
    [true, false].map((metrics): ProxyDef => ({
      name: `wsgate-${mode}${metrics ? '' : '-nometrics'}`,
      unavailable: (ctx) => (existsSync(ctx.wsgate) ? undefined : `${relative(ctx.root, ctx.wsgate)} is not built (npm run build)`),
      start: async (ctx) => {
        const port = await freePort();
        const admin = await freePort();
        const conf = join(ctx.tmp, `wsgate-${mode}-${metrics ? 'metrics' : 'nometrics'}.yaml`);
        const template = readFileSync(join(ctx.root, `bench/wsgate-${mode}.yaml`), 'utf8');
        writeFileSync(
          conf,
          `${render(template, { WSGATE_PORT: port, BACKEND_PORT: ctx.backendPort })}\nadmin: { address: 127.0.0.1:${admin}, metrics: ${metrics} }\n`,
        );
        const name = `wsgate-${mode}${metrics ? '' : '-nometrics'}`;
        return started(spawnPinned(ctx, name, process.execPath, [ctx.wsgate, 'start', '-c', conf]), port);
      },
    })),
  ),
  // Inspect mode on its JavaScript relay (WSGATE_INSPECT_CORE=js): how inspect mode ran before the
  // native inspect core, and runs where the core cannot be built; the before beside the after.
  {
    name: 'wsgate-inspect-js',
    unavailable: (ctx) => (existsSync(ctx.wsgate) ? undefined : `${relative(ctx.root, ctx.wsgate)} is not built (npm run build)`),
    start: async (ctx) => {
      const port = await freePort();
      const admin = await freePort();
      const conf = join(ctx.tmp, 'wsgate-inspect-js.yaml');
      const template = readFileSync(join(ctx.root, 'bench/wsgate-inspect.yaml'), 'utf8');
      writeFileSync(conf, `${render(template, { WSGATE_PORT: port, BACKEND_PORT: ctx.backendPort })}\nadmin: { address: 127.0.0.1:${admin}, metrics: true }\n`);
      const env = { WSGATE_INSPECT_CORE: 'js' };
      return started(spawnPinned(ctx, 'wsgate-inspect-js', process.execPath, [ctx.wsgate, 'start', '-c', conf], env), port);
    },
  },
];

/** The versions the report names. */
export function versions(): Record<string, string> {
  const out: Record<string, string> = { node: process.version };
  const nginx = commandOutput(NGINX, ['-v']);
  if (nginx !== undefined) out.nginx = nginx.trim().replace(/^nginx version: nginx\//, '');
  const haproxy = commandOutput(HAPROXY, ['-v']);
  if (haproxy !== undefined) out.haproxy = /^HAProxy version (\S+)/.exec(haproxy)?.[1] ?? 'unknown';
  return out;
}
