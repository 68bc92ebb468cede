import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from '../config/types.js';

export type { Logger };

/**
 * The gateway's logger. `destination` lets embedders and tests capture lines.
 * Pretty output goes through a pino transport, so pino-pretty runs in a worker
 * thread (`sync: true` only makes that worker's writes to stdout synchronous).
 * pino flushes the worker when the process exits, but lines still queued for
 * it are lost if the process is killed (SIGKILL) or dies without an 'exit'.
 */
export function createLogger(log: Config['log'], destination?: DestinationStream): Logger {
  const options = { level: log.level, base: { name: 'wsgate' } };
  if (destination) return pino(options, destination);
  if (log.format === 'pretty') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, sync: true } } });
  }
  return pino(options);
}
