// One soak run: the backends and the gateway, the load processes, the faults
// on their timetable and a sample of the gateway every few seconds; then the
// load is stopped, the gateway must let go of every session, and everything
// is torn down. What it saw is returned for the report (soak.ts).
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { sourceAddressFor } from '../../src/bench/options.js';
import { freePort } from '../suite/proc.js';
import { Admin } from './admin.js';
import { FaultSchedule } from './faults.js';
import type { FaultRecord } from './faults.js';
import { LoadProcess } from './load-process.js';
import type { CloseRecord, LoadCounts, LoadSpec } from './load-protocol.js';
import { echoBackend, floodBackend, GatewayProcess, gatewayConfig } from './processes.js';
import type { GatewayLayout } from './processes.js';
import { sample } from './sampler.js';
import type { Sample } from './sampler.js';
import type { SoakSettings } from './settings.js';

const OPEN_TIMEOUT_MS = 180_000;
const HANDSHAKE_TIMEOUT_MS = 15_000;
/** After the load has stopped, the gateway must be down to 0 sessions within this. */
const RELEASE_WAIT_MS = 15_000;
const PROGRESS_MS = 5000;
/** Source addresses: the chatty loaders take the first indexes, then churn, slow, and the vanishing processes. */
const ADDRESS_SLOTS = 250;

export interface SoakEnv {
  readonly root: string;
  readonly tmp: string;
  /** The command that runs `wsgate` (node, tsx for a .ts entry, the entry point). */
  readonly wsgate: readonly string[];
  progress(line: string): void;
}

export interface LoadSummary {
  readonly name: string;
  readonly role: string;
  readonly localAddress: string | undefined;
  readonly counts: LoadCounts;
  readonly failure: string | undefined;
}

export interface SoakResult {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly rampSeconds: number;
  readonly configText: string;
  readonly gatewayPid: number;
  readonly idle: Sample;
  readonly samples: readonly Sample[];
  /** The gateway once the load had stopped: it must hold no session. */
  readonly afterLoad: Sample | undefined;
  readonly releaseSeconds: number;
  readonly faults: readonly FaultRecord[];
  readonly closes: readonly CloseRecord[];
  readonly loads: readonly LoadSummary[];
  readonly sampleFailures: readonly string[];
  /** Set when the gateway exited during the load. */
  readonly gatewayExit: string | undefined;
  readonly logFile: string;
  readonly stderrFile: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function spec(s: SoakSettings, url: string, localAddress: string | undefined, over: Partial<LoadSpec>): LoadSpec {
  return {
    role: 'chatty',
    url,
    localAddress,
    connections: 0,
    ramp: s.ramp,
    ratePerConnection: s.ratePerConnection,
    quietShare: s.quietShare,
    size: s.size,
    churnRate: s.churnRate,
    churnConcurrency: s.churnConcurrency,
    slowPath: '/flood',
    slowShortPauseMs: 2000,
    // Past pingInterval + pongTimeout (twice: the first ping may come late in a quiet spell) and the 2 s close timeout.
    slowLongPauseMs: (s.pingIntervalS + 2 * s.pongTimeoutS + 2 + 8) * 1000,
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    idleTimeoutMs: s.idleTimeoutS * 1000,
    ...over,
  };
}

function sum(loads: readonly LoadProcess[], key: keyof LoadCounts): number {
  return loads.reduce((a, l) => a + l.latest[key], 0);
}

function rowLine(x: Sample): string {
  const m = Math.floor(x.t / 60);
  const sec = String(Math.round(x.t % 60)).padStart(2, '0');
  return (
    `  [${m}:${sec}] RSS ${x.rssMiB.toFixed(1)} MiB, heap ${x.heapUsedMiB.toFixed(1)} MiB, handles ${x.handles}/${x.resources}, ` +
    `fds ${x.fds}, sessions ${x.sessions}, loop lag p99 ${x.lagP99Ms.toFixed(2)} ms`
  );
}

export async function runSoak(env: SoakEnv, s: SoakSettings): Promise<SoakResult> {
  const [gwPort, adminPort, p1, p2, p3, floodPort] = (await Promise.all(Array.from({ length: 6 }, () => freePort()))) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const echoes = [p1, p2, p3].map((p, i) => echoBackend(`echo backend ${i + 1}`, p, env.wsgate, env.root));
  const flood = floodBackend(floodPort, env.root);
  const backends = [...echoes, flood];
  const loads: LoadProcess[] = [];
  let gateway: GatewayProcess | undefined;
  try {
    await Promise.all(backends.map((b) => b.start()));
    const layout: GatewayLayout = {
      port: gwPort,
      adminPort,
      echoUrls: echoes.map((e) => e.url),
      floodUrl: flood.url,
      pingInterval: `${s.pingIntervalS}s`,
      pongTimeout: `${s.pongTimeoutS}s`,
      idleTimeout: `${s.idleTimeoutS}s`,
      drainPeriod: `${s.drainPeriodS}s`,
    };
    const configText = gatewayConfig(layout, { weight0: 1, maxMessageBytes: 64 * 1024 });
    const logFile = join(env.tmp, 'gateway.log');
    const stderrFile = join(env.tmp, 'gateway.stderr');
    gateway = await GatewayProcess.start(env.wsgate, env.root, join(env.tmp, 'wsgate.yaml'), configText, logFile, stderrFile);
    const gw = gateway;
    const admin = new Admin(adminPort);
    const url = `ws://127.0.0.1:${gwPort}/`;
    const salt = randomInt(254 * 256);
    const address = (i: number): string | undefined => sourceAddressFor(url, i, ADDRESS_SLOTS, salt);
    const closes: CloseRecord[] = [];
    const sink = (records: readonly CloseRecord[]): void => {
      for (const r of records) closes.push(r);
    };

    await sleep(1000);
    const idle = await sample(admin, gw.pid, Date.now());
    env.progress(
      `  gateway pid ${gw.pid} up: RSS ${idle.rssMiB.toFixed(1)} MiB, ${idle.fds} fds; opening ${s.connections} chatty connections from ${s.loaders} load processes…`,
    );

    // The chatty connections first: the measured time starts once they are open.
    const rampStart = Date.now();
    const chatty = await Promise.all(
      Array.from({ length: s.loaders }, (_, i) => {
        const n = Math.floor(s.connections / s.loaders) + (i < s.connections % s.loaders ? 1 : 0);
        return LoadProcess.start(`chatty ${i + 1}`, spec(s, url, address(i), { connections: n, ramp: s.ramp / s.loaders }), sink);
      }),
    );
    loads.push(...chatty);
    for (let next = Date.now() + PROGRESS_MS; sum(chatty, 'open') < s.connections;) {
      if (Date.now() - rampStart > OPEN_TIMEOUT_MS)
        throw new Error(`only ${sum(chatty, 'open')} of ${s.connections} connections open after ${OPEN_TIMEOUT_MS / 1000} s`);
      const failed = chatty.find((l) => l.failure !== undefined);
      if (failed !== undefined) throw new Error(failed.failure);
      if (Date.now() >= next) {
        env.progress(`  opening: ${sum(chatty, 'open')} of ${s.connections} open, ${sum(chatty, 'handshakeFailures')} failed`);
        next += PROGRESS_MS;
      }
      await sleep(200);
    }
    const rampSeconds = (Date.now() - rampStart) / 1000;
    const startedAt = Date.now();
    const durationMs = s.minutes * 60_000;
    env.progress(`  ${s.connections} open in ${rampSeconds.toFixed(1)} s; ${s.minutes} min of load with churn, slow consumers and faults…`);
    const samples: Sample[] = [await sample(admin, gw.pid, startedAt)];

    loads.push(await LoadProcess.start('churn', spec(s, url, address(s.loaders), { role: 'churn' }), sink));
    loads.push(await LoadProcess.start('slow', spec(s, url, address(s.loaders + 1), { role: 'slow', connections: s.slow }), sink));
    const schedule = new FaultSchedule({
      admin,
      gateway: gw,
      layout,
      echoes,
      drainPeriodMs: s.drainPeriodS * 1000,
      startedAt,
      durationMs,
      progress: env.progress,
      startVanisher: async (k) => {
        const p = await LoadProcess.start(`vanishing ${k + 1}`, spec(s, url, address(s.loaders + 2 + k), { connections: s.vanish, ramp: s.ramp }), sink);
        loads.push(p);
        return p;
      },
    });
    const faultsRun = schedule.run();

    const sampleFailures: string[] = [];
    const reported = new Set<LoadProcess>();
    let gatewayExit: string | undefined;
    for (let k = 1; k * s.sampleS * 1000 <= durationMs; k++) {
      await sleep(startedAt + k * s.sampleS * 1000 - Date.now());
      if (gw.exited) {
        gatewayExit = gw.exitCode;
        env.progress(`  the gateway exited (${gatewayExit}): the run stops here`);
        break;
      }
      try {
        const x = await sample(admin, gw.pid, startedAt);
        samples.push(x);
        if ((k * s.sampleS) % s.rowS === 0) env.progress(rowLine(x));
      } catch (err) {
        sampleFailures.push(`${((Date.now() - startedAt) / 1000).toFixed(0)} s: ${(err as Error).message}`);
        env.progress(`  sample failed: ${(err as Error).message}`);
      }
      for (const l of loads) {
        if (l.failure === undefined || reported.has(l)) continue;
        reported.add(l);
        env.progress(`  load process failed: ${l.failure}`);
      }
    }
    schedule.stop();
    await faultsRun;

    env.progress('  stopping the load…');
    const endedAt = Date.now();
    await Promise.all([...chatty, ...loads.filter((l) => l.spec.role !== 'chatty'), ...schedule.activeVanishers()].map((l) => l.stop()));
    await schedule.finish();
    // Every client is gone: the gateway must let go of every session.
    const releaseStart = Date.now();
    let afterLoad: Sample | undefined;
    while (!gw.exited) {
      try {
        afterLoad = await sample(admin, gw.pid, startedAt);
      } catch (err) {
        sampleFailures.push(`after the load: ${(err as Error).message}`);
      }
      if (afterLoad?.sessions === 0 || Date.now() - releaseStart > RELEASE_WAIT_MS) break;
      await sleep(500);
    }
    const releaseSeconds = (Date.now() - releaseStart) / 1000;
    gatewayExit ??= gw.exited ? gw.exitCode : undefined;

    return {
      startedAt,
      endedAt,
      rampSeconds,
      configText,
      gatewayPid: gw.pid,
      idle,
      samples,
      afterLoad,
      releaseSeconds,
      faults: schedule.records,
      closes,
      loads: loads.map((l) => ({ name: l.name, role: l.spec.role, localAddress: l.spec.localAddress, counts: l.latest, failure: l.failure })),
      sampleFailures,
      gatewayExit,
      logFile,
      stderrFile,
    };
  } finally {
    // Normally every load process has stopped by now; after an error they are cut.
    await Promise.all(loads.map((l) => l.killAndWait()));
    await gateway?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  }
}
