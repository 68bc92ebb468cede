import type { TargetConfig } from '../config/types.js';

export type CheckResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export const PASS: CheckResult = Object.freeze({ ok: true });

export function failed(reason: string): CheckResult {
  return { ok: false, reason };
}

/** "host:port" for a Host header; IPv6 literals in brackets. */
export function hostHeader(target: TargetConfig): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  const defaultPort = target.secure ? 443 : 80;
  return target.port === defaultPort ? host : `${host}:${target.port}`;
}
