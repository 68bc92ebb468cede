// The deployment files under deploy/ and what docs/deployment.md promises about
// them: every YAML file parses, every wsgate config in them passes `wsgate check`,
// the Kubernetes objects drain a pod before it is killed, the HAProxy config
// passes `haproxy -c`, and the text-only files (Dockerfile, systemd unit, nginx)
// carry their essentials. Timeouts are checked against the config they front.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { findBinary } from './process-helpers.js';

const ROOT = join(import.meta.dirname, '..');
const DEPLOY = join(ROOT, 'deploy');
const MAIN = join(ROOT, 'src', 'main.ts');
const TSX = import.meta.resolve('tsx');

/** The variables the shipped configs need without a default; everything else takes the file's own default. */
const ENV: NodeJS.ProcessEnv = { WSGATE_ADMIN_TOKEN: 'deploy-test-token' };
const OVERRIDDEN = ['WSGATE_ADMIN_ADDRESS', 'WSGATE_WORKERS', 'REDIS_URL'];

function checkEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env, ...ENV };
  for (const name of OVERRIDDEN) delete env[name];
  return env;
}

/** Every file below `dir`, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(path)));
    else if (e.isFile()) out.push(path);
  }
  return out.sort();
}

function deployText(path: string): Promise<string> {
  return readFile(join(DEPLOY, path), 'utf8');
}

async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<{ code: number; out: string }> {
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' });
  child.on('error', () => {});
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code: code ?? -1, out };
}

async function wsgateCheck(file: string, signal: AbortSignal): Promise<void> {
  const r = await run(process.execPath, ['--import', TSX, MAIN, 'check', '-c', file], checkEnv(), signal);
  assert.equal(r.code, 0, `wsgate check -c ${relative(ROOT, file)} exited ${r.code}:\n${r.out}`);
  assert.match(r.out, /: ok \(/);
}

/** A config as wsgate would load it (defaults filled in, durations in ms), with the same environment as the check. */
function loaded(text: string): Config {
  return parseConfig(text, checkEnv());
}

/** `N`, `Nms`, `Ns`, `Nm`, `Nh` in milliseconds; a bare number is in `bareUnit`. */
function ms(text: string, bareUnit: 'ms' | 's'): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  assert.ok(m, `not a duration: ${text}`);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? bareUnit] as number;
  return Number(m[1]) * factor;
}

/** The first match's group 1, or a failed assertion naming what was looked for. */
function grab(text: string, re: RegExp, what: string): string {
  const m = re.exec(text);
  assert.ok(m?.[1] !== undefined, `${what}: no match for ${re}`);
  return m[1];
}

type K8sObject = { kind: string; metadata: { name: string }; spec?: Record<string, unknown>; data?: Record<string, string> };

async function kubernetesObjects(): Promise<K8sObject[]> {
  const out: K8sObject[] = [];
  for (const file of await filesUnder(join(DEPLOY, 'kubernetes'))) {
    if (!/\.ya?ml$/.test(file)) continue;
    for (const doc of parseAllDocuments(await readFile(file, 'utf8'))) {
      const obj = doc.toJS() as K8sObject | null;
      if (obj !== null && typeof obj.kind === 'string' && obj.kind !== 'Kustomization') out.push(obj);
    }
  }
  return out;
}

function one(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind} under deploy/kubernetes, found ${found.length}`);
  return found[0]!;
}

/** The wsgate.yaml embedded in the ConfigMap. */
async function configMapConfig(): Promise<string> {
  const cm = one(await kubernetesObjects(), 'ConfigMap');
  const text = cm.data?.['wsgate.yaml'];
  assert.equal(typeof text, 'string', 'the ConfigMap has no data key wsgate.yaml');
  return text!;
}

interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string } }[];
}

void describe('deploy/', () => {
  void it('every YAML file under deploy/ parses without errors or warnings', async () => {
    const files = (await filesUnder(DEPLOY)).filter((f) => /\.ya?ml$/.test(f));
    assert.ok(files.length >= 6, `only ${files.length} YAML files under deploy/`);
    for (const file of files) {
      const docs = parseAllDocuments(await readFile(file, 'utf8'));
      assert.ok(Array.isArray(docs) && docs.length > 0, `${relative(ROOT, file)}: no YAML document`);
      for (const doc of docs) {
        assert.deepEqual(
          doc.errors.map((e) => e.message),
          [],
          `${relative(ROOT, file)}`,
        );
        assert.deepEqual(
          doc.warnings.map((e) => e.message),
          [],
          `${relative(ROOT, file)}`,
        );
      }
    }
  });

  void it('deploy/wsgate.yaml passes wsgate check', { timeout: 60_000 }, async (t) => {
    await wsgateCheck(join(DEPLOY, 'wsgate.yaml'), t.signal);
  });

  void it('the wsgate.yaml in the Kubernetes ConfigMap passes wsgate check', { timeout: 60_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'wsgate-deploy-'));
    try {
      const file = join(dir, 'wsgate.yaml');
      await writeFile(file, await configMapConfig());
      await wsgateCheck(file, t.signal);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('the production configs use the cluster, a private admin listener, PROXY protocol and a drain timeout', async () => {
    const host = loaded(await deployText('wsgate.yaml'));
    assert.equal(host.listeners[0]?.proxyProtocol, true, 'deploy/wsgate.yaml: the listener reads the balancer’s PROXY header');
    assert.ok(host.admin, 'deploy/wsgate.yaml has an admin listener');
    assert.notEqual(host.admin.token, '', 'deploy/wsgate.yaml: admin.token is set');
    assert.equal(host.admin.host, '127.0.0.1', 'deploy/wsgate.yaml: the admin listener defaults to loopback');
    assert.equal(host.cluster.workers, 'auto');
    assert.match(host.cluster.redis, /^rediss?:\/\//);
    assert.ok(host.shutdown.drainTimeout > 0);

    const pod = loaded(await configMapConfig());
    assert.equal(pod.cluster.workers, 'auto', 'the ConfigMap: workers default to auto');
    assert.match(pod.cluster.redis, /^rediss?:\/\//);
    assert.equal(pod.watch, true, 'the ConfigMap: watch: true picks up ConfigMap updates');
    assert.ok(pod.admin && pod.admin.token !== '');
  });

  void it('the Deployment drains a pod before it is killed, and probes the admin listener', async () => {
    const objects = await kubernetesObjects();
    const config = loaded(await configMapConfig());
    assert.ok(config.admin);
    const adminPort = config.admin.port;
    const listenerPort = config.listeners[0]!.port;

    const deployment = one(objects, 'Deployment');
    const template = (deployment.spec as { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }).template;
    const pod = template.spec;
    const c = pod.containers.find((x) => x.name === 'wsgate') ?? pod.containers[0]!;
    const portNumber = (p: string | number | undefined): number | undefined => (typeof p === 'number' ? p : c.ports?.find((x) => x.name === p)?.containerPort);

    assert.equal(c.readinessProbe?.httpGet?.path, '/readyz', 'readiness probe on /readyz');
    assert.equal(portNumber(c.readinessProbe?.httpGet?.port), adminPort, 'readiness probe on the admin port');
    assert.equal(c.livenessProbe?.httpGet?.path, '/healthz', 'liveness probe on /healthz (never /readyz: a draining pod is alive)');
    assert.equal(portNumber(c.livenessProbe?.httpGet?.port), adminPort, 'liveness probe on the admin port');
    assert.ok(
      c.ports?.some((p) => p.containerPort === listenerPort),
      `container port ${listenerPort} (the listener)`,
    );

    const preStop = c.lifecycle?.preStop?.exec?.command;
    assert.ok(preStop, 'a preStop hook');
    assert.equal(preStop[0], 'sleep', 'the preStop hook sleeps');
    const sleepMs = ms(preStop[1] ?? '', 's');
    assert.ok(sleepMs > 0);

    const grace = pod.terminationGracePeriodSeconds;
    assert.equal(typeof grace, 'number', 'terminationGracePeriodSeconds is set');
    const drain = config.shutdown.drainTimeout;
    assert.ok(grace! * 1000 > drain, `terminationGracePeriodSeconds ${grace}s > shutdown.drainTimeout ${drain}ms`);
    assert.ok(grace! * 1000 > drain + sleepMs, `terminationGracePeriodSeconds ${grace}s > drainTimeout ${drain}ms + preStop sleep ${sleepMs}ms`);

    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, 'resource requests');
    assert.ok(c.resources?.limits?.memory, 'a memory limit');
    assert.equal(pod.securityContext?.runAsNonRoot, true, 'runAsNonRoot');
    assert.notEqual(pod.securityContext?.runAsUser, 0);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false);

    // The config reaches the file the container reads, as a directory mount (a subPath mount never updates).
    const cm = one(objects, 'ConfigMap');
    const file = grab((c.args ?? []).join(' '), /-c (\S+)/, 'the container’s -c argument');
    const volume = pod.volumes?.find((v) => v.configMap?.name === cm.metadata.name);
    assert.ok(volume, `a volume from ConfigMap ${cm.metadata.name}`);
    const mount = c.volumeMounts?.find((m) => m.name === volume.name);
    assert.ok(mount, 'the ConfigMap volume is mounted');
    assert.equal(mount.subPath, undefined, 'no subPath: the kubelet would never update it');
    assert.equal(join(mount.mountPath, 'wsgate.yaml'), file, 'wsgate reads the mounted wsgate.yaml');
    assert.equal(dirname(file), mount.mountPath);

    // Service and PodDisruptionBudget select these pods.
    const labels = template.metadata.labels;
    const matches = (selector: Record<string, string> | undefined): boolean =>
      selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
    const pdb = one(objects, 'PodDisruptionBudget');
    assert.ok(matches((pdb.spec as { selector?: { matchLabels?: Record<string, string> } }).selector?.matchLabels), 'the PDB selects the pods');
    const pdbSpec = pdb.spec as { maxUnavailable?: number | string; minAvailable?: number | string };
    assert.ok(pdbSpec.maxUnavailable !== undefined || pdbSpec.minAvailable !== undefined, 'the PDB sets a budget');
    const service = one(objects, 'Service');
    const svc = service.spec as { selector?: Record<string, string>; ports: { port: number; targetPort: string | number }[] };
    assert.ok(matches(svc.selector), 'the Service selects the pods');
    assert.ok(
      svc.ports.every((p) => portNumber(p.targetPort) !== adminPort),
      'the Service does not expose the admin port',
    );
    assert.ok(
      svc.ports.some((p) => portNumber(p.targetPort) === listenerPort),
      'the Service exposes the listener',
    );
  });

  void it('haproxy -c accepts the HAProxy config, which fronts the instances as deploy/wsgate.yaml configures them', { timeout: 30_000 }, async (t) => {
    const haproxy = findBinary('haproxy');
    assert.ok(haproxy, 'haproxy is not installed (looked on PATH and in /usr/sbin): install it, e.g. apt-get install haproxy (.ci/run does)');
    const cfgPath = join(DEPLOY, 'haproxy', 'haproxy.cfg');
    // -dW: warnings count as errors.
    const r = await run(haproxy, ['-dW', '-c', '-f', cfgPath], process.env, t.signal);
    assert.equal(r.code, 0, `haproxy -c -f deploy/haproxy/haproxy.cfg:\n${r.out}`);

    const cfg = await readFile(cfgPath, 'utf8');
    const config = loaded(await deployText('wsgate.yaml'));
    const ping = config.relay.pingInterval;
    assert.match(cfg, /^\s*mode tcp\s*$/m);
    assert.match(cfg, /^\s*balance leastconn\s*$/m);
    assert.match(cfg, /\bsend-proxy-v2\b/);
    assert.match(cfg, /^\s*option httpchk\b/m);
    assert.match(cfg, /\/readyz\b/);
    assert.equal(Number(grab(cfg, /\bcheck port (\d+)/, 'check port')), config.admin?.port, 'health checks go to the admin port');
    for (const m of cfg.matchAll(/^\s*server \S+ \S+:(\d+)/gm)) assert.equal(Number(m[1]), config.listeners[0]!.port, 'servers are the listener port');
    for (const which of ['client', 'server', 'tunnel']) {
      const timeout = ms(grab(cfg, new RegExp(`^\\s*timeout ${which} (\\S+)`, 'm'), `timeout ${which}`), 'ms');
      assert.ok(timeout > ping, `timeout ${which} (${timeout}ms) > relay.pingInterval (${ping}ms)`);
    }
  });

  void it('the nginx stream config sends the PROXY header and outlasts the ping interval', async () => {
    const cfg = await deployText('nginx/wsgate-stream.conf');
    const ping = loaded(await deployText('wsgate.yaml')).relay.pingInterval;
    assert.match(cfg, /^stream \{/m);
    assert.doesNotMatch(cfg, /^\s*http \{/m);
    assert.match(cfg, /^\s*proxy_protocol on;/m);
    assert.match(cfg, /^\s*least_conn;/m);
    const timeout = ms(grab(cfg, /^\s*proxy_timeout (\S+);/m, 'proxy_timeout'), 's');
    assert.ok(timeout > ping, `proxy_timeout (${timeout}ms) > relay.pingInterval (${ping}ms)`);
  });

  void it('the Dockerfile builds the native core, runs as non-root under tini and stops with SIGTERM', async () => {
    const text = await deployText('docker/Dockerfile');
    // Continuation lines joined, comments dropped.
    const lines = text
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const from = lines.filter((l) => /^FROM /i.test(l));
    assert.ok(from.length >= 2, 'a multi-stage build');
    for (const f of from) assert.match(f, /^FROM node:20-bookworm-slim\b/);
    const build = lines.slice(0, lines.indexOf(from[1]!)).join('\n');
    for (const pkg of ['g++', 'make', 'python3']) assert.ok(build.includes(pkg), `the build stage installs ${pkg}`);
    assert.match(build, /RUN npm ci\b/);
    assert.match(build, /npm prune --omit=dev/);
    const runtime = lines.slice(lines.indexOf(from[1]!));
    const last = (instr: string): string | undefined => runtime.filter((l) => l.toUpperCase().startsWith(`${instr} `)).at(-1);
    const user = last('USER');
    assert.ok(user, 'a USER');
    assert.doesNotMatch(user, /^USER\s+(root|0)(:|$)/, 'USER is not root');
    assert.match(runtime.join('\n'), /apt-get install[^\n]*\btini\b/, 'tini is installed');
    assert.equal(last('ENTRYPOINT'), 'ENTRYPOINT ["/usr/bin/tini", "--"]');
    assert.equal(last('STOPSIGNAL'), 'STOPSIGNAL SIGTERM');
    const health = last('HEALTHCHECK') ?? '';
    assert.ok(health.includes('/healthz'), 'HEALTHCHECK on /healthz');
    const adminPort = Number(grab(health, /:(\d+)\/healthz/, 'HEALTHCHECK port'));
    const expose = last('EXPOSE') ?? '';
    assert.ok(expose.split(/\s+/).includes(String(adminPort)), `EXPOSE ${adminPort} (admin)`);
    assert.ok(expose.split(/\s+/).includes('8080'), 'EXPOSE 8080 (listener)');
    assert.match(last('CMD') ?? '', /dist\/main\.js", "start"/);
  });

  void it('the systemd unit reloads with SIGHUP and waits longer than the drain to stop', async () => {
    const unit = await deployText('systemd/wsgate.service');
    const drain = loaded(await deployText('wsgate.yaml')).shutdown.drainTimeout;
    const value = (key: string): string[] => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
    assert.ok(value('ExecReload').includes('/bin/kill -HUP $MAINPID'), 'ExecReload=/bin/kill -HUP $MAINPID');
    assert.deepEqual(value('KillSignal'), ['SIGTERM']);
    assert.match(value('LimitNOFILE')[0] ?? '', /^\d+$/, 'LimitNOFILE');
    assert.ok(Number(value('LimitNOFILE')[0]) >= 65536, 'LimitNOFILE is large enough for 2 descriptors per connection');
    const stop = ms(value('TimeoutStopSec')[0] ?? '', 's');
    assert.ok(stop > drain, `TimeoutStopSec (${stop}ms) > shutdown.drainTimeout (${drain}ms)`);
    const user = value('User')[0];
    assert.ok(user !== undefined && user !== 'root' && user !== '0', 'a dedicated User');
    assert.ok(value('ExecStart')[0]?.includes(' start -c '), 'ExecStart runs wsgate start -c');
    assert.deepEqual(value('NoNewPrivileges'), ['yes']);
    assert.deepEqual(value('MemoryDenyWriteExecute'), [], 'no MemoryDenyWriteExecute: V8 needs W+X pages');
  });

  void it('docs/deployment.md refers to every file under deploy/', async () => {
    const doc = await readFile(join(ROOT, 'docs', 'deployment.md'), 'utf8');
    for (const file of await filesUnder(DEPLOY)) {
      const path = relative(ROOT, file).split(sep).join('/');
      assert.ok(doc.includes(path), `docs/deployment.md does not mention ${path}`);
    }
  });
});
