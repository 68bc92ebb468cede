import { randomBytes } from 'node:crypto';
import { acceptKey } from '../handshake/accept-key.js';
import type { TargetConfig } from '../config/types.js';
import { encodeClose } from '../relay/frames.js';
import { UpstreamDial } from '../upstream/connect.js';
import { PASS, failed, hostHeader, type CheckResult } from './check-result.js';
import type { CheckOptions, HealthChecker } from './health-check.js';

const MAX_HEAD_BYTES = 16 * 1024;
const NORMAL_CLOSE = encodeClose(1000, 'health check', true);

/**
 * Healthy when the target completes a full WebSocket opening handshake on
 * `path` (a valid 101 with the right Sec-WebSocket-Accept); the connection is
 * then closed with a Close frame, as a polite client would.
 */
export class WebSocketCheck implements HealthChecker {
  check(target: TargetConfig, options: CheckOptions): Promise<CheckResult> {
    const key = randomBytes(16).toString('base64');
    const request = [
      `GET ${target.basePath + options.path} HTTP/1.1`,
      `Host: ${hostHeader(target)}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      'User-Agent: wsgate-health-check',
      '',
      '',
    ].join('\r\n');
    return new Promise((resolve) => {
      new UpstreamDial(
        {
          target,
          request,
          accept: acceptKey(key),
          timeout: options.timeout,
          maxHeadBytes: MAX_HEAD_BYTES,
          tls: options.tls,
        },
        (err, result) => {
          if (err !== undefined) return resolve(failed(err.message));
          if (result === undefined) return resolve(failed('aborted'));
          const socket = result.socket;
          if (result.kind === 'answered') {
            socket.destroy();
            return resolve(failed(`status ${result.head.status}`));
          }
          socket.end(NORMAL_CLOSE, () => socket.destroy());
          resolve(PASS);
        },
      );
    });
  }
}
