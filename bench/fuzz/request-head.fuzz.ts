import { compareHead } from './differential.js';

/** Jazzer.js's global while it fuzzes; its tracer feeds libFuzzer's value profile. */
interface Jazzer {
  readonly tracer: { tracePcIndir(id: number, state: number): void };
}

/**
 * Jazzer.js fuzz target (`npm run fuzz`): libFuzzer's bytes are the first
 * bytes a client sends on a plain connection. The property is the one
 * test/request-head-fuzz.test.ts checks on generated heads: the fast
 * request-head parser never takes a head that llhttp, strict, would refuse
 * or read differently. A disagreement throws, and Jazzer.js saves the input.
 */
export function fuzz(data: Buffer): void {
  const c = compareHead(data);
  if (c.disagreement !== undefined) throw new Error(`parseUpgradeHead disagrees with llhttp: ${c.disagreement}`);
  // llhttp is C inside Node: its branches give libFuzzer no coverage. Each pair of verdicts (and
  // llhttp's reason for a refusal) counts as a state of its own instead, so inputs reaching a new
  // one are kept (with -use_value_profile=1).
  (globalThis as { Fuzzer?: Jazzer }).Fuzzer?.tracer.tracePcIndir(STATE_ID, stateOf(`${c.fast}|${c.llhttp}|${c.reason ?? ''}`));
}

const STATE_ID = 0x2d7a11;

/** FNV-1a, 16 bits: a small number per verdict. */
function stateOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) & 0xffff;
}
