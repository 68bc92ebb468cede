import type { HealthCheckConfig, TargetConfig, UpstreamConfig } from '../config/types.js';
import type { TargetRegistry } from '../upstream/target-registry.js';
import { targetId } from '../upstream/target-registry.js';
import type { CheckRecord, TargetState } from '../upstream/target-state.js';
import { createHealthChecker, type CheckOptions, type CheckResult, type HealthChecker } from './health-check.js';

/** Each interval is stretched or shrunk by up to this share, so checks of many targets drift apart. */
const JITTER = 0.1;

/**
 * Active health checks for every target of every upstream that has a
 * `healthCheck` block: one loop per target, all running concurrently. The
 * first check runs at once; after that, one check per interval (jittered),
 * never two at a time on one target.
 */
export class HealthMonitor {
  readonly #loops = new Map<string, CheckLoop>();
  readonly #onChecked: ((state: TargetState) => void) | undefined;

  /** `onChecked` hears every target after each of its checks (a cluster primary passes the verdicts on to its workers). */
  constructor(onChecked?: (state: TargetState) => void) {
    this.#onChecked = onChecked;
  }

  /** Starts, restarts (settings changed) and stops loops to match `upstreams`. */
  apply(upstreams: Readonly<Record<string, UpstreamConfig>>, registry: TargetRegistry): void {
    const wanted = new Set<string>();
    for (const [name, upstream] of Object.entries(upstreams)) {
      const hc = upstream.healthCheck;
      for (const target of upstream.targets) {
        const state = registry.get(targetId(name, target.url));
        if (state === undefined) continue;
        if (hc === undefined) {
          // No checks (any more): the target is as healthy as passive ejection says.
          if (state.checked || !state.healthy) state.resetHealth();
          continue;
        }
        wanted.add(state.id);
        const signature = JSON.stringify([hc, upstream.tls, target.host, target.port, target.secure, target.basePath]);
        const loop = this.#loops.get(state.id);
        if (loop?.signature === signature) continue;
        loop?.stop();
        const options: CheckOptions = { path: hc.path, timeout: hc.timeout, tls: upstream.tls };
        const fresh = new CheckLoop(state, target, hc, options, createHealthChecker(hc.type), signature, this.#onChecked);
        this.#loops.set(state.id, fresh);
        fresh.start();
      }
    }
    for (const [id, loop] of this.#loops) {
      if (wanted.has(id)) continue;
      loop.stop();
      this.#loops.delete(id);
    }
  }

  stop(): void {
    for (const loop of this.#loops.values()) loop.stop();
    this.#loops.clear();
  }
}

class CheckLoop {
  readonly signature: string;
  readonly #state: TargetState;
  readonly #target: TargetConfig;
  readonly #config: HealthCheckConfig;
  readonly #options: CheckOptions;
  readonly #checker: HealthChecker;
  readonly #onChecked: ((state: TargetState) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    state: TargetState,
    target: TargetConfig,
    config: HealthCheckConfig,
    options: CheckOptions,
    checker: HealthChecker,
    signature: string,
    onChecked: ((state: TargetState) => void) | undefined,
  ) {
    this.#onChecked = onChecked;
    this.#state = state;
    this.#target = target;
    this.#config = config;
    this.#options = options;
    this.#checker = checker;
    this.signature = signature;
  }

  start(): void {
    this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #run = (): void => {
    this.#timer = undefined;
    if (this.#stopped) return;
    void this.#checker.check(this.#target, this.#options).then(this.#onResult);
  };

  #onResult = (result: CheckResult): void => {
    if (this.#stopped) return;
    applyCheckResult(this.#state, this.#config, result);
    this.#onChecked?.(this.#state);
    const wait = this.#config.interval * (1 - JITTER + 2 * JITTER * Math.random());
    this.#timer = setTimeout(this.#run, Math.round(wait));
    this.#timer.unref();
  };
}

/**
 * Thresholds: a healthy target turns unhealthy after unhealthyThreshold
 * failed checks in a row, an unhealthy one healthy after healthyThreshold
 * passes; the first verdict on a target counts at once. A pass also ends a
 * passive ejection.
 */
export function applyCheckResult(state: TargetState, config: HealthCheckConfig, result: CheckResult, now = Date.now()): void {
  const first = !state.checked;
  state.checked = true;
  state.lastCheck = { at: now, ok: result.ok, reason: result.ok ? undefined : result.reason };
  if (result.ok) {
    state.checksPassed++;
    state.fails = 0;
    state.passes++;
    if (!state.healthy && (first || state.passes >= config.healthyThreshold)) state.setHealthy(true);
    state.endEjection('health check');
    return;
  }
  state.checksFailed++;
  state.passes = 0;
  state.fails++;
  if (state.healthy && (first || state.fails >= config.unhealthyThreshold)) state.setHealthy(false, result.reason);
}

/** A target's health as the instance's one checker sees it: what a cluster primary sends its workers. */
export interface HealthVerdict {
  readonly id: string;
  readonly healthy: boolean;
  readonly lastCheck: CheckRecord | undefined;
}

export function healthVerdict(state: TargetState): HealthVerdict {
  return { id: state.id, healthy: state.healthy, lastCheck: state.lastCheck };
}

/** Takes on a verdict reached elsewhere: the same fields applyCheckResult() sets, without counting again. */
export function applyHealthVerdict(state: TargetState, verdict: HealthVerdict): void {
  state.checked = true;
  state.lastCheck = verdict.lastCheck;
  state.setHealthy(verdict.healthy, verdict.lastCheck?.reason ?? '');
  if (verdict.lastCheck?.ok === true) state.endEjection('health check');
}
