import type { UpgradeRequest } from '../handshake/request-head.js';

/** One `jwt.from` entry, parsed once. */
export type TokenSource = { readonly kind: 'header' | 'query' | 'cookie'; readonly name: string } | { readonly kind: 'protocol' };

export function parseTokenSources(from: readonly string[]): TokenSource[] {
  return from.map((entry) => {
    if (entry === 'protocol') return { kind: 'protocol' };
    const colon = entry.indexOf(':');
    const kind = entry.slice(0, colon) as 'header' | 'query' | 'cookie';
    return { kind, name: entry.slice(colon + 1) };
  });
}

export interface FoundToken {
  readonly token: string;
  /** Where it was found, for the log ("query:access_token"); never the token itself. */
  readonly where: string;
  /** Found in Sec-WebSocket-Protocol: the header's value without the token entry ("" when nothing is left). */
  readonly protocolRest: string | undefined;
}

// Three base64url parts; a JWS header always starts with '{"' → "eyJ".
const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The first token found, looking in the configured order. */
export function findToken(req: UpgradeRequest, sources: readonly TokenSource[]): FoundToken | undefined {
  for (const source of sources) {
    switch (source.kind) {
      case 'header': {
        const raw = req.headers[source.name];
        const value = Array.isArray(raw) ? raw[0] : raw;
        const token = value === undefined ? undefined : bearer(value, source.name === 'authorization');
        if (token !== undefined) return { token, where: `header:${source.name}`, protocolRest: undefined };
        break;
      }
      case 'query': {
        const token = queryValue(req.url ?? '/', source.name);
        if (token !== undefined && token !== '') return { token, where: `query:${source.name}`, protocolRest: undefined };
        break;
      }
      case 'cookie': {
        const token = cookieValue(req.headers.cookie, source.name);
        if (token !== undefined && token !== '') return { token, where: `cookie:${source.name}`, protocolRest: undefined };
        break;
      }
      case 'protocol': {
        const found = fromProtocol(req.headers['sec-websocket-protocol']);
        if (found !== undefined) return found;
        break;
      }
    }
  }
  return undefined;
}

/** "Bearer <token>" → token. Authorization demands the Bearer scheme; other headers may carry the bare token. */
function bearer(value: string, schemeRequired: boolean): string | undefined {
  const v = value.trim();
  if (v.length > 7 && v.slice(0, 7).toLowerCase() === 'bearer ') {
    const token = v.slice(7).trim();
    return token === '' ? undefined : token;
  }
  if (schemeRequired || v === '') return undefined;
  return v;
}

function queryValue(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  return new URLSearchParams(url.slice(q + 1)).get(name) ?? undefined;
}

/**
 * Browsers cannot set headers on a WebSocket handshake, but they can list
 * subprotocols: the token travels as one entry of Sec-WebSocket-Protocol,
 * recognised by its JWT shape. It is taken out of the list the upstream sees.
 */
function fromProtocol(value: string | undefined): FoundToken | undefined {
  if (value === undefined) return undefined;
  const entries = value.split(',');
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!.trim();
    if (!JWT_SHAPE.test(entry)) continue;
    const rest: string[] = [];
    for (let j = 0; j < entries.length; j++) {
      const e = entries[j]!.trim();
      if (j !== i && e !== '') rest.push(e);
    }
    return { token: entry, where: 'protocol', protocolRest: rest.join(', ') };
  }
  return undefined;
}

/** RFC 6265 cookie-string lookup; the first pair named `name` wins, a quoted value is unquoted. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
  }
  return undefined;
}
