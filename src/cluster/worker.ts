import { once } from 'node:events';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { createGateway, type Gateway } from '../gateway.js';
import { createLogger, reopenLogFile, type Logger } from '../observability/logger.js';
import { runtimeRegistry, type MetricJson } from '../observability/metrics.js';
import { instanceId } from './instance-bus.js';
import type { ToPrimary, ToWorker } from './messages.js';
import { PrimaryState } from './primary-state.js';
import { RedisLimits } from './redis-state.js';
import type { SharedState } from './shared-state.js';

/**
 * A cluster worker: a whole gateway on the listeners the primary shares,
 * whose admin listener, health checks and config watch are the primary's.
 * It takes its config from the primary (the text the primary validated, so
 * every worker runs the same), and runs until the primary says stop, a
 * signal says so, or the primary is gone. Resolves to the exit code.
 */
export async function runWorker(file: string): Promise<number> {
  const slot = Number(process.env.WSGATE_WORKER ?? '0');
  const send = (m: ToPrimary): void => {
    if (process.connected) process.send!(m);
  };
  const configured = once(process, 'message') as Promise<[ToWorker]>;
  send({ t: 'hello' });
  const [first] = await configured;
  if (first.t !== 'config') return 1;
  let config: Config;
  try {
    config = parseConfig(first.text, process.env, first.baseDir);
  } catch (err) {
    send({ t: 'failed', error: (err as Error).message });
    return 1;
  }
  let log: Logger;
  try {
    log = createLogger(config.log).child({ worker: slot });
  } catch (err) {
    // log.file cannot be opened for appending.
    send({ t: 'failed', error: (err as Error).message });
    return 1;
  }
  const primary = new PrimaryState(send);
  const shared: SharedState =
    config.cluster.redis === ''
      ? primary
      : new RedisLimits({ url: config.cluster.redis, onRedisError: config.cluster.onRedisError, fallback: primary, member: `${instanceId()}/w${slot}`, log });
  let gateway: Gateway;
  try {
    gateway = createGateway(config, { configFile: file, shared, worker: true, logger: log });
    await gateway.start();
  } catch (err) {
    log.error({ err }, 'cannot start');
    send({ t: 'failed', error: (err as Error).message });
    return 1;
  }
  send({ t: 'ready', addresses: gateway.addresses.map((a) => `${a.address}:${a.port}`) });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'worker stopping');
      gateway.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    const onMessage = (m: ToWorker): void => {
      switch (m.t) {
        case 'answers':
          return primary.answered(m.a);
        case 'reload':
          return void reload(gateway, m.text, m.baseDir, log).then((r) => send({ t: 'reloaded', seq: m.seq, ...r }));
        case 'drain':
          gateway.drainTarget(m.cmd.target, m.cmd.drained);
          return;
        case 'health':
          return gateway.applyHealth(m.verdict);
        case 'status':
          return send({ t: 'status', seq: m.seq, sessions: gateway.stats().sessions, upstreams: gateway.upstreamStatus() });
        case 'metrics':
          return void workerMetrics(gateway).then((metrics) => send({ t: 'metrics', seq: m.seq, metrics }));
        case 'connections':
          return send({ t: 'connections', seq: m.seq, page: gateway.connections(m.query, slot, m.after) });
        case 'close':
          return send({ t: 'closed', seq: m.seq, ok: gateway.closeConnection(m.id, m.code, m.reason) });
        case 'reopen':
          reopenLogFile(log);
          return;
        case 'stop':
          return stop('primary');
        case 'config':
          return;
      }
    };
    process.on('message', onMessage);
    // The primary handles these for the instance; a terminal's Ctrl-C or hangup reaches the whole process group.
    process.on('SIGHUP', noop);
    process.on('SIGINT', noop);
    // Logrotate signals the primary (which tells every worker); a signal to the whole group reopens here too.
    // Without a listener, SIGUSR1 would start Node's inspector.
    process.on('SIGUSR1', () => reopenLogFile(log, 'SIGUSR1'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('disconnect', () => stop('the primary is gone'));
  });
}

async function reload(
  gateway: Gateway,
  text: string,
  baseDir: string,
  log: ReturnType<typeof createLogger>,
): Promise<{ ok: boolean; errors: readonly string[] }> {
  let config: Config;
  try {
    config = parseConfig(text, process.env, baseDir);
  } catch (err) {
    return { ok: false, errors: [(err as Error).message] };
  }
  const result = await gateway.reload(config);
  if (!result.ok) return { ok: false, errors: result.errors };
  log.level = config.log.level;
  return { ok: true, errors: [] };
}

/** Runtime and gateway series for the primary to sum; null when metrics are off. */
async function workerMetrics(gateway: Gateway): Promise<MetricJson[] | null> {
  const own = await gateway.metricsJson();
  if (own === undefined) return null;
  return [...(await runtimeRegistry().getMetricsAsJSON()), ...own] as MetricJson[];
}

function noop(): void {}
