// A primary and its workers, as `wsgate start` runs them: what the cluster tests share.
import assert from 'node:assert/strict';
import { freePort, rawExchange, statusOf, upgradeRequest } from './helpers.js';
import { openMany, type TaggedClient } from './resilience-helpers.js';
import type { Started } from './process-helpers.js';

export interface Ports {
  readonly port: number;
  readonly admin: number;
}

export async function ports(): Promise<Ports> {
  return { port: await freePort(), admin: await freePort() };
}

export function config(p: Ports, targets: readonly string[], extra = ''): string {
  return [
    `listeners: [{ address: 127.0.0.1:${p.port} }]`,
    `admin: { address: 127.0.0.1:${p.admin} }`,
    'routes: [{ match: { path: / }, upstream: app }]',
    `upstreams: { app: { targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}] } }`,
    'cluster: { workers: 2 }',
    'shutdown: { drainTimeout: 5s }',
    extra,
    '',
  ].join('\n');
}

export async function api(p: Ports, path: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${p.admin}${path}`, { method });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export interface WorkerInfo {
  readonly id: number;
  readonly pid: number;
  readonly connections: number;
}

export async function workers(p: Ports): Promise<WorkerInfo[]> {
  const { body } = await api(p, '/api/cluster');
  const [instance] = body.instances as Array<{ workers: WorkerInfo[] }>;
  return instance!.workers;
}

/**
 * Opens `n` clients at once until every worker has taken at least one of them. The kernel picks
 * the worker that accepts, and on a busy machine one may win a whole batch: such a batch is closed
 * and tried again (five times at most; the caller asserts the spread).
 */
export async function openSpread(p: Ports, n: number): Promise<TaggedClient[]> {
  const before = new Map((await workers(p)).map((w) => [w.id, w.connections]));
  const total = (ws: readonly WorkerInfo[]): number => ws.reduce((sum, w) => sum + w.connections, 0);
  const baseline = [...before.values()].reduce((a, b) => a + b, 0);
  for (let attempt = 1; ; attempt++) {
    const clients = await openMany(`ws://127.0.0.1:${p.port}/`, n, n);
    const now = await workers(p);
    if (now.every((w) => w.connections > (before.get(w.id) ?? 0)) || attempt === 5) return clients;
    closeAll(clients);
    const deadline = Date.now() + 10_000;
    while (total(await workers(p)) > baseline) {
      if (Date.now() > deadline) throw new Error('closed clients still counted by the workers');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function handshakeStatus(port: number): Promise<number> {
  return statusOf(await rawExchange(port, upgradeRequest('/'), /\r\n\r\n/));
}

export async function stop(gw: Started): Promise<void> {
  gw.child.kill('SIGTERM');
  const how = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('timeout'), 20_000))]);
  if (how !== 0) gw.child.kill('SIGKILL');
  assert.equal(how, 0, gw.err());
}

export function closeAll(clients: readonly TaggedClient[]): void {
  for (const c of clients) c.ws.terminate();
}
