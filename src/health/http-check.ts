import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TargetConfig } from '../config/types.js';
import { PASS, failed, hostHeader, type CheckResult } from './check-result.js';
import type { CheckOptions, HealthChecker } from './health-check.js';
import { upstreamSecureContext } from '../upstream/upstream-tls.js';

/** Healthy when `GET path` answers 2xx within the timeout. A fresh connection each time, so a dead listener shows. */
export class HttpCheck implements HealthChecker {
  check(target: TargetConfig, options: CheckOptions): Promise<CheckResult> {
    return new Promise((resolve) => {
      const request = target.secure ? httpsRequest : httpRequest;
      const req = request({
        host: target.host,
        port: target.port,
        method: 'GET',
        path: target.basePath + options.path,
        agent: false,
        headers: { host: hostHeader(target), 'user-agent': 'wsgate-health-check', connection: 'close' },
        ...(target.secure
          ? {
              servername: options.tls?.servername,
              // tls.ca is a file path: the shared context holds the parsed bundle.
              secureContext: upstreamSecureContext(options.tls),
              rejectUnauthorized: options.tls?.verify ?? true,
            }
          : {}),
      });
      let settled = false;
      const timer = setTimeout(() => finish(failed(`no answer within ${options.timeout}ms`)), options.timeout);
      function finish(result: CheckResult): void {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve(result);
      }
      req.on('error', (err: NodeJS.ErrnoException) => finish(failed(err.code ?? err.message)));
      req.on('response', (res: IncomingMessage) => {
        res.on('error', noop);
        const status = res.statusCode ?? 0;
        finish(status >= 200 && status < 300 ? PASS : failed(`status ${status}`));
        res.destroy();
      });
      req.end();
    });
  }
}

function noop(): void {}
