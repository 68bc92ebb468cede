import type { Config } from '../config/types.js';

export interface SecurityWarning {
  readonly key: string;
  readonly message: string;
}

/** Settings that weaken security on purpose; logged at start and on every reload, so they are never forgotten. */
export function securityWarnings(config: Config): SecurityWarning[] {
  const out: SecurityWarning[] = [];
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.tls?.verify === false && upstream.targets.some((t) => t.secure)) {
      out.push({
        key: `upstreams.${name}.tls.verify`,
        message: `upstreams.${name}.tls.verify is false: upstream certificates are not checked, so anyone on the path can pose as the upstream`,
      });
    }
  }
  return out;
}
