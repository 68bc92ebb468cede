// Entry point of a load worker process (forked by remote-runner.ts). It runs
// one LoadRunner and answers each phase request from the parent over IPC.
import { encodeHistogram } from './histogram.js';
import { LoadRunner } from './load-runner.js';
import type { FromWorker, ToWorker } from './worker-protocol.js';

let runner: LoadRunner | undefined;
let progressTimer: NodeJS.Timeout | undefined;

function send(msg: FromWorker, then?: () => void): void {
  if (process.connected && process.send !== undefined) process.send(msg, undefined, undefined, then);
  else then?.();
}

function sendProgress(): void {
  if (runner === undefined) return;
  send({ t: 'progress', counters: runner.counters(), rtt: encodeHistogram(runner.progress().rtt) });
}

function stopProgress(): void {
  if (progressTimer !== undefined) clearInterval(progressTimer);
  progressTimer = undefined;
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.t) {
    case 'init':
      runner = new LoadRunner(msg.slice);
      if (msg.progressMs > 0) progressTimer = setInterval(sendProgress, msg.progressMs);
      send({ t: 'ready' });
      return;
    case 'connect':
      await (runner as LoadRunner).connect();
      send({ t: 'connected' });
      return;
    case 'warmup':
      await (runner as LoadRunner).warmup();
      send({ t: 'warmed' });
      return;
    case 'run':
      await (runner as LoadRunner).run();
      send({ t: 'ran' });
      return;
    case 'close': {
      const result = await (runner as LoadRunner).close();
      stopProgress();
      // Disconnect only once the result is written: a pending IPC write is lost on close.
      send({ t: 'result', result }, () => {
        if (process.connected) process.disconnect();
      });
      return;
    }
  }
}

function onMessage(msg: ToWorker): void {
  handle(msg).catch((err: unknown) => {
    send({ t: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    runner?.abort();
    process.exit(1);
  });
}

// The parent went away (it finished, crashed or was killed): never outlive it.
function onDisconnect(): void {
  stopProgress();
  runner?.abort();
  setTimeout(() => process.exit(0), 100).unref();
}

process.on('message', onMessage);
process.on('disconnect', onDisconnect);
