// `${VAR}` / `${VAR:-default}` substitution on the raw text, before YAML
// parsing, so a variable can supply a number or a boolean as well as a
// string. Comments are left alone: a commented-out `${OLD_SECRET}` must not
// make the config invalid.

import { quote } from './problems.js';

export interface EnvReference {
  readonly name: string;
  /** 1-based line of the reference in the original text. */
  readonly line: number;
  /** What was put in its place: a marker load.ts finds again after parsing, to name the key. */
  readonly placeholder: string;
}

export interface EnvSyntaxError {
  readonly line: number;
  readonly message: string;
}

export interface ExpandedEnv {
  readonly text: string;
  /** Variables that are unset and have no default; each replaced by its placeholder. */
  readonly missing: readonly EnvReference[];
  readonly malformed: readonly EnvSyntaxError[];
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Marker for an unset variable: plain-scalar-safe and not something a user would write. */
export function unsetPlaceholder(index: number): string {
  return `__WSGATE_UNSET_ENV_${index}__`;
}

/**
 * Where the comment starts on one line of YAML, or -1. A `#` starts a comment
 * at the line start or after whitespace, outside quotes; quotes only open a
 * string where a YAML scalar can start. Quoted strings spanning lines are not
 * followed (a line-by-line approximation, fine for config files).
 */
export function commentStart(line: string): number {
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    const prev = i === 0 ? ' ' : (line[i - 1] ?? ' ');
    if (quote === '"') {
      if (c === '\\') i++;
      else if (c === '"') quote = undefined;
    } else if (quote === "'") {
      if (c === "'") {
        if (line[i + 1] === "'") i++;
        else quote = undefined;
      }
    } else if (c === '#' && /\s/.test(prev)) {
      return i;
    } else if ((c === '"' || c === "'") && /[\s[{,:-]/.test(prev)) {
      quote = c;
    }
  }
  return -1;
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` (the default is used when VAR is
 * unset or empty, as in POSIX shells); `$${` is a literal `${`. Unset
 * variables without a default are collected, not thrown, so every problem of
 * a file can be reported at once.
 */
export function expandEnv(text: string, env: NodeJS.ProcessEnv): ExpandedEnv {
  const missing: EnvReference[] = [];
  const malformed: EnvSyntaxError[] = [];
  const lines = text.split('\n');
  const out: string[] = [];
  for (let n = 0; n < lines.length; n++) {
    const full = lines[n] ?? '';
    const cut = commentStart(full);
    const body = cut < 0 ? full : full.slice(0, cut);
    const comment = cut < 0 ? '' : full.slice(cut);
    let result = '';
    let i = 0;
    while (i < body.length) {
      const dollar = body.indexOf('$', i);
      if (dollar < 0) {
        result += body.slice(i);
        break;
      }
      result += body.slice(i, dollar);
      if (body.startsWith('$${', dollar)) {
        result += '${';
        i = dollar + 3;
        continue;
      }
      if (body[dollar + 1] !== '{') {
        result += '$';
        i = dollar + 1;
        continue;
      }
      const close = body.indexOf('}', dollar + 2);
      if (close < 0) {
        malformed.push({ line: n + 1, message: 'unclosed "${" (write $${ for a literal "${")' });
        result += body.slice(dollar);
        break;
      }
      const inner = body.slice(dollar + 2, close);
      const sep = inner.indexOf(':-');
      const name = sep < 0 ? inner : inner.slice(0, sep);
      if (!NAME_RE.test(name)) {
        malformed.push({ line: n + 1, message: `${quote(`\${${inner}}`)} is not a variable reference (use \${NAME} or \${NAME:-default})` });
      } else {
        const value = env[name];
        if (sep >= 0) {
          result += value === undefined || value === '' ? inner.slice(sep + 2) : value;
        } else if (value === undefined) {
          const placeholder = unsetPlaceholder(missing.length);
          missing.push({ name, line: n + 1, placeholder });
          result += placeholder;
        } else {
          result += value;
        }
      }
      i = close + 1;
    }
    out.push(result + comment);
  }
  return { text: out.join('\n'), missing, malformed };
}
