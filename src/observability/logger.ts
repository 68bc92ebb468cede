import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from '../config/types.js';

export type { Logger };

/**
 * The gateway's logger. `destination` lets embedders and tests capture lines;
 * pretty output goes through pino-pretty in-process (no worker thread) so a
 * crash never loses the last lines.
 */
export function createLogger(log: Config['log'], destination?: DestinationStream): Logger {
  const options = { level: log.level, base: { name: 'wsgate' } };
  if (destination) return pino(options, destination);
  if (log.format === 'pretty') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, sync: true } } });
  }
  return pino(options);
}
