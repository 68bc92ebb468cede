import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';
import type { AdminConfig, Config } from '../config/types.js';

const USAGE = `usage: wsgate reload [-c FILE] [--pid-file F]

  Makes the running gateway re-read its config file, as SIGHUP does.
  The file is checked first: an invalid file is reported and nothing is sent.
  The gateway is found through the admin API (POST /api/reload, with
  admin.token) when the config has an admin block, else through the pid file
  (pidFile in the config, or --pid-file) and a SIGHUP.
`;

const ADMIN_TIMEOUT_MS = 30_000;

/** `wsgate reload`: resolves to the exit code. */
export async function runReload(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      options: { config: { type: 'string', short: 'c' }, 'pid-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`wsgate reload: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const file = values.config ?? 'wsgate.yaml';
  let config: Config;
  try {
    config = await loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`${file}: invalid configuration; the running gateway keeps its current one`);
      for (const p of err.problems) console.error(`  ${p}`);
    } else {
      console.error(`${file}: ${(err as Error).message}`);
    }
    return 1;
  }
  const pidFile = values['pid-file'] ?? config.pidFile;
  if (config.admin !== undefined && values['pid-file'] === undefined) {
    const viaAdmin = await reloadViaAdmin(config.admin);
    if (viaAdmin !== undefined) return viaAdmin;
    if (pidFile === '') return 1;
    console.error('wsgate reload: trying the pid file instead');
  }
  if (pidFile === '') {
    console.error('wsgate reload: the config has neither an admin block nor a pidFile; cannot find the running gateway');
    return 1;
  }
  return signal(pidFile);
}

/** POST /api/reload; undefined when the admin listener cannot be reached. */
async function reloadViaAdmin(admin: AdminConfig): Promise<number | undefined> {
  const url = `http://${connectHost(admin.host)}:${admin.port}/api/reload`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: admin.token === '' ? {} : { authorization: `Bearer ${admin.token}` },
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    console.error(`wsgate reload: cannot reach the admin API at ${url} (${cause})`);
    return undefined;
  }
  const body = (await response.json().catch(() => ({}))) as { ok?: boolean; errors?: string[]; error?: string };
  if (response.ok && body.ok === true) {
    console.log(`reloaded (${url})`);
    return 0;
  }
  console.error(`wsgate reload: the gateway refused the new config (HTTP ${response.status})`);
  for (const e of body.errors ?? (body.error === undefined ? [] : [body.error])) console.error(`  ${e}`);
  return 1;
}

function signal(pidFile: string): number {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch (err) {
    console.error(`wsgate reload: cannot read the pid file ${pidFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return 1;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    console.error(`wsgate reload: ${pidFile} does not hold a process id`);
    return 1;
  }
  try {
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    console.error(`wsgate reload: cannot signal process ${pid} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return 1;
  }
  console.log(`sent SIGHUP to wsgate (pid ${pid}); the gateway logs the outcome`);
  return 0;
}

/** A wildcard listen address is reached through loopback. */
function connectHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
