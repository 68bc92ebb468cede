import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type { Config } from '../config/types.js';

export type { Logger };

/**
 * The gateway's logger. `destination` lets embedders and tests capture lines.
 * Pretty output goes through a pino transport, so pino-pretty runs in a worker
 * thread (`sync: true` only makes that worker's writes to stdout synchronous).
 * pino flushes the worker when the process exits, but lines still queued for
 * it are lost if the process is killed (SIGKILL) or dies without an 'exit'.
 * With `log.file` set, lines go to that file instead (see fileLogger); it
 * throws, naming the file, when the file cannot be opened for appending.
 */
export function createLogger(log: Config['log'], destination?: DestinationStream): Logger {
  const options = { level: log.level, base: { name: 'wsgate' } };
  if (destination) return pino(options, destination);
  if (log.file !== '') return fileLogger(options, log);
  if (log.format === 'pretty') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, sync: true } } });
  }
  return pino(options);
}

type FileDestination = ReturnType<typeof pino.destination>;

/** The log files this process writes, by the stream its logger writes to (the file, or the pretty formatter in front of it). */
const FILES = new WeakMap<object, { readonly path: string; readonly dest: FileDestination }>();

/**
 * `log.file`: lines are appended to the file through a buffered,
 * asynchronous destination (sync: false: a slow disk does not stall the
 * event loop; pino flushes what is buffered when the process exits), which
 * reopenLogFile() reopens for logrotate. `format: pretty` formats here, on
 * the main thread, and writes the text to the same destination (a transport's
 * worker thread could not be told to reopen its file).
 */
function fileLogger(options: { level: string; base: { name: string } }, log: Config['log']): Logger {
  const path = log.file;
  // Opened once synchronously so that a file that cannot be written stops the start with the reason,
  // instead of an 'error' event later while lines pile up in memory.
  closeSync(openSync(path, 'a'));
  const dest = pino.destination({ dest: path, append: true, mkdir: false, sync: false });
  dest.on('error', (err: Error) => process.stderr.write(`wsgate: log file ${path}: ${err.message}\n`));
  const stream: DestinationStream = log.format === 'pretty' ? new PrettyFile(dest) : dest;
  FILES.set(stream, { path, dest });
  return pino(options, stream);
}

/** pino-pretty's formatter in front of a file: plain text, no colours. */
class PrettyFile implements DestinationStream {
  readonly #dest: FileDestination;
  readonly #format: (line: string) => string;
  constructor(dest: FileDestination) {
    this.#dest = dest;
    // Loaded only for this: most configurations never need pino-pretty in this thread.
    const pretty = createRequire(import.meta.url)('pino-pretty') as { prettyFactory(options: { colorize: boolean }): (line: string) => string };
    this.#format = pretty.prettyFactory({ colorize: false });
  }
  write(line: string): void {
    this.#dest.write(this.#format(line));
  }
}

/**
 * Reopens the logger's file at its configured path (after logrotate renamed
 * it) and logs that it did, into the new file; lines written before go to
 * the old one. Returns false, doing nothing, when the logger writes to
 * stdout or to a destination it was given.
 */
export function reopenLogFile(logger: Logger, signal?: string): boolean {
  const stream = (logger as unknown as Record<symbol, object | undefined>)[pino.symbols.streamSym];
  const file = stream === undefined ? undefined : FILES.get(stream);
  if (file === undefined) return false;
  try {
    file.dest.reopen();
  } catch (err) {
    logger.error({ err, file: file.path }, 'cannot reopen the log file');
    return false;
  }
  logger.info({ file: file.path, signal }, 'log file reopened');
  return true;
}
