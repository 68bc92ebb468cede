// Text → Config: env substitution → YAML → schema → cross-checks →
// normalisation → deep freeze. Every problem found on the way is collected
// and thrown together as one ConfigError.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Document } from 'yaml';
import { LineCounter, isNode, parseDocument } from 'yaml';
import type { z } from 'zod';
import { crossCheck } from './checks.js';
import { logFileProblem } from './file-checks.js';
import { expandEnv } from './env.js';
import type { EnvReference } from './env.js';
import { findInert } from './inert.js';
import { ConfigError, formatPath, parserMessage, shown, unknownKeyMessage } from './problems.js';
import type { PathSegment, Problem } from './problems.js';
import { configSchema } from './schema.js';
import type { ParsedConfig, ParsedLimitsOverride } from './schema.js';
import type { AuthConfig, Config, Limits, UpstreamConfig } from './types.js';

export { ConfigError } from './problems.js';

/** A problem ready to print, with the position it sorts by (0 when unknown). */
interface Located {
  readonly line: number;
  readonly text: string;
}

function lineProblems(found: readonly { line: number; message: string }[]): Located[] {
  return found.map((p) => ({ line: p.line, text: `line ${p.line}: ${p.message}` }));
}

function missingMessage(ref: EnvReference): string {
  return `environment variable ${ref.name} is not set`;
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in `text` (comments excepted).
 * Throws a ConfigError naming every unset variable and its line.
 */
export function substituteEnv(text: string, env: NodeJS.ProcessEnv = process.env): string {
  const expanded = expandEnv(text, env);
  const problems = [...lineProblems(expanded.malformed), ...lineProblems(expanded.missing.map((ref) => ({ line: ref.line, message: missingMessage(ref) })))];
  if (problems.length > 0) throw new ConfigError(sortByLine(problems));
  return expanded.text;
}

/** Reads and parses a config file; relative paths inside it are taken from the file's folder. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return (await readConfig(file, env)).config;
}

/** loadConfig(), with the text it parsed: a cluster primary hands its workers exactly what it validated. */
export async function readConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<{ readonly text: string; readonly config: Config }> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError([`${path}: cannot read the config file (${reason})`]);
  }
  return { text, config: parseConfig(text, env, dirname(path)) };
}

/**
 * Parses a YAML (or JSON) config. `baseDir` is where relative file paths in
 * it (TLS certificates, keys, CAs) are resolved from.
 */
export function parseConfig(text: string, env: NodeJS.ProcessEnv = process.env, baseDir: string = process.cwd()): Config {
  const expanded = expandEnv(text.replace(/^\uFEFF/, ''), env);
  const problems: Located[] = lineProblems(expanded.malformed);

  const lineCounter = new LineCounter();
  // logLevel 'error': a mapping used as a key ({ a: 1 }: x) is reported below as an unknown key, not also warned about on stderr.
  const doc = parseDocument(expanded.text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    const seen = new Set<number>();
    for (const e of doc.errors) {
      const line = lineCounter.linePos(e.pos[0]).line;
      // One mistake often yields several errors on one line; the first says it best.
      if (seen.has(line)) continue;
      seen.add(line);
      problems.push({ line, text: `line ${line}: ${parserMessage(e.message)}` });
    }
    problems.push(...lineProblems(expanded.missing.map((ref) => ({ line: ref.line, message: missingMessage(ref) }))));
    throw new ConfigError(sortByLine(problems));
  }

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new ConfigError([`config: ${shown(err instanceof Error ? err.message : String(err))}`]);
  }
  const lineOf = (path: readonly PathSegment[]): number => lineOfPath(doc, lineCounter, path);

  // Unset variables are named at the key they were used in, when it can be found.
  const envPaths: string[] = [];
  for (const ref of expanded.missing) {
    const paths = findPlaceholder(raw, ref.placeholder, []);
    if (paths.length === 0) {
      problems.push({ line: ref.line, text: `line ${ref.line}: ${missingMessage(ref)}` });
    }
    for (const path of paths) {
      envPaths.push(formatPath(path));
      problems.push({ line: ref.line, text: `${formatPath(path)}: ${missingMessage(ref)} (line ${ref.line})` });
    }
  }
  // A placeholder makes its value wrong in other ways too; the missing variable is the one problem there.
  const masked = (path: readonly PathSegment[]): boolean => {
    const p = formatPath(path);
    return envPaths.some((e) => p === e || p.startsWith(`${e}.`) || p.startsWith(`${e}[`));
  };
  const add = (p: Problem): void => {
    if (!masked(p.path)) problems.push({ line: lineOf(p.path), text: `${formatPath(p.path)}: ${p.message}` });
  };

  const knownKeys = new Map<string, readonly string[]>();
  const result = configSchema.safeParse(raw, { error: (iss) => describeIssue(iss, knownKeys) });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((s): s is PathSegment => typeof s !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        const known = knownKeys.get(formatPath(path)) ?? [];
        for (const key of issue.keys) add({ path: [...path, key], message: unknownKeyMessage(key, known) });
      } else {
        add({ path, message: issue.message });
      }
    }
  }
  for (const p of crossCheck(raw)) add(p);
  if (result.success && result.data.log.file !== '') {
    const problem = logFileProblem(resolve(baseDir, result.data.log.file));
    if (problem !== undefined) add({ path: ['log', 'file'], message: problem });
  }

  if (problems.length > 0 || !result.success) throw new ConfigError(sortByLine(problems));
  return deepFreeze(normalise(result.data, baseDir, findInert(raw)));
}

function sortByLine(problems: readonly Located[]): string[] {
  return problems
    .map((p, i) => ({ ...p, i }))
    .sort((a, b) => a.line - b.line || a.i - b.i)
    .map((p) => p.text);
}

/** Where the deepest node on `path` that exists in the document starts, as line.column for sorting. */
function lineOfPath(doc: Document, lineCounter: LineCounter, path: readonly PathSegment[]): number {
  for (let k = path.length; k >= 0; k--) {
    const node = k === 0 ? doc.contents : doc.getIn(path.slice(0, k), true);
    if (isNode(node) && node.range) {
      const pos = lineCounter.linePos(node.range[0]);
      // Fractional column keeps problems of one line in the order they appear on it.
      return pos.line + Math.min(pos.col, 99_999) / 100_000;
    }
  }
  return 0;
}

function findPlaceholder(value: unknown, placeholder: string, path: PathSegment[]): PathSegment[][] {
  if (typeof value === 'string') return value.includes(placeholder) ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => findPlaceholder(v, placeholder, [...path, i]));
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => (k.includes(placeholder) ? [[...path, k]] : findPlaceholder(v, placeholder, [...path, k])));
  }
  return [];
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
};

/** Messages in the `path: what is wrong` voice, for the issues that carry no message of their own. */
function describeIssue(iss: z.core.$ZodRawIssue, knownKeys: Map<string, readonly string[]>): string | undefined {
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'is required';
      const expected = EXPECTED[iss.expected] ?? iss.expected;
      return `must be ${expected}${iss.input === null ? ' (the value is empty)' : ''}`;
    }
    case 'invalid_value':
      return iss.values.length === 1 ? `must be ${String(iss.values[0])}` : `must be one of: ${iss.values.map(String).join(', ')}`;
    case 'too_small':
      if (iss.origin === 'array') return iss.minimum === 1 ? 'must not be empty' : `must have at least ${iss.minimum} entries`;
      if (iss.origin === 'string') return 'must not be empty';
      return iss.inclusive === false ? `must be more than ${iss.minimum}` : `must be at least ${iss.minimum}`;
    case 'too_big':
      return iss.inclusive === false ? `must be less than ${iss.maximum}` : `must be at most ${iss.maximum}`;
    case 'unrecognized_keys': {
      const inst = iss.inst as { _zod?: { def?: { shape?: object } } } | undefined;
      const path = (iss.path ?? []).filter((s): s is PathSegment => typeof s !== 'symbol');
      knownKeys.set(formatPath(path), Object.keys(inst?._zod?.def?.shape ?? {}));
      return 'unknown key';
    }
    case 'invalid_format':
      return 'has the wrong format';
    case 'invalid_union':
      return 'has the wrong type';
    case 'not_multiple_of':
      return `must be a multiple of ${String(iss.divisor)}`;
    case 'invalid_key':
      return 'has an invalid key';
    case 'invalid_element':
      return 'has an invalid entry';
    case 'custom':
      return undefined;
  }
}

// --- normalisation: the schema's output → types.ts -----------------------------

function normalise(p: ParsedConfig, baseDir: string, inert: readonly string[]): Config {
  const file = (f: string): string => resolve(baseDir, f);
  const limits: Limits = p.limits;
  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, u] of Object.entries(p.upstreams)) {
    upstreams[name] = {
      name,
      balance: u.balance,
      hash: u.hash?.key,
      targets: u.targets.map((t) => ({ ...t.url, weight: t.weight })),
      tls: u.tls && {
        ca: u.tls.ca === undefined ? undefined : file(u.tls.ca),
        servername: u.tls.servername,
        verify: u.tls.verify,
      },
      connectTimeout: u.connectTimeout,
      retries: u.retries,
      healthCheck: u.healthCheck,
      outlier: u.outlier,
      slowStart: u.slowStart,
      drainPeriod: u.drainPeriod,
      proxyProtocol: u.proxyProtocol,
    };
  }
  return {
    listeners: p.listeners.map((l) => ({
      address: l.address.address,
      host: l.address.host,
      port: l.address.port,
      tls: l.tls && {
        cert: file(l.tls.cert),
        key: file(l.tls.key),
        sni: l.tls.sni.map((s) => ({ hosts: s.hosts, cert: file(s.cert), key: file(s.key) })),
        minVersion: l.tls.minVersion,
      },
      proxyProtocol: l.proxyProtocol,
      http2: l.http2 ?? l.tls !== undefined,
      ipAllow: l.ipAllow,
      ipDeny: l.ipDeny,
    })),
    trustedProxies: p.trustedProxies,
    admin: p.admin && { ...p.admin.address, token: p.admin.token, metrics: p.admin.metrics },
    routes: p.routes.map((r, i) => ({
      name: r.name ?? `route-${i}`,
      match: { host: r.match.host, path: r.match.path, headers: r.match.headers },
      upstream: r.upstream,
      stripPrefix: r.stripPrefix,
      allowedOrigins: r.allowedOrigins,
      allowMissingOrigin: r.allowMissingOrigin,
      ipAllow: r.ipAllow,
      ipDeny: r.ipDeny,
      auth: r.auth && normaliseAuth(r.auth, file),
      limits: mergeLimits(limits, r.limits),
    })),
    upstreams,
    limits,
    relay: p.relay,
    shutdown: p.shutdown,
    cluster: p.cluster,
    log: { ...p.log, file: p.log.file === '' ? '' : file(p.log.file) },
    watch: p.watch,
    pidFile: p.pidFile === '' ? '' : file(p.pidFile),
    inert,
  };
}

function normaliseAuth(a: NonNullable<ParsedConfig['routes'][number]['auth']>, file: (f: string) => string): AuthConfig {
  return {
    jwt: a.jwt && {
      secret: a.jwt.secret,
      publicKey: a.jwt.publicKey === undefined ? undefined : file(a.jwt.publicKey),
      jwksUrl: a.jwt.jwksUrl,
      issuer: a.jwt.issuer,
      audience: a.jwt.audience,
      from: a.jwt.from,
      forwardClaims: a.jwt.forwardClaims,
      jwksCooldown: a.jwt.jwksCooldown,
      clockSkew: a.jwt.clockSkew,
    },
    apiKeys: a.apiKeys && { header: a.apiKeys.header, keys: a.apiKeys.keys },
    forward: a.forward && {
      url: a.forward.url,
      headers: a.forward.headers,
      responseHeaders: a.forward.responseHeaders,
      timeout: a.forward.timeout,
    },
  };
}

/** A route's overrides over the top-level limits; perIp merges key by key. */
function mergeLimits(base: Limits, o: ParsedLimitsOverride | undefined): Limits {
  if (o === undefined) return base;
  return {
    maxConnections: o.maxConnections ?? base.maxConnections,
    perIp: {
      maxConnections: o.perIp?.maxConnections ?? base.perIp.maxConnections,
      handshakeRate: o.perIp?.handshakeRate ?? base.perIp.handshakeRate,
      handshakeBurst: o.perIp?.handshakeBurst ?? base.perIp.handshakeBurst,
    },
    handshakeTimeout: base.handshakeTimeout,
    maxHeaderBytes: base.maxHeaderBytes,
    idleTimeout: o.idleTimeout ?? base.idleTimeout,
    maxLifetime: o.maxLifetime ?? base.maxLifetime,
    maxMessageBytes: o.maxMessageBytes ?? base.maxMessageBytes,
    messageRate: o.messageRate ?? base.messageRate,
    upstreamMessageRate: o.upstreamMessageRate ?? base.upstreamMessageRate,
    maxBufferedBytes: o.maxBufferedBytes ?? base.maxBufferedBytes,
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
