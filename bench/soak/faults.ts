// The soak's scripted faults, on a fixed timetable from the start of the load
// (seconds; the 2-minute cycle repeats):
//
//   every 30 s from 10   a reload: SIGHUP and POST /api/reload in turn, each
//                        with a real change (target 0's weight 1 ↔ 2, then
//                        limits.maxMessageBytes 64 KiB ↔ 128 KiB), checked
//                        in GET /api/config
//   0 + 120k             a new vanishing load process starts; the previous one
//                        is frozen with SIGSTOP (its connections go silent, no FIN)
//   20 + 120k / 50       echo target 1 drained / undrained (admin API)
//   60 + 120k            the frozen process: its sessions must be gone (the
//                        gateway's keepalive closed them); then SIGKILL
//   80 + 120k / 85       echo backend 3 (target 2) killed (SIGKILL) / started again
//
// Each fault is recorded with when it happened, the sessions it could close
// and until when its consequences are expected: accounting.ts matches every
// close a client saw, and every warning or error the gateway logged, to them.
import { writeFileSync } from 'node:fs';
import type { Admin } from './admin.js';
import type { LoadProcess } from './load-process.js';
import { gatewayConfig } from './processes.js';
import type { Backend, GatewayLayout, GatewayProcess, Reloadable } from './processes.js';

export type FaultKind = 'reload' | 'drain' | 'undrain' | 'kill' | 'restart' | 'vanish' | 'vanish reaped';

export interface FaultRecord {
  readonly kind: FaultKind;
  /** ms since the epoch, and seconds since the load started. */
  readonly at: number;
  readonly t: number;
  readonly detail: string;
  /** Whether it did what it should (a reload applied, a frozen process's sessions reaped, …). */
  readonly ok: boolean;
  /** Sessions it could close (on the target, or of the frozen process) when it happened. */
  readonly sessions?: number;
  /** Until when (ms since the epoch) closes and log lines it causes are expected. */
  until?: number;
}

export const CYCLE_S = 120;
const RELOAD_EVERY_S = 30;
const RELOAD_FIRST_S = 10;
const VANISH_AT_S = 0;
const DRAIN_AT_S = 20;
const UNDRAIN_AT_S = 50;
const REAP_AT_S = 60;
const KILL_AT_S = 80;
const RESTART_AT_S = 85;
/** Closes from a drain arrive over drainPeriod; this much more for stragglers. */
const DRAIN_SLACK_MS = 5000;
/** After a killed backend is back, clients that reconnected meanwhile may still meet its failures. */
const KILL_SLACK_MS = 10_000;
/** The drained and the killed target (indexes into upstreams.echo.targets). */
export const DRAINED_TARGET = 1;
export const KILLED_TARGET = 2;
const CONFIG_POLL_MS = 100;
const CONFIG_WAIT_MS = 5000;

export interface FaultDeps {
  readonly admin: Admin;
  readonly gateway: GatewayProcess;
  readonly layout: GatewayLayout;
  readonly echoes: readonly Backend[];
  readonly drainPeriodMs: number;
  /** Starts the k-th vanishing load process (its own source address). */
  startVanisher(k: number): Promise<LoadProcess>;
  readonly startedAt: number;
  readonly durationMs: number;
  progress(line: string): void;
}

interface Action {
  readonly t: number;
  readonly name: string;
  run(): Promise<void>;
}

interface Vanisher {
  readonly proc: LoadProcess;
  readonly address: string;
  suspendedAt?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FaultSchedule {
  readonly records: FaultRecord[] = [];
  readonly #d: FaultDeps;
  #reloadable: Reloadable = { weight0: 1, maxMessageBytes: 64 * 1024 };
  readonly #vanishers: Vanisher[] = [];
  #stopped = false;

  constructor(deps: FaultDeps) {
    this.#d = deps;
  }

  /** The timetable for the run's length; a fault whose counterpart would fall after the end is left out. */
  #timetable(): Action[] {
    const dur = this.#d.durationMs / 1000;
    const out: Action[] = [];
    for (let c = 0; c * CYCLE_S < dur; c++) {
      const base = c * CYCLE_S;
      out.push({ t: base + VANISH_AT_S, name: 'vanish', run: () => this.#rotateVanisher(c) });
      if (base + UNDRAIN_AT_S < dur) {
        out.push({ t: base + DRAIN_AT_S, name: 'drain', run: () => this.#drain() });
        out.push({ t: base + UNDRAIN_AT_S, name: 'undrain', run: () => this.#undrain() });
      }
      if (c > 0 && base + REAP_AT_S < dur) out.push({ t: base + REAP_AT_S, name: 'reap', run: () => this.#reap() });
      if (base + RESTART_AT_S < dur) {
        out.push({ t: base + KILL_AT_S, name: 'kill', run: () => this.#kill() });
        out.push({ t: base + RESTART_AT_S, name: 'restart', run: () => this.#restart() });
      }
    }
    for (let j = 0; RELOAD_FIRST_S + j * RELOAD_EVERY_S < dur; j++)
      out.push({ t: RELOAD_FIRST_S + j * RELOAD_EVERY_S, name: 'reload', run: () => this.#reload(j) });
    return out.sort((a, b) => a.t - b.t);
  }

  /** Runs the timetable until its end or stop(); a fault that throws is recorded as failed, and the run goes on. */
  async run(): Promise<void> {
    for (const a of this.#timetable()) {
      const wait = this.#d.startedAt + a.t * 1000 - Date.now();
      if (wait > 0) await this.#sleepUnlessStopped(wait);
      if (this.#stopped) return;
      try {
        await a.run();
      } catch (err) {
        this.#record(a.name === 'reload' ? 'reload' : (a.name as FaultKind), `${a.name} failed: ${(err as Error).message}`, false);
      }
    }
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Vanishing processes still running normally (stopped gracefully with the rest of the load at the end). */
  activeVanishers(): LoadProcess[] {
    return this.#vanishers.filter((v) => v.suspendedAt === undefined).map((v) => v.proc);
  }

  /** At the end: frozen processes are checked (when frozen long enough for the keepalive to act) and killed. */
  async finish(): Promise<void> {
    for (const v of this.#vanishers.filter((x) => x.suspendedAt !== undefined)) await this.#reapOne(v, true);
  }

  async #sleepUnlessStopped(ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!this.#stopped && Date.now() < end) await sleep(Math.min(250, end - Date.now()));
  }

  /** `extra.at`: when the fault began, if before now (a kill is recorded once the process has exited). */
  #record(kind: FaultKind, detail: string, ok: boolean, extra: Partial<Pick<FaultRecord, 'sessions' | 'until' | 'at'>> = {}): FaultRecord {
    const at = extra.at ?? Date.now();
    const r: FaultRecord = { ...extra, kind, at, t: Math.round((at - this.#d.startedAt) / 100) / 10, detail, ok };
    this.records.push(r);
    this.#d.progress(`  [${r.t.toFixed(0)} s] ${kind}: ${detail}${ok ? '' : '  ← FAILED'}`);
    return r;
  }

  async #reload(j: number): Promise<void> {
    const viaSignal = j % 2 === 0;
    const weight = Math.floor(j / 2) % 2 === 0;
    const r = this.#reloadable;
    const next: Reloadable = weight
      ? { ...r, weight0: r.weight0 === 1 ? 2 : 1 }
      : { ...r, maxMessageBytes: r.maxMessageBytes === 64 * 1024 ? 128 * 1024 : 64 * 1024 };
    writeFileSync(this.#d.gateway.configFile, gatewayConfig(this.#d.layout, next));
    const change = weight
      ? `target 0 weight ${r.weight0} → ${next.weight0}`
      : `limits.maxMessageBytes ${r.maxMessageBytes / 1024} → ${next.maxMessageBytes / 1024} KiB`;
    let answer = '';
    if (viaSignal) this.#d.gateway.sighup();
    else {
      const res = await this.#d.admin.json<{ ok?: boolean; errors?: string[] }>('/api/reload', 'POST');
      answer = res.status === 200 && res.body.ok === true ? '' : ` (answered ${res.status}: ${JSON.stringify(res.body).slice(0, 200)})`;
    }
    const applied = answer === '' && (await this.#applied(next));
    if (applied) this.#reloadable = next;
    this.#record('reload', `${viaSignal ? 'SIGHUP' : 'POST /api/reload'}: ${change}${answer}${applied ? '' : ' — not seen in GET /api/config'}`, applied);
  }

  /** Whether GET /api/config shows the new values within a few seconds. */
  async #applied(want: Reloadable): Promise<boolean> {
    const deadline = Date.now() + CONFIG_WAIT_MS;
    while (Date.now() < deadline) {
      const { body } = await this.#d.admin.json<{
        upstreams?: Record<string, { targets?: Array<{ weight?: number }> }>;
        limits?: { maxMessageBytes?: number };
      }>('/api/config');
      if (body.upstreams?.echo?.targets?.[0]?.weight === want.weight0 && body.limits?.maxMessageBytes === want.maxMessageBytes) return true;
      await sleep(CONFIG_POLL_MS);
    }
    return false;
  }

  #targetUrl(i: number): string {
    return this.#d.layout.echoUrls[i] as string;
  }

  async #drain(): Promise<void> {
    const sessions = await this.#d.admin.connections({ target: this.#targetUrl(DRAINED_TARGET) });
    const at = Date.now();
    const res = await this.#d.admin.json(`/api/upstreams/echo/targets/${DRAINED_TARGET}/drain`, 'POST');
    const ok = res.status === 200;
    const r = this.#record(
      'drain',
      `echo target ${DRAINED_TARGET} (${sessions} sessions), over ${this.#d.drainPeriodMs / 1000} s${ok ? '' : ` (answered ${res.status})`}`,
      ok,
      { sessions, at },
    );
    r.until = r.at + this.#d.drainPeriodMs + DRAIN_SLACK_MS;
  }

  async #undrain(): Promise<void> {
    const res = await this.#d.admin.json(`/api/upstreams/echo/targets/${DRAINED_TARGET}/undrain`, 'POST');
    this.#record('undrain', `echo target ${DRAINED_TARGET}${res.status === 200 ? '' : ` (answered ${res.status})`}`, res.status === 200);
  }

  async #kill(): Promise<void> {
    const backend = this.#d.echoes[KILLED_TARGET] as Backend;
    const sessions = await this.#d.admin.connections({ target: backend.url });
    const at = Date.now();
    await backend.kill();
    // Open until the restart says how long the backend was down.
    this.#record('kill', `${backend.name} (echo target ${KILLED_TARGET}, ${sessions} sessions): SIGKILL`, true, { sessions, at, until: Infinity });
  }

  async #restart(): Promise<void> {
    const backend = this.#d.echoes[KILLED_TARGET] as Backend;
    await backend.start();
    const r = this.#record('restart', `${backend.name} started again on port ${backend.port}`, true);
    const kill = this.records.findLast((x) => x.kind === 'kill');
    if (kill !== undefined) kill.until = r.at + KILL_SLACK_MS;
  }

  async #rotateVanisher(k: number): Promise<void> {
    const previous = this.#vanishers.find((v) => v.suspendedAt === undefined);
    if (previous !== undefined) {
      const sessions = await this.#d.admin.connections({ client: previous.address });
      previous.proc.suspend();
      previous.suspendedAt = Date.now();
      this.#record('vanish', `load process ${previous.proc.name} (${previous.address}, ${sessions} sessions) frozen with SIGSTOP`, true, { sessions });
    }
    const proc = await this.#d.startVanisher(k);
    this.#vanishers.push({ proc, address: proc.spec.localAddress ?? '127.0.0.1' });
  }

  async #reap(): Promise<void> {
    const v = this.#vanishers.find((x) => x.suspendedAt !== undefined && !x.proc.exited);
    if (v !== undefined) await this.#reapOne(v, false);
  }

  /** Checks that the gateway has closed every session of a frozen process, then SIGKILLs it. */
  async #reapOne(v: Vanisher, atEnd: boolean): Promise<void> {
    if (v.proc.exited) return;
    const frozenFor = (Date.now() - (v.suspendedAt as number)) / 1000;
    const left = await this.#d.admin.connections({ client: v.address });
    await v.proc.killAndWait();
    // At the end of a run, a process frozen too recently for the keepalive to have acted proves nothing either way.
    if (atEnd && frozenFor < REAP_AT_S - VANISH_AT_S) {
      this.#record('vanish reaped', `${v.proc.name}: SIGKILL at the end, frozen only ${frozenFor.toFixed(0)} s (${left} sessions left; not judged)`, true);
      return;
    }
    this.#record('vanish reaped', `${v.proc.name}: ${left} sessions left after ${frozenFor.toFixed(0)} s frozen; then SIGKILL`, left === 0, { sessions: left });
  }
}
