// How configuration problems are named and reported: one `path: what is
// wrong` line each, all of them at once, in one error with a stable code.

export type PathSegment = string | number;

export interface Problem {
  readonly path: readonly PathSegment[];
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  override name = 'ConfigError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = Object.freeze([...problems]);
  }
}

const PLAIN_KEY_RE = /^[A-Za-z0-9_-]+$/;

/** Control characters (C0, DEL, C1) and the Unicode line separators: none may reach a problem's text raw. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const MAX_QUOTED = 80;
const MAX_PARSER_MESSAGE = 200;

function escapeUnprintable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A user's value inside a message, in double quotes: a problem stays one line
 * (a newline in a value must not start what reads as another problem), no
 * terminal escape gets through, and a huge value is cut.
 */
export function quote(value: string): string {
  const s = value.length > MAX_QUOTED ? `${value.slice(0, MAX_QUOTED)}…` : value;
  return `"${escapeUnprintable(s.replace(/["\\]/g, '\\$&'))}"`;
}

/**
 * A parser's message, cut: the YAML parser quotes the token it choked on, and
 * an unclosed quote makes that token the whole rest of the file.
 */
export function parserMessage(text: string): string {
  const s = shown(text);
  // Cut after escaping (a newline is six characters then), never inside an escape.
  return s.length > MAX_PARSER_MESSAGE ? `${s.slice(0, MAX_PARSER_MESSAGE).replace(/\\u[0-9a-f]{0,3}$/, '')}…` : s;
}

/** Text from outside (a file path, a parser's message) shown as is, but with control characters escaped. */
export function shown(text: string): string {
  return escapeUnprintable(text);
}

/** `upstreams.chat.targets[0].url`; keys that would be ambiguous are quoted (`upstreams["a.b"]`). */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY_RE.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${escapeUnprintable(JSON.stringify(seg))}]`;
  }
  return out === '' ? 'config' : out;
}

export function formatProblem(problem: Problem): string {
  return `${formatPath(problem.path)}: ${problem.message}`;
}

/** Optimal string alignment distance: Levenshtein plus adjacent transpositions ("tsl" → "tls" is 1). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((d[(i - 1) * cols + j] ?? 0) + 1, (d[i * cols + j - 1] ?? 0) + 1, (d[(i - 1) * cols + j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (d[(i - 2) * cols + j - 2] ?? 0) + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1] ?? 0;
}

/**
 * The known key closest to `key`, if close enough to be a typo: at most 2
 * edits, fewer for short keys so "url" does not suggest "tls".
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const limit = Math.min(2, Math.max(1, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance <= limit && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = closestKey(key, known);
  return suggestion === undefined ? 'unknown key' : `unknown key (did you mean ${suggestion}?)`;
}
