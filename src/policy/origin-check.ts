/**
 * The Origin check against Cross-Site WebSocket Hijacking: a browser always
 * sends the page's origin with a WebSocket handshake, so a page on another
 * site cannot open a socket with the user's cookies unless its origin is
 * listed. Entries are exact origins ("https://chat.example.com"), patterns
 * ("https://*.example.com": any subdomain, at any depth, same scheme and
 * port) or "*" (any origin, as long as one is sent).
 */
export class OriginPolicy {
  readonly #exact: ReadonlySet<string>;
  readonly #patterns: readonly OriginPattern[];
  readonly #any: boolean;
  readonly allowMissing: boolean;

  /** `allowed` as normalised by the config (lower-case, default port dropped). */
  constructor(allowed: readonly string[], allowMissing: boolean) {
    const exact = new Set<string>();
    const patterns: OriginPattern[] = [];
    let any = false;
    for (const entry of allowed) {
      if (entry === '*') any = true;
      else if (entry.includes('://*.')) patterns.push(parsePattern(entry));
      else exact.add(entry);
    }
    this.#exact = exact;
    this.#patterns = patterns;
    this.#any = any;
    this.allowMissing = allowMissing;
  }

  /** True when a handshake with this Origin header (undefined: none sent) may pass. */
  allows(origin: string | undefined): boolean {
    if (origin === undefined || origin === '') return this.allowMissing;
    if (this.#exact.has(origin)) return true;
    const normal = normalise(origin);
    if (normal === undefined) return false;
    if (this.#any) return true;
    if (this.#exact.has(normal.origin)) return true;
    for (const p of this.#patterns) {
      if (p.scheme !== normal.scheme || p.port !== normal.port) continue;
      const host = normal.host;
      if (host.length > p.suffix.length && host.endsWith(p.suffix)) return true;
    }
    return false;
  }
}

interface OriginPattern {
  readonly scheme: string;
  /** ".example.com" */
  readonly suffix: string;
  readonly port: string;
}

function parsePattern(entry: string): OriginPattern {
  const n = normalise(entry.replace('://*.', '://wildcard.'))!;
  return { scheme: n.scheme, suffix: n.host.slice('wildcard'.length), port: n.port };
}

interface NormalOrigin {
  readonly origin: string;
  readonly scheme: string;
  readonly host: string;
  readonly port: string;
}

/** scheme://host[:port] in the form the config stores (URL#origin), split; undefined when it is not an origin ("null" included). */
function normalise(origin: string): NormalOrigin | undefined {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return undefined;
  }
  if (u.origin === 'null' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') {
    return undefined;
  }
  return { origin: u.origin, scheme: u.protocol, host: u.hostname, port: u.port };
}
