// A soak load process (forked by load-process.ts): one load of one role, its
// own source address and open-file budget, reporting counts and the endings
// its clients saw every second.
import { ChattyLoad } from './chatty-load.js';
import { ChurnLoad } from './churn-load.js';
import { CloseTally } from './close-tally.js';
import type { FromLoad, LoadCounts, LoadSpec, ToLoad } from './load-protocol.js';
import { SlowLoad } from './slow-load.js';

const REPORT_MS = 1000;

interface Load {
  start(): void;
  stop(): Promise<void>;
  abort(): void;
  counts(): LoadCounts;
}

const tally = new CloseTally();
let load: Load | undefined;
let reporter: NodeJS.Timeout | undefined;

function send(msg: FromLoad, then?: () => void): void {
  if (!process.connected) return then?.();
  process.send?.(msg, undefined, undefined, () => then?.());
}

function create(spec: LoadSpec): Load {
  switch (spec.role) {
    case 'chatty':
      return new ChattyLoad(spec, tally);
    case 'churn':
      return new ChurnLoad(spec, tally);
    case 'slow':
      return new SlowLoad(spec, tally);
  }
}

async function handle(msg: ToLoad): Promise<void> {
  if (msg.t === 'init') {
    const l = (load = create(msg.spec));
    reporter = setInterval(() => send({ t: 'report', counts: l.counts(), closes: tally.take() }), REPORT_MS);
    return send({ t: 'ready' });
  }
  if (load === undefined) throw new Error(`"${msg.t}" before "init"`);
  if (msg.t === 'start') return load.start();
  clearInterval(reporter);
  await load.stop();
  send({ t: 'stopped', counts: load.counts(), closes: tally.take() }, () => process.exit(0));
}

process.on('message', (msg: ToLoad) => {
  handle(msg).catch((err: unknown) => {
    load?.abort();
    send({ t: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1));
  });
});

// Never outlive the parent: it finished, failed or was killed.
process.on('disconnect', () => {
  load?.abort();
  process.exit(0);
});
