import type { HealthCheckConfig, TargetConfig, UpstreamConfig } from '../config/types.js';
import type { CheckResult } from './check-result.js';
import { HttpCheck } from './http-check.js';
import { TcpCheck } from './tcp-check.js';
import { WebSocketCheck } from './websocket-check.js';

export interface CheckOptions {
  /** Request path for http and websocket checks; the target's base path goes in front. */
  readonly path: string;
  /** The whole check: connect, request, answer. */
  readonly timeout: number;
  /** For wss:// and https:// targets. */
  readonly tls: UpstreamConfig['tls'];
}

export type { CheckResult } from './check-result.js';

/** One way of probing a target. `check` never rejects: a failure is a result. */
export interface HealthChecker {
  check(target: TargetConfig, options: CheckOptions): Promise<CheckResult>;
}

export function createHealthChecker(type: HealthCheckConfig['type']): HealthChecker {
  switch (type) {
    case 'http':
      return new HttpCheck();
    case 'tcp':
      return new TcpCheck();
    case 'websocket':
      return new WebSocketCheck();
  }
}
