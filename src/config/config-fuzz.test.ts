import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { ConfigError, parseConfig } from './load.js';
import { formatPath, type PathSegment } from './problems.js';

// The loader's promise, tried the way a careless or hostile config file would
// try it: whatever the text, parseConfig returns a valid Config or throws a
// ConfigError whose every problem is one line, `path.to.key: what is wrong`
// (or `line N: …` for YAML syntax), naming the key that is wrong — never
// another exception, never a message only zod or a stack trace could explain.

/** Every section and nearly every key of the schema, set to a valid value. */
const BASE = `
listeners:
  - address: 127.0.0.1:8080
    proxyProtocol: false
    ipAllow: [10.0.0.0/8, "::1"]
    ipDeny: [10.0.0.9]
  - address: 127.0.0.1:8443
    tls:
      cert: certs/server.pem
      key: certs/server-key.pem
      sni: [{ hosts: ["*.example.com", chat.example.com], cert: certs/e.pem, key: certs/e-key.pem }]
      minVersion: TLSv1.3
trustedProxies: [192.168.0.0/16]
admin: { address: 127.0.0.1:9901, token: secret, metrics: true }
routes:
  - name: chat
    match: { host: chat.example.com, path: /chat, headers: { x-tenant: blue, x-n: 5 } }
    upstream: chat
    stripPrefix: true
    allowedOrigins: ["https://chat.example.com"]
    allowMissingOrigin: false
    ipAllow: [10.0.0.0/8]
    ipDeny: []
    auth:
      jwt:
        secret: s3cret
        issuer: https://idp.example.com
        audience: chat
        from: [header:authorization, query:access_token, cookie:token, protocol]
        forwardClaims: { x-user-id: sub }
        jwksCooldown: 30s
        clockSkew: 10s
      apiKeys: { header: x-api-key, keys: [k1, k2] }
      forward: { url: "http://127.0.0.1:9100/auth", headers: [authorization], responseHeaders: [x-user-id], timeout: 2s }
    limits:
      maxConnections: 10
      perIp: { maxConnections: 5, handshakeRate: 10/s, handshakeBurst: 5 }
      idleTimeout: 1m
      maxLifetime: 1h
      maxMessageBytes: 64KiB
      messageRate: 100/s
      upstreamMessageRate: 0
      maxBufferedBytes: 1MiB
  - match: { path: / }
    upstream: chat
upstreams:
  chat:
    balance: hash
    hash: { key: "header:x-user-id" }
    targets:
      - { url: "ws://10.0.0.11:3000", weight: 2 }
      - { url: "wss://backend.internal:3443/base" }
    tls: { ca: certs/ca.pem, servername: backend.internal, verify: true }
    connectTimeout: 5s
    retries: 2
    healthCheck: { type: http, path: /health, interval: 5s, timeout: 2s, healthyThreshold: 2, unhealthyThreshold: 3 }
    outlier: { consecutiveFailures: 3, baseEjection: 10s, maxEjection: 5m, maxEjectionPercent: 50 }
    slowStart: 10s
    drainPeriod: 30s
    proxyProtocol: true
limits:
  maxConnections: 100000
  perIp: { maxConnections: 256, handshakeRate: 20/s, handshakeBurst: 40 }
  handshakeTimeout: 10s
  maxHeaderBytes: 16KiB
  idleTimeout: 10m
  maxLifetime: 0
  maxMessageBytes: 1MiB
  messageRate: 0
  upstreamMessageRate: 5/s
  maxBufferedBytes: 4MiB
relay: { mode: inspect, pingInterval: 30s, pongTimeout: 10s, validateUtf8: true }
shutdown: { drainTimeout: 30s }
cluster: { workers: 2, redis: "redis://127.0.0.1:6379", onRedisError: deny }
log: { level: info, format: json, accessLog: true, file: "" }
watch: true
pidFile: ""
`;

const ENV = { SET: '5', EMPTY: '' };
/**
 * Runs scale with WSGATE_FUZZ_SCALE (default 1: a few seconds in npm test). A
 * deeper run, e.g. WSGATE_FUZZ_SCALE=20, gives every key path every odd value.
 */
const SCALE = Math.max(1, Number(process.env.WSGATE_FUZZ_SCALE ?? 1) || 1);
const runs = (n: number): number => Math.round(n * SCALE);
/** An existing folder, so log.file's folder check passes for relative names. */
const BASE_DIR = process.cwd();

const KEY = String.raw`(?:[A-Za-z0-9_-]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])`;
const PATH = String.raw`(?:config|${KEY}(?:\.[A-Za-z0-9_-]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*)`;
/** `path.to.key: what is wrong`, or `line N: …` where no key can be named (YAML syntax, env syntax). */
const PROBLEM_RE = new RegExp(String.raw`^(line \d+|${PATH}): \S`);
/** What a message only zod, JavaScript or a stack trace could explain. */
const UNCLEAR_RE = /\[object |undefined|NaN|Invalid input|received|expected [a-z]+,|\bat .+\.(ts|js):\d+/;
const UNPRINTABLE_RE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

type Outcome = { readonly ok: true } | { readonly ok: false; readonly problems: readonly string[] };

/** Parses `text`; fails the test on anything but a Config or a well-formed ConfigError. */
function load(text: string): Outcome {
  try {
    const config = parseConfig(text, ENV, BASE_DIR);
    assert.ok(Object.isFrozen(config));
    return { ok: true };
  } catch (err) {
    if (!(err instanceof ConfigError))
      assert.fail(`not a ConfigError: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n--- for ---\n${text.slice(0, 2000)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.ok(err.problems.length > 0, 'a ConfigError names at least one problem');
    assert.equal(err.message, err.problems.join('\n'));
    for (const p of err.problems) {
      assert.match(p, PROBLEM_RE, 'each problem reads "path.to.key: what is wrong"');
      assert.doesNotMatch(p, UNPRINTABLE_RE, `one line, no control characters: ${JSON.stringify(p)}`);
      // The message, without the user's own text (a key may well be called "undefined").
      const message = p.slice(p.indexOf(': ') + 2).replace(/"(?:[^"\\]|\\.)*"/g, '""');
      assert.doesNotMatch(message, UNCLEAR_RE, `a clear message: ${p}`);
      assert.ok(p.length < 600, `a readable length: ${p.slice(0, 100)}…`);
    }
    return { ok: false, problems: err.problems };
  }
}

// --- a wrong value at every key path ----------------------------------------------------

const RAW = parse(BASE) as unknown;

function pathsOf(value: unknown, path: PathSegment[] = [], out: PathSegment[][] = []): PathSegment[][] {
  if (path.length > 0) out.push(path);
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...path, i], out));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) pathsOf(v, [...path, k], out);
  return out;
}

const PATHS = pathsOf(RAW);

const DELETE = Symbol('delete');

/** Odd values: wrong types, edges of every unit, and text no key expects. */
const ODD: readonly unknown[] = [
  0,
  -1,
  1.5,
  2 ** 53,
  1e308,
  -1e308,
  Infinity,
  -Infinity,
  NaN,
  '',
  ' ',
  '-5s',
  '1e999s',
  '9999999h',
  '1.5.5MiB',
  '10 s',
  '0x10',
  '1_000',
  '20/x',
  '-1/s',
  'ünï©ødé 🚀',
  '\u0000',
  'a\nb',
  '\u001b[31mred',
  'x'.repeat(5000),
  '${UNSET_VARIABLE}',
  '__proto__',
  null,
  true,
  false,
  [],
  [null],
  [1, 'a', {}],
  {},
  { a: 1 },
  { __proto__: null, constructor: 1 },
  DELETE,
];

function withValue(root: unknown, path: readonly PathSegment[], value: unknown): unknown {
  const copy = structuredClone(root) as Record<PathSegment, unknown>;
  let node = copy;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<PathSegment, unknown>;
  const last = path.at(-1)!;
  if (value !== DELETE) node[last] = value;
  else if (Array.isArray(node)) node.splice(last as number, 1);
  else delete node[last];
  return copy;
}

/**
 * A wrong value is reported at its own key: some problem names the changed
 * path, a key inside it, or a section around it. The one cross-reference a
 * change elsewhere may cause: routes naming an upstream that went away.
 */
function assertNamed(problems: readonly string[], path: readonly PathSegment[], value: unknown): void {
  const at = formatPath(value === DELETE && typeof path.at(-1) === 'number' ? path.slice(0, -1) : path);
  const related = problems.some((p) => {
    const named = p.slice(0, p.indexOf(': '));
    return (
      named === at || named.startsWith(`${at}.`) || named.startsWith(`${at}[`) || at.startsWith(`${named}.`) || at.startsWith(`${named}[`) || named === 'config'
    );
  });
  const crossRef = at.startsWith('upstreams') && problems.every((p) => /^routes\[\d+\]\.upstream: no upstream named /.test(p));
  assert.ok(related || crossRef, `${at} = ${String(JSON.stringify(value)).slice(0, 40)}: no problem names it:\n${problems.join('\n')}`);
}

function tryValue(path: readonly PathSegment[], value: unknown): void {
  const text = stringify(withValue(RAW, path, value));
  const outcome = load(text);
  if (!outcome.ok) assertNamed(outcome.problems, path, value);
}

void describe('config fuzz: a wrong value at every key path', () => {
  void test('the base config is valid, and covers every section', () => {
    assert.deepEqual(load(BASE), { ok: true });
    assert.ok(PATHS.length > 140, `${PATHS.length} key paths`);
  });

  void test('every key and every subtree, each replaced by odd values and removed', () => {
    // Each path gets two of the odd values (a different two along the list) and a removal:
    // every value meets every kind of key, and the sweep stays within a second or two.
    const perPath = Math.min(ODD.length, 2 * SCALE);
    PATHS.forEach((path, i) => {
      for (let k = 0; k < perPath; k++) tryValue(path, ODD[(i * perPath + k) % ODD.length]);
      tryValue(path, DELETE);
    });
  });

  void test('random values at random paths', () => {
    const value = fc.oneof(
      fc.constantFrom(...ODD),
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.double(),
      fc.integer(),
      fc.jsonValue({ maxDepth: 2, depthSize: 'xsmall' }),
    );
    fc.assert(
      fc.property(fc.constantFrom(...PATHS), value, (path, v) => tryValue(path, v)),
      { numRuns: runs(80) },
    );
  });
});

// --- random documents -------------------------------------------------------------------

/** Pieces of YAML (and of this config's grammar) that random documents are made of. */
const TOKENS = [
  'listeners:',
  'routes:',
  'upstreams:',
  'limits:',
  'targets:',
  'url:',
  'address:',
  ' ',
  '  ',
  '\n',
  '\n  ',
  '\n    ',
  '\r\n',
  '- ',
  '{',
  '}',
  '[',
  ']',
  ': ',
  ',',
  '&a ',
  '*a',
  '<<: ',
  '!!str ',
  '!!binary ',
  '!!int ',
  '!!set ',
  '!!omap ',
  '!custom ',
  '? ',
  '|',
  '>-',
  '"',
  "'",
  '#',
  '\t',
  '${SET}',
  '${UNSET}',
  '${EMPTY:-d}',
  '${1BAD}',
  '$${',
  '${',
  '---\n',
  '...\n',
  '%YAML 1.2\n',
  '\uFEFF',
  'ü',
  '\u0000',
  '\u001b',
  '\u2028',
  '1e999',
  '.inf',
  '-.nan',
  '0x1F',
  '0o7',
  '~',
  'null',
  'true',
  'yes',
  '2001-12-14',
  '__proto__',
  'constructor',
  'a',
  '127.0.0.1:0',
  'ws://h:1',
  '10s',
  '1MiB',
  '20/s',
];

void describe('config fuzz: random documents', () => {
  void test('token soup', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }), (tokens) => {
        load(tokens.join(''));
      }),
      { numRuns: runs(600) },
    );
  });

  void test('any JSON-like value, written as YAML', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 4, withNullPrototype: true, withObjectString: true }), (value) => {
        let text: string | undefined;
        try {
          text = stringify(value);
        } catch {
          return; // values YAML cannot write (cycles, symbols): not a document
        }
        if (typeof text === 'string') load(text);
      }),
      { numRuns: runs(300) },
    );
  });

  void test('the valid config with lines dropped, doubled, swapped, re-indented and spliced', () => {
    const lines = BASE.split('\n');
    const edit = fc.record({
      op: fc.constantFrom('drop', 'double', 'swap', 'indent', 'insert', 'splice'),
      at: fc.nat(),
      token: fc.constantFrom(...TOKENS),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        const l = [...lines];
        for (const { op, at, token } of edits) {
          const i = at % l.length;
          const line = l[i] ?? '';
          if (op === 'drop') l.splice(i, 1);
          else if (op === 'double') l.splice(i, 0, line);
          else if (op === 'swap') [l[i], l[(i + 1) % l.length]] = [l[(i + 1) % l.length] ?? '', line];
          else if (op === 'indent') l[i] = `  ${line}`;
          else if (op === 'insert') l.splice(i, 0, token);
          else {
            const j = at % (line.length + 1);
            l[i] = line.slice(0, j) + token + line.slice(j + 1);
          }
        }
        load(l.join('\n'));
      }),
      { numRuns: runs(150) },
    );
  });
});

// --- what the fuzzing found ---------------------------------------------------------------

const SMALL = (route: string, upstream = ''): string => `listeners: [{ address: 127.0.0.1:8080 }]
routes: [{ match: { path: / }, upstream: ${route} }]
upstreams: { app: { targets: [{ url: "ws://127.0.0.1:3000" }]${upstream} } }
`;

function problemsOf(text: string): readonly string[] {
  const outcome = load(text);
  assert.equal(outcome.ok, false, 'the config is refused');
  return outcome.ok ? [] : outcome.problems;
}

void describe('config fuzz: regressions', () => {
  void test('a value with a newline or an escape sequence stays on its problem’s line, escaped', () => {
    assert.deepEqual(problemsOf(SMALL('"a\\nb"')), ['routes[0].upstream: no upstream named "a\\u000ab" (known: app)']);
    assert.deepEqual(problemsOf(SMALL('"\\e[2J"')), ['routes[0].upstream: no upstream named "\\u001b[2J" (known: app)']);
    assert.deepEqual(problemsOf(SMALL('app', ', balance: hash, hash: { key: "header:a\\nb" }')), [
      'upstreams.app.hash.key: must be ip, header:NAME, cookie:NAME, query:NAME or claim:NAME ("a\\u000ab" is not a header name)',
    ]);
    assert.deepEqual(problemsOf(SMALL('app').replace('127.0.0.1:8080', '"x\\ny:80"')), ['listeners[0].address: must be host:port (bad host "x\\u000ay")']);
  });

  void test('a huge value is cut in its message', () => {
    const [p = ''] = problemsOf(SMALL('x'.repeat(5000)));
    assert.ok(p.length < 200, p);
    assert.match(p, /no upstream named "x+…"/);
  });

  void test('URLs with a tab, newline or space inside are refused, not silently joined', () => {
    assert.deepEqual(problemsOf(SMALL('app').replace('ws://127.0.0.1:3000', 'ws://10.0.0.1\\n0:3000')), [
      'upstreams.app.targets[0].url: must not contain spaces or control characters',
    ]);
    const forward = SMALL('app').replace('upstream: app }', 'upstream: app, auth: { forward: { url: "http://a\\tb/auth" } } }');
    assert.deepEqual(problemsOf(forward), ['routes[0].auth.forward.url: must not contain spaces or control characters']);
    const origin = SMALL('app').replace('upstream: app }', 'upstream: app, allowedOrigins: ["https://a\\nb.example"] }');
    assert.deepEqual(problemsOf(origin), ['routes[0].allowedOrigins[0]: must not contain spaces or control characters']);
  });

  void test('a header match on "__proto__" is refused, not dropped (the route would match without it)', () => {
    const text = SMALL('app').replace('path: / }', 'path: /, headers: { __proto__: secret } }');
    assert.deepEqual(problemsOf(text), ['routes[0].match.headers.__proto__: is not a valid header name']);
  });

  void test('file paths with a NUL, and a TLS servername with spaces, are refused at load', () => {
    const tls = SMALL('app', ', tls: { ca: "ca\\0.pem", servername: "backend internal" }');
    assert.deepEqual(problemsOf(tls), [
      'upstreams.app.tls.ca: must not contain a NUL character',
      'upstreams.app.tls.servername: must be a host name (no spaces or control characters)',
    ]);
    assert.deepEqual(problemsOf(`${SMALL('app')}log: { file: "a\\0b" }\npidFile: "p\\0"\n`), [
      'log.file: must not contain a NUL character',
      'pidFile: must not contain a NUL character',
    ]);
  });

  void test('a mapping used as a key is an unknown key, without a warning on stderr', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const problems = problemsOf(`${SMALL('app')}? { a: 1 }\n: x\n`);
      assert.equal(problems.length, 1);
      assert.match(problems[0] ?? '', /unknown key$/);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.map((w) => w.message),
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});
