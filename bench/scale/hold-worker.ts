// A c50k load process (forked by hold-process.ts): one Holder with its share
// of the connections, from its own source address, driven step by step.
import { Holder } from './holder.js';
import type { FromHolder, ToHolder } from './hold-protocol.js';

const PROGRESS_MS = 1000;

let holder: Holder | undefined;
let progress: NodeJS.Timeout | undefined;

function send(msg: FromHolder): void {
  if (process.connected) process.send?.(msg);
}

async function handle(msg: ToHolder): Promise<void> {
  if (msg.t === 'init') {
    const h = (holder = new Holder(msg.spec));
    progress = setInterval(() => send({ t: 'progress', counts: h.counts() }), PROGRESS_MS);
    return send({ t: 'ready' });
  }
  if (holder === undefined) throw new Error(`"${msg.t}" before "init"`);
  switch (msg.t) {
    case 'open':
      return send({ t: 'done', step: 'open', counts: await holder.open() });
    case 'echo':
      return send({ t: 'done', step: 'echo', counts: await holder.echo(msg.timeoutMs) });
    case 'cut':
      clearInterval(progress);
      return send({ t: 'done', step: 'cut', counts: await holder.cut() });
  }
}

process.on('message', (msg: ToHolder) => {
  handle(msg).catch((err: unknown) => {
    send({ t: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    holder?.abort();
    process.exit(1);
  });
});

// Never outlive the parent: it finished, failed or was killed.
process.on('disconnect', () => {
  holder?.abort();
  process.exit(0);
});
