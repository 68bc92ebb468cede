import type { RouteConfig } from '../config/types.js';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * First-match route lookup. Routes are few (tens), so a linear scan over
 * precompiled matchers beats anything cleverer and keeps "first match wins"
 * obvious.
 */
export class RouteTable {
  readonly #routes: readonly CompiledRoute[];

  constructor(routes: readonly RouteConfig[]) {
    this.#routes = routes.map(compile);
  }

  /** `host` is the Host header as sent; `path` is the request path without the query. */
  match(host: string | undefined, path: string, headers: IncomingHttpHeaders): RouteConfig | undefined {
    const hostname = host === undefined ? '' : stripPort(host).toLowerCase();
    for (const r of this.#routes) {
      if (r.host !== undefined && !r.host(hostname)) continue;
      if (r.prefix !== undefined && !pathMatches(path, r.prefix)) continue;
      if (r.headers !== undefined && !headersMatch(headers, r.headers)) continue;
      return r.route;
    }
    return undefined;
  }
}

interface CompiledRoute {
  readonly route: RouteConfig;
  readonly host: ((hostname: string) => boolean) | undefined;
  readonly prefix: string | undefined;
  readonly headers: readonly (readonly [string, string])[] | undefined;
}

function compile(route: RouteConfig): CompiledRoute {
  const { host, path, headers } = route.match;
  const entries = Object.entries(headers);
  return {
    route,
    host: host === undefined ? undefined : hostMatcher(host),
    prefix: path === undefined || path === '/' ? undefined : path.replace(/\/+$/, ''),
    headers: entries.length === 0 ? undefined : entries,
  };
}

function hostMatcher(pattern: string): (hostname: string) => boolean {
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1); // ".example.com"
    return (h) => h.length > suffix.length && h.endsWith(suffix);
  }
  return (h) => h === pattern;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** "/chat" matches "/chat" and "/chat/x", never "/chatty". */
export function pathMatches(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 47; /* "/" */
}

function headersMatch(headers: IncomingHttpHeaders, wanted: readonly (readonly [string, string])[]): boolean {
  for (const [name, value] of wanted) {
    const got = headers[name];
    if (Array.isArray(got) ? !got.includes(value) : got !== value) return false;
  }
  return true;
}

/** The path the upstream sees: the route prefix removed when `stripPrefix` is set. */
export function upstreamPath(route: RouteConfig, url: string): string {
  const prefix = route.match.path;
  if (!route.stripPrefix || prefix === undefined || prefix === '/') return url;
  const trimmed = prefix.replace(/\/+$/, '');
  const rest = url.slice(trimmed.length);
  return rest === '' || rest.startsWith('?') ? '/' + rest : rest;
}
