import fc from 'fast-check';
import { compareHead } from './differential.js';
import { requestBytes } from './heads.js';

/**
 * The fuzz property of test/request-head-fuzz.test.ts, run for a given time
 * (seconds, argv[2]; default 180) instead of a fixed count: what `npm run
 * fuzz` falls back to where Jazzer.js's addon cannot be built. Not coverage
 * guided: the generator's heads, random seeds, until the time is up or a
 * disagreement is found (exit 1, with the head and the seed to replay it).
 */
const seconds = Number(process.argv[2] ?? 180);
const tally = new Map<string, number>();
let runs = 0;
const started = Date.now();
const result = fc.check(
  fc.property(requestBytes, (bytes) => {
    runs++;
    const c = compareHead(bytes);
    const key = `${c.fast}/${c.llhttp}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
    if (c.disagreement !== undefined) throw new Error(`${c.disagreement}\nhead: ${JSON.stringify(bytes.toString('latin1'))}`);
  }),
  { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false },
);
console.log(`${runs} heads in ${((Date.now() - started) / 1000).toFixed(0)} s (fast parser / llhttp):`);
for (const [key, n] of [...tally].sort((a, b) => b[1] - a[1])) console.log(`  ${key.padEnd(24)} ${n}`);
if (result.failed) {
  console.error(fc.defaultReportMessage(result));
  process.exitCode = 1;
} else {
  console.log('no disagreement');
}
