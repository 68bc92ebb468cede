import { version } from '../version.js';
import { unlinkSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import cluster from 'node:cluster';
import { loadConfig, readConfig } from '../config/load.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/types.js';
import { createGateway } from '../gateway.js';
import { workerCount } from '../cluster/cluster-settings.js';
import { reopenLogFile, type Logger } from '../observability/logger.js';

const HELP = `wsgate — a WebSocket gateway

Usage:
  wsgate start [-c FILE]      run the gateway (default config: ./wsgate.yaml)
  wsgate check -c FILE        validate a config file; exit 1 listing every problem
  wsgate reload [-c FILE]     make the running gateway re-read its config (admin API or pidFile)
  wsgate bench URL [options]  load-test a WebSocket endpoint (wsgate bench --help)
  wsgate echo --port P        run a small echo backend
  wsgate --version | --help

Signals: SIGTERM/SIGINT drain and stop; SIGHUP re-reads the config; SIGUSR1 reopens log.file.
Docs: docs/configuration.md, docs/operations.md`;

/** Runs the command line; resolves to the exit code (start resolves when the gateway stops). */
export async function run(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(HELP);
      return command === undefined ? 1 : 0;
    case '-v':
    case '--version':
    case 'version':
      console.log(version());
      return 0;
    case 'start':
      return start(rest);
    case 'check':
      return check(rest);
    case 'reload':
      return (await import('./reload.js')).runReload(rest);
    case 'bench':
      return (await import('./bench.js')).runBench(rest);
    case 'echo':
      return (await import('./echo.js')).runEcho(rest);
    default:
      console.error(`wsgate: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

function configPath(args: readonly string[]): string {
  const { values } = parseArgs({ args: [...args], options: { config: { type: 'string', short: 'c' } }, strict: true });
  return values.config ?? 'wsgate.yaml';
}

async function check(args: readonly string[]): Promise<number> {
  const file = configPath(args);
  try {
    const config = await loadConfig(file);
    console.log(`${file}: ok (${config.listeners.length} listener(s), ${config.routes.length} route(s), ${Object.keys(config.upstreams).length} upstream(s))`);
    for (const key of config.inert) console.log(`${key}: not implemented yet; this setting has no effect`);
    return 0;
  } catch (err) {
    return reportConfigError(file, err);
  }
}

function reportConfigError(file: string, err: unknown): number {
  if (err instanceof ConfigError) {
    console.error(`${file}: invalid configuration`);
    for (const p of err.problems) console.error(`  ${p}`);
    return 1;
  }
  console.error(`${file}: ${(err as Error).message}`);
  return 1;
}

async function start(args: readonly string[]): Promise<number> {
  const file = configPath(args);
  if (cluster.isWorker) return (await import('../cluster/worker.js')).runWorker(file);
  let config;
  let text;
  try {
    ({ config, text } = await readConfig(file));
  } catch (err) {
    return reportConfigError(file, err);
  }
  if (workerCount(config) > 1) return startPrimary(file, config, text);
  let gateway;
  try {
    gateway = createGateway(config, { configFile: file });
  } catch (err) {
    // An unreadable key or CA file named by the config.
    console.error(`${file}: ${(err as Error).message}`);
    return 1;
  }
  try {
    await gateway.start();
  } catch (err) {
    gateway.log.error({ err }, 'cannot start');
    return 1;
  }
  return serve(gateway, file, config.pidFile);
}

/** `cluster.workers` > 1: this process supervises the workers (which run start() again, as cluster workers). */
async function startPrimary(file: string, config: Config, text: string): Promise<number> {
  const { Primary } = await import('../cluster/primary.js');
  let primary;
  try {
    primary = new Primary(file, config, text);
  } catch (err) {
    // log.file cannot be opened for appending.
    console.error(`${file}: ${(err as Error).message}`);
    return 1;
  }
  try {
    await primary.start();
  } catch (err) {
    primary.log.error({ err }, 'cannot start');
    return 1;
  }
  return serve(primary, file, config.pidFile);
}

interface Served {
  readonly log: Logger;
  reload(): Promise<unknown>;
  stop(): Promise<void>;
  kill?(): void;
  /** SIGUSR1, for a cluster primary: reopen its log file and have every worker reopen theirs. */
  reopenLog?(signal: string): void;
}

/** Runs until SIGTERM or SIGINT (drain, then stop); SIGHUP reloads. The pid file lives as long as this. */
async function serve(gateway: Served, file: string, pidFile: string): Promise<number> {
  // Written once at start: `wsgate reload` finds the process through it.
  if (pidFile !== '') {
    try {
      writeFileSync(pidFile, `${process.pid}\n`);
    } catch (err) {
      gateway.log.error({ err, pidFile }, 'cannot write the pid file');
    }
  }
  const removePidFile = (): void => {
    if (pidFile === '') return;
    try {
      unlinkSync(pidFile);
    } catch {
      // Already gone: nothing to clean up.
    }
  };
  const reload = (): void => {
    gateway.log.info({ signal: 'SIGHUP', file }, 'reload requested');
    void gateway.reload();
  };
  process.on('SIGHUP', reload);
  // logrotate's postrotate `kill -USR1 <pid>`. Handled even when logging to stdout: unhandled, SIGUSR1 starts Node's inspector.
  const reopen = (): void => {
    if (gateway.reopenLog !== undefined) gateway.reopenLog('SIGUSR1');
    else reopenLogFile(gateway.log, 'SIGUSR1');
  };
  process.on('SIGUSR1', reopen);
  const exitCode = await new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals): void => {
      if (stopping) {
        gateway.log.warn({ signal }, 'second signal: exiting now');
        gateway.kill?.();
        resolve(1);
        return;
      }
      stopping = true;
      gateway.log.info({ signal }, 'shutdown requested');
      gateway.stop().then(
        () => resolve(0),
        (err: unknown) => {
          gateway.log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
  });
  process.off('SIGHUP', reload);
  process.off('SIGUSR1', reopen);
  removePidFile();
  return exitCode;
}
