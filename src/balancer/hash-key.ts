import type { IncomingHttpHeaders } from 'node:http';
import type { HashKeySpec } from '../config/types.js';

/**
 * The key a hash balancer hashes, taken from where the upstream's `hash.key` says.
 *
 * undefined means "no key": the hash balancer then picks a random target. An empty value counts
 * as no key too — otherwise every client sending `x-user-id:` (or `token=`) would be pinned to
 * the same single target.
 */
export function hashKeyOf(
  spec: HashKeySpec,
  req: { headers: IncomingHttpHeaders; url: string },
  clientIp: string,
  claims?: Record<string, unknown>,
): string | undefined {
  let value: string | undefined;
  switch (spec.source) {
    case 'ip':
      value = clientIp;
      break;
    case 'header': {
      // Node lower-cases incoming header names; the config may not have.
      const raw = req.headers[spec.name.toLowerCase()];
      value = Array.isArray(raw) ? raw[0] : raw;
      break;
    }
    case 'cookie':
      value = cookieValue(req.headers.cookie, spec.name);
      break;
    case 'query': {
      const q = req.url.indexOf('?');
      if (q === -1) break;
      const hashAt = req.url.indexOf('#', q);
      const search = hashAt === -1 ? req.url.slice(q + 1) : req.url.slice(q + 1, hashAt);
      value = new URLSearchParams(search).get(spec.name) ?? undefined;
      break;
    }
    case 'claim': {
      // Own properties only: "claim:constructor" must not find Object.prototype.constructor.
      if (claims === undefined || !Object.hasOwn(claims, spec.name)) break;
      const claim = claims[spec.name];
      if (claim !== undefined && claim !== null) value = String(claim);
      break;
    }
  }
  return value === '' ? undefined : value;
}

/**
 * The value of cookie `name` in a Cookie header (RFC 6265 §5.4: "a=1; b=2"), or undefined.
 * Lenient like browsers and the `cookie` package: spaces around names and values are ignored,
 * pairs without "=" are skipped, a value in double quotes is unquoted, the first match wins.
 * Values are not percent-decoded: the key only has to be stable, not readable.
 */
function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let start = 0;
  while (start < header.length) {
    let end = header.indexOf(';', start);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', start);
    if (eq !== -1 && eq < end && header.slice(start, eq).trim() === name) {
      let value = header.slice(eq + 1, end).trim();
      if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) {
        value = value.slice(1, -1);
      }
      return value;
    }
    start = end + 1;
  }
  return undefined;
}
