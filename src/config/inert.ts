// Keys the config accepts (they are part of the documented contract) but the
// gateway does not act on yet. Setting one is not an error; the gateway warns
// at start for each match so nobody believes a feature is protecting them
// when it is not. Delete a row when its feature lands (and its note in
// docs/configuration.md).

import type { PathSegment } from './problems.js';
import { formatPath } from './problems.js';

export interface InertKey {
  /** Dotted path; `[]` is every element of a list, `*` every entry of a mapping. */
  readonly path: string;
  /** Inert only when the user's value satisfies this; absent = whenever the key is set. */
  readonly when?: (value: unknown) => boolean;
}

export const NOT_YET_IMPLEMENTED: readonly InertKey[] = [];

type Step = { readonly key: string; readonly each: 'list' | 'map' | undefined };

function compile(path: string): Step[] {
  return path.split('.').map((part) => {
    if (part === '*') return { key: '', each: 'map' as const };
    if (part.endsWith('[]')) return { key: part.slice(0, -2), each: 'list' as const };
    return { key: part, each: undefined };
  });
}

const COMPILED = NOT_YET_IMPLEMENTED.map((k) => ({ steps: compile(k.path), when: k.when }));

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The set-but-inert keys of a config, as formatted paths ("routes[0].auth").
 * Works on the user's input (after YAML, before defaults): "set" means the
 * user wrote the key, not that a default filled it.
 */
export function findInert(raw: unknown): string[] {
  const found: string[] = [];
  for (const { steps, when } of COMPILED) {
    walk(raw, steps, 0, [], (value, path) => {
      if (when === undefined || when(value)) found.push(formatPath(path));
    });
  }
  return found;
}

function walk(node: unknown, steps: readonly Step[], index: number, path: PathSegment[], hit: (value: unknown, path: PathSegment[]) => void): void {
  const step = steps[index];
  if (step === undefined) {
    hit(node, path);
    return;
  }
  if (step.each === 'map') {
    if (!isRecord(node)) return;
    for (const [k, v] of Object.entries(node)) walk(v, steps, index + 1, [...path, k], hit);
    return;
  }
  if (!isRecord(node) || !Object.hasOwn(node, step.key) || node[step.key] === undefined) return;
  const value = node[step.key];
  if (step.each === 'list') {
    if (!Array.isArray(value)) return;
    value.forEach((v, i) => walk(v, steps, index + 1, [...path, step.key, i], hit));
    return;
  }
  walk(value, steps, index + 1, [...path, step.key], hit);
}
