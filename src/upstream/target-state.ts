import type { Pool as HttpPool } from 'undici';
import type { UpstreamConfig } from '../config/types.js';
import { DrainSchedule, type Closable } from './drain-schedule.js';

/** Close code sent to the clients of a drained target: they should reconnect. */
export const SERVICE_RESTART = 1012;

/** A slow-starting target gets at least this share of what it would otherwise get. */
const MIN_WARM_SHARE = 0.1;

/** An upstream's targets as the registry knows them, with the upstream's current settings. */
export interface TargetGroup {
  readonly name: string;
  /** The newest config of the upstream (a reload replaces it). */
  config: UpstreamConfig;
  /** The upstream's targets in the current config, removed ones excluded. */
  members: readonly TargetState[];
}

export type TargetEvent =
  | { readonly kind: 'unhealthy'; readonly reason: string }
  | { readonly kind: 'healthy' }
  | { readonly kind: 'ejected'; readonly ms: number; readonly failures: number }
  | { readonly kind: 'returned'; readonly by: 'backoff' | 'health check' }
  | { readonly kind: 'drain'; readonly by: DrainCause; readonly sessions: number; readonly period: number }
  | { readonly kind: 'drain complete' }
  | { readonly kind: 'undrained' };

export type DrainCause = 'operator' | 'removed';

export type TargetListener = (state: TargetState, event: TargetEvent) => void;

export interface CheckRecord {
  readonly at: number;
  readonly ok: boolean;
  readonly reason: string | undefined;
}

/** What the admin API shows of a target's state: a plain object. */
export interface TargetStateStatus {
  readonly id: string;
  readonly available: boolean;
  readonly healthy: boolean;
  readonly lastCheck: { readonly at: string; readonly ok: boolean; readonly reason?: string } | undefined;
  readonly ejected: boolean;
  readonly ejectedUntil: string | undefined;
  readonly consecutiveFailures: number;
  readonly drained: boolean;
  readonly removed: boolean;
  /** Connections a drain has yet to close. */
  readonly drainPending: number;
  readonly activeConnections: number;
  /** While slow-starting: the share of its normal load it gets now (0..1). */
  readonly slowStart: number | undefined;
}

/**
 * The live state of one target, keyed by its stable id (`upstream/url`) in the
 * TargetRegistry so that it outlives any one config snapshot: health, passive
 * ejection, drain, the open sessions (for drain) and the connection count (for
 * least-connections) carry over a reload. `available` is kept up to date on
 * every change, so a balancer reads a plain field on each pick.
 */
export class TargetState {
  readonly id: string;
  group: TargetGroup;
  /** Sessions past the 101 on this target; a drain closes them. */
  readonly sessions = new Set<Closable>();
  /** Sessions on this target, handshakes in flight included. */
  active = 0;
  /** Keep-alive pool for HTTP passthrough, made on first use. */
  http: HttpPool | undefined;
  /** healthy, not ejected, not drained, not removed. */
  available = true;

  /** Active checks: false once unhealthyThreshold checks failed in a row. */
  healthy = true;
  /** An active check has given a verdict since the target appeared (the first verdict counts at once). */
  checked = false;
  passes = 0;
  fails = 0;
  lastCheck: CheckRecord | undefined;

  /** Passive ejection: connect / upstream-handshake failures in a row. */
  failures = 0;
  /** 0 when not ejected. */
  ejectedUntil = 0;
  /** Ejections in the current series; each doubles the next one's length. */
  ejections = 0;
  /** Every ejection since the target appeared (metrics). */
  ejectionsTotal = 0;
  /** Active checks since the target appeared, by result (metrics). */
  checksPassed = 0;
  checksFailed = 0;
  returnedAt = 0;
  #ejectTimer: NodeJS.Timeout | undefined;

  drained = false;
  removed = false;
  #drain: DrainSchedule | undefined;

  /** Slow start: 0 when not warming up. */
  warmUntil = 0;
  #warmFrom = 0;

  readonly #listener: TargetListener | undefined;

  constructor(id: string, group: TargetGroup, listener?: TargetListener) {
    this.id = id;
    this.group = group;
    this.#listener = listener;
  }

  setHealthy(healthy: boolean, reason = ''): void {
    if (this.healthy === healthy) return;
    this.healthy = healthy;
    this.#emit(healthy ? { kind: 'healthy' } : { kind: 'unhealthy', reason });
    this.#update();
  }

  /** Forget active-check history (the upstream no longer has checks). */
  resetHealth(): void {
    this.checked = false;
    this.passes = 0;
    this.fails = 0;
    this.lastCheck = undefined;
    this.setHealthy(true);
  }

  eject(ms: number, failures: number): void {
    clearTimeout(this.#ejectTimer);
    this.ejectionsTotal++;
    this.ejectedUntil = Date.now() + ms;
    this.#ejectTimer = setTimeout(onEjectionOver, ms, this);
    this.#ejectTimer.unref();
    this.#emit({ kind: 'ejected', ms, failures });
    this.#update();
  }

  /** Ends an ejection early or on time. */
  endEjection(by: 'backoff' | 'health check'): void {
    if (this.ejectedUntil === 0) return;
    clearTimeout(this.#ejectTimer);
    this.#ejectTimer = undefined;
    this.ejectedUntil = 0;
    this.failures = 0;
    this.returnedAt = Date.now();
    this.#emit({ kind: 'returned', by });
    this.#update();
  }

  /** No new sessions; open ones closed with 1012 spread over the upstream's drainPeriod. */
  drain(by: DrainCause): void {
    if (by === 'operator') this.drained = true;
    else this.removed = true;
    this.#update();
    if (this.#drain !== undefined) return;
    const period = this.group.config.drainPeriod;
    this.#emit({ kind: 'drain', by, sessions: this.sessions.size, period });
    const reason = by === 'operator' ? 'target drained' : 'target removed';
    this.#drain = new DrainSchedule(this.sessions, period, SERVICE_RESTART, reason, () => this.#emit({ kind: 'drain complete' }));
  }

  /** Takes new sessions again (unless the other cause still holds); closes not yet sent are called off. */
  undrain(by: DrainCause): void {
    const was = by === 'operator' ? this.drained : this.removed;
    if (!was) return;
    if (by === 'operator') this.drained = false;
    else this.removed = false;
    if (this.drained || this.removed) return;
    this.#drain?.cancel();
    this.#drain = undefined;
    this.#emit({ kind: 'undrained' });
    this.#update();
  }

  /** Starts a slow-start ramp, when the upstream has one. */
  warm(): void {
    const ms = this.group.config.slowStart;
    if (ms <= 0) return;
    this.#warmFrom = Date.now();
    this.warmUntil = this.#warmFrom + ms;
  }

  /** The share (MIN_WARM_SHARE..1) of its normal load a slow-starting target takes now. */
  warmShare(now: number): number {
    if (now >= this.warmUntil) {
      this.warmUntil = 0;
      return 1;
    }
    return Math.max(MIN_WARM_SHARE, (now - this.#warmFrom) / (this.warmUntil - this.#warmFrom));
  }

  /** Timers stopped, keep-alive pool closed: the state is gone. */
  dispose(): void {
    clearTimeout(this.#ejectTimer);
    this.#ejectTimer = undefined;
    this.#drain?.cancel();
    this.#drain = undefined;
    const http = this.http;
    this.http = undefined;
    http?.close().catch(noop);
  }

  /** Stops timers (ejection, drain) without changing the state; the gateway is stopping. */
  stopTimers(): void {
    clearTimeout(this.#ejectTimer);
    this.#ejectTimer = undefined;
    this.#drain?.cancel();
  }

  get drainPending(): number {
    return this.#drain?.pending ?? 0;
  }

  status(now = Date.now()): TargetStateStatus {
    const check = this.lastCheck;
    return {
      id: this.id,
      available: this.available,
      healthy: this.healthy,
      lastCheck: check && {
        at: new Date(check.at).toISOString(),
        ok: check.ok,
        ...(check.reason === undefined ? {} : { reason: check.reason }),
      },
      ejected: this.ejectedUntil !== 0,
      ejectedUntil: this.ejectedUntil === 0 ? undefined : new Date(this.ejectedUntil).toISOString(),
      consecutiveFailures: this.failures,
      drained: this.drained,
      removed: this.removed,
      drainPending: this.drainPending,
      activeConnections: this.active,
      slowStart: this.warmUntil === 0 || now >= this.warmUntil ? undefined : this.warmShare(now),
    };
  }

  #update(): void {
    const was = this.available;
    this.available = this.healthy && this.ejectedUntil === 0 && !this.drained && !this.removed;
    if (!was && this.available) this.warm();
  }

  #emit(event: TargetEvent): void {
    this.#listener?.(this, event);
  }
}

function onEjectionOver(state: TargetState): void {
  state.endEjection('backoff');
}

function noop(): void {}
