import { setFlagsFromString } from 'node:v8';

// V8 grows its young generation from 1 MiB per semi-space up to 16 MiB when
// survival is high, and a young collection copies every survivor, twice
// (once within the young generation, then into the old one). After a burst
// of new connections (a reconnect storm, a deploy), the young generation is
// full of sessions that will live for minutes, so the next two young
// collections each copy all of them: 1,000 inspect sessions are ~5 MB, a
// 15-25 ms pause in which no message moves (bench/README.md, chatty p99).
// Kept at 1 MiB, a young collection never copies more than that: pauses stay
// within a few ms, more of them, each cheap (a relayed message leaves no
// garbage that lives past the next read).
//
// The growth factor is read each time V8 would grow the space, so setting it
// at run time works; a maximum set on Node's command line
// (--max-semi-space-size, also through NODE_OPTIONS) is the operator's
// choice and left alone.
//
// The load tools want the same for another reason: a pause of the load
// generator or of the echo backend delays every message due meanwhile, so
// with 16 MiB halves their own young collections (5-13 ms each, a few per
// run) set a benchmark's p99 more than the proxy under test did.

/** Whether the operator sized the young generation on Node's command line. */
function youngGenerationSized(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  const flag = /^--max[-_]semi[-_]space[-_]size(=|$)/;
  return execArgv.some((a) => flag.test(a)) || (nodeOptions ?? '').split(/\s+/).some((a) => flag.test(a));
}

/** Keeps V8's young generation at its initial size, unless the operator sized it. */
export function keepYoungGenerationSmall(): void {
  if (!youngGenerationSized(process.execArgv, process.env.NODE_OPTIONS)) setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * Node flags for a child process that should keep its young generation small too (a load worker):
 * none when the operator sized it, since the child inherits that command line and environment.
 */
export function smallYoungGenerationFlags(): string[] {
  return youngGenerationSized(process.execArgv, process.env.NODE_OPTIONS) ? [] : ['--max-semi-space-size=1'];
}
