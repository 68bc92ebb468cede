import type { Config } from '../config/types.js';

/** What a secret's value is replaced with. */
export const REDACTED = '[redacted]';

/** Keys whose values are secrets wherever they appear (admin.token, jwt.secret, apiKeys.keys). */
const SECRET_KEYS = new Set(['token', 'secret', 'keys']);

/**
 * The running configuration as GET /api/config shows it: every value the
 * gateway runs with (defaults filled in), secrets replaced, and the password
 * of any URL with credentials (cluster.redis, a JWKS or forward-auth URL) hidden.
 */
export function redactConfig(config: Config): unknown {
  const { inert: _inert, ...rest } = config;
  return redact(rest);
}

function redact(value: unknown, key = ''): unknown {
  if (SECRET_KEYS.has(key) && value !== undefined && value !== '') {
    return Array.isArray(value) ? value.map(() => REDACTED) : REDACTED;
  }
  if (typeof value === 'string') return hidePassword(value);
  if (Array.isArray(value)) return value.map((v) => redact(v));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redact(v, k);
    return out;
  }
  return value;
}

function hidePassword(text: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i.test(text)) return text;
  try {
    const url = new URL(text);
    if (url.password === '') return text;
    url.password = 'redacted';
    return url.toString();
  } catch {
    return text;
  }
}
