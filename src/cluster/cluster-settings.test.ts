import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism, tmpdir } from 'node:os';
import { parseConfig } from '../config/load.js';
import { cpuQuota, restartOnly, workerCount } from './cluster-settings.js';

const base =
  'listeners: [{ address: 127.0.0.1:0 }]\nroutes: [{ match: { path: / }, upstream: a }]\nupstreams: { a: { targets: [{ url: ws://127.0.0.1:1 }] } }\n';

void test('workers: auto is one per usable core, fewer under a container CPU quota', () => {
  const auto = parseConfig(`${base}cluster: { workers: auto }\n`, {});
  assert.equal(workerCount(auto, undefined), availableParallelism());
  assert.equal(workerCount(auto, 'max 100000\n'), availableParallelism());
  assert.equal(workerCount(auto, '50000 100000\n'), 1);
  assert.equal(workerCount(auto, '100000 100000\n'), 1);
  assert.equal(cpuQuota('150000 100000'), 2);
  assert.equal(cpuQuota('garbage'), undefined);
  assert.equal(workerCount(parseConfig(`${base}cluster: { workers: 6 }\n`, {}), '100000 100000'), 6);
});

void test('a reload may not change the cluster settings: each one is named', () => {
  const now = parseConfig(base, {});
  const next = parseConfig(`${base}cluster: { workers: 4, redis: redis://127.0.0.1:6379 }\n`, {});
  assert.deepEqual(restartOnly(now, next), [
    'cluster.workers: cannot change while the gateway runs; restart it to apply',
    'cluster.redis: cannot change while the gateway runs; restart it to apply',
  ]);
  assert.deepEqual(restartOnly(now, parseConfig(base, {})), []);
});

void test('a reload may not change log.file', () => {
  const now = parseConfig(base, {});
  const next = parseConfig(`${base}log: { file: wsgate.log }\n`, {}, tmpdir());
  assert.deepEqual(restartOnly(now, next), ['log.file: cannot change while the gateway runs; restart it to apply']);
  assert.deepEqual(restartOnly(next, parseConfig(`${base}log: { file: wsgate.log, level: debug }\n`, {}, tmpdir())), []);
});
