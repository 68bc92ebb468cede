import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { commentStart } from './env.js';
import { ConfigError, parseConfig, substituteEnv } from './load.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(err.message, err.problems.join('\n'));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

void describe('substituteEnv', () => {
  void test('replaces a set variable', () => {
    assert.equal(substituteEnv('secret: ${JWT_SECRET}\n', { JWT_SECRET: 'abc' }), 'secret: abc\n');
  });

  void test('uses the default when unset or empty, the value when set', () => {
    assert.equal(substituteEnv('a: ${A:-x}', {}), 'a: x');
    assert.equal(substituteEnv('a: ${A:-x}', { A: '' }), 'a: x');
    assert.equal(substituteEnv('a: ${A:-x}', { A: 'y' }), 'a: y');
    assert.equal(substituteEnv('a: "${A:-}"', {}), 'a: ""');
    assert.equal(substituteEnv('u: ${URL:-http://h:1/p}', {}), 'u: http://h:1/p');
  });

  void test('a set but empty variable without default is substituted as empty', () => {
    assert.equal(substituteEnv('a: "${A}"', { A: '' }), 'a: ""');
  });

  void test('several references on one line', () => {
    assert.equal(substituteEnv('address: ${HOST}:${PORT}', { HOST: '0.0.0.0', PORT: '80' }), 'address: 0.0.0.0:80');
  });

  void test('an unset variable without default is an error naming it and its line', () => {
    const problems = problemsOf(() => substituteEnv('a: 1\nb: ${NOPE}\nc: ${ALSO_NOPE}\n', {}));
    assert.deepEqual(problems, ['line 2: environment variable NOPE is not set', 'line 3: environment variable ALSO_NOPE is not set']);
  });

  void test('$${ is a literal ${', () => {
    assert.equal(substituteEnv('a: $${NOT_A_VAR} ${B}', { B: 'b' }), 'a: ${NOT_A_VAR} b');
  });

  void test('a lone $ is left alone', () => {
    assert.equal(substituteEnv('a: pa$$word $x', {}), 'a: pa$$word $x');
  });

  void test('comments are not substituted', () => {
    const text = 'a: 1 # was ${OLD_SECRET}\n# token: ${GONE}\nb: "x # ${B}"\nc: http://h/#${C}\n';
    assert.equal(substituteEnv(text, { B: 'bee', C: 'frag' }), 'a: 1 # was ${OLD_SECRET}\n# token: ${GONE}\nb: "x # bee"\nc: http://h/#frag\n');
  });

  void test('malformed references are reported', () => {
    const problems = problemsOf(() => substituteEnv('a: ${1X}\nb: ${OPEN\n', {}));
    assert.equal(problems.length, 2);
    assert.match(problems[0] ?? '', /^line 1: "\$\{1X\}" is not a variable reference/);
    assert.match(problems[1] ?? '', /^line 2: unclosed "\$\{"/);
  });
});

void describe('commentStart', () => {
  void test('finds comments outside quotes only', () => {
    assert.equal(commentStart('a: 1 # c'), 5);
    assert.equal(commentStart('# c'), 0);
    assert.equal(commentStart('a: "x # y"'), -1);
    assert.equal(commentStart("a: 'it''s # not' # yes"), 17);
    assert.equal(commentStart('a: b#c'), -1);
    assert.equal(commentStart("a: don't # c"), 9);
  });
});

void describe('env substitution inside parseConfig', () => {
  const base = (extra: string): string => `listeners: [{ address: "127.0.0.1:\${PORT:-0}" }]
routes: [{ upstream: app }]
upstreams:
  app:
    targets: [{ url: "ws://\${BACKEND}", weight: \${WEIGHT:-1} }]
${extra}`;

  void test('values from the environment take their YAML type', () => {
    const config = parseConfig(base(''), { BACKEND: '10.0.0.1:3000', WEIGHT: '7', PORT: '8088' });
    assert.equal(config.listeners[0]?.port, 8088);
    assert.equal(config.upstreams.app?.targets[0]?.weight, 7);
    assert.equal(config.upstreams.app?.targets[0]?.host, '10.0.0.1');
  });

  void test('an unset variable is named at the key that uses it, with its line, and masks nothing else', () => {
    const problems = problemsOf(() => parseConfig(base('log: { level: loud }\n'), {}));
    assert.deepEqual(problems, [
      'upstreams.app.targets[0].url: environment variable BACKEND is not set (line 5)',
      'log.level: must be one of: trace, debug, info, warn, error',
    ]);
  });

  void test('an empty default leaves an empty admin token, not an error', () => {
    const config = parseConfig(base('admin:\n  token: ${WSGATE_ADMIN_TOKEN:-}  # optional\n'), { BACKEND: 'h:1' });
    assert.equal(config.admin?.token, '');
    const withToken = parseConfig(base('admin:\n  token: ${WSGATE_ADMIN_TOKEN:-}\n'), { BACKEND: 'h:1', WSGATE_ADMIN_TOKEN: 't0k' });
    assert.equal(withToken.admin?.token, 't0k');
  });
});
