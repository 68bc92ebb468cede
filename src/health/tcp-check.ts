import { connect } from 'node:net';
import type { TargetConfig } from '../config/types.js';
import { PASS, failed, type CheckResult } from './check-result.js';
import type { CheckOptions, HealthChecker } from './health-check.js';

/** Healthy when a TCP connection opens within the timeout. */
export class TcpCheck implements HealthChecker {
  check(target: TargetConfig, options: CheckOptions): Promise<CheckResult> {
    return new Promise((resolve) => {
      const socket = connect({ host: target.host, port: target.port });
      const timer = setTimeout(() => finish(failed(`no connection within ${options.timeout}ms`)), options.timeout);
      function finish(result: CheckResult): void {
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      }
      socket.on('error', (err: NodeJS.ErrnoException) => finish(failed(err.code ?? err.message)));
      socket.once('connect', () => finish(PASS));
    });
  }
}
