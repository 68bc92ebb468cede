import { BenchError } from '../bench/bench-error.js';
import { parseBenchArgs, USAGE } from '../bench/options.js';
import { formatProgress, formatReport } from '../bench/report.js';
import { runLoad } from '../bench/run-load.js';
import type { BenchResult, LoadHooks } from '../bench/run-load.js';

export interface BenchIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const PROGRESS_MS = 500;

/** `wsgate bench URL [options]` (argv without "bench"). Exit code: 0 clean, 1 errors counted or the run failed, 2 usage, 130 interrupted. */
export async function runBench(argv: string[], io: BenchIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(USAGE);
    return 0;
  }
  let options;
  try {
    options = parseBenchArgs(argv);
  } catch (err) {
    if (!(err instanceof BenchError)) throw err;
    const hint = err.code === 'BENCH_USAGE' ? ' (see wsgate bench --help)' : '';
    io.stderr.write(`wsgate bench: ${err.message}${hint}\n`);
    return 2;
  }

  const tty = options.progress && io.stderr.isTTY === true;
  let lastReceived = 0;
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  const hooks: LoadHooks = {
    signal: controller.signal,
    ...(tty
      ? {
          progressMs: PROGRESS_MS,
          onProgress: (p) => {
            io.stderr.write(`\r\x1b[2K${formatProgress(p, lastReceived, PROGRESS_MS)}`);
            lastReceived = p.counters.received;
          },
        }
      : {}),
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let result: BenchResult;
  try {
    result = await runLoad(options, hooks);
  } catch (err) {
    if (tty) io.stderr.write('\r\x1b[2K');
    io.stderr.write(`wsgate bench: ${err instanceof Error ? err.message : String(err)}\n`);
    return controller.signal.aborted ? 130 : 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  if (tty) io.stderr.write('\r\x1b[2K');
  io.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : formatReport(result));
  return result.errorCount > 0 ? 1 : 0;
}
