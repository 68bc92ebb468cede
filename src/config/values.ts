// Value parsers: what a user writes for one key → what the gateway uses
// (addresses, target URLs, hash keys, host patterns, CIDRs, origins). Each
// throws a ValueError whose message the schema reports at the key's path.

import { BlockList, isIP } from 'node:net';
import { quote } from './problems.js';
import type { HashKeySpec } from './types.js';

export class ValueError extends Error {
  readonly code = 'CONFIG_VALUE_INVALID';
  override name = 'ValueError';
}

function fail(message: string): never {
  throw new ValueError(message);
}

export const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const HOSTNAME_RE = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`, 'i');

function isHostname(host: string): boolean {
  // Dotted digits that are not a valid IPv4 address ("300.1.1.1") are typos, not names.
  if (/^[\d.]+$/.test(host)) return isIP(host) === 4;
  return HOSTNAME_RE.test(host);
}

export interface ParsedAddress {
  readonly address: string;
  /** Without brackets ("::" for "[::]:8080"), as net.Server#listen wants it. */
  readonly host: string;
  readonly port: number;
}

const ADDRESS_MESSAGE = 'must be host:port';

/** "0.0.0.0:8080", "localhost:0" or "[::1]:8080"; port 0 asks the OS for a free port. */
export function parseAddress(address: string): ParsedAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (m === null) {
    if ((address.match(/:/g) ?? []).length > 1 && !address.startsWith('[')) {
      fail(`${ADDRESS_MESSAGE} (write IPv6 hosts in brackets, e.g. [::1]:8080)`);
    }
    fail(ADDRESS_MESSAGE);
  }
  const v6 = m[1];
  const host = v6 ?? m[2] ?? '';
  if (v6 !== undefined ? isIP(v6) !== 6 : !isHostname(host)) fail(`${ADDRESS_MESSAGE} (bad host ${quote(host)})`);
  const port = Number(m[3]);
  if (port > 65_535) fail(`${ADDRESS_MESSAGE} with a port from 0 to 65535`);
  return { address, host, port };
}

export interface ParsedTarget {
  readonly url: string;
  readonly secure: boolean;
  readonly host: string;
  readonly port: number;
  readonly basePath: string;
}

const TARGET_SCHEME_MESSAGE = 'must be ws://, wss://, http:// or https://';

// The URL parser drops tabs and newlines anywhere in its input ("ws://a\nb" is
// ws://ab): a value that is not what it looks like is refused instead.
const URL_UNSAFE_RE = /[\u0000-\u0020\u007f]/;
const URL_UNSAFE_MESSAGE = 'must not contain spaces or control characters';

export function parseTargetUrl(url: string): ParsedTarget {
  if (!/^(wss?|https?):\/\//i.test(url)) fail(TARGET_SCHEME_MESSAGE);
  if (URL_UNSAFE_RE.test(url)) fail(URL_UNSAFE_MESSAGE);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    fail('must be a URL such as ws://10.0.0.11:3000');
  }
  if (u.hostname === '') fail('must include a host');
  if (u.username !== '' || u.password !== '') fail('must not contain a user name or password');
  if (u.search !== '' || u.hash !== '') fail('must not have a query or a fragment');
  const secure = u.protocol === 'wss:' || u.protocol === 'https:';
  const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
  if (port === 0) fail('must have a port from 1 to 65535');
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { url, secure, host, port, basePath: u.pathname.replace(/\/+$/, '') };
}

const HASH_KEY_MESSAGE = 'must be ip, header:NAME, cookie:NAME, query:NAME or claim:NAME';

/** `ip | header:NAME | cookie:NAME | query:NAME | claim:NAME`; header names are lower-cased. */
export function parseHashKey(key: string): HashKeySpec {
  if (key.trim() === 'ip') return { source: 'ip' };
  const colon = key.indexOf(':');
  const source = key.slice(0, colon).trim();
  const name = key.slice(colon + 1).trim();
  if (colon < 0 || name === '') fail(HASH_KEY_MESSAGE);
  switch (source) {
    case 'header':
      if (!HEADER_NAME_RE.test(name)) fail(`${HASH_KEY_MESSAGE} (${quote(name)} is not a header name)`);
      return { source, name: name.toLowerCase() };
    case 'cookie':
    case 'query':
    case 'claim':
      return { source, name };
    default:
      return fail(HASH_KEY_MESSAGE);
  }
}

const TOKEN_SOURCE_MESSAGE = 'must be header:NAME, query:NAME, cookie:NAME or protocol';

/** A jwt.from entry, normalised ("header:Authorization" → "header:authorization"). */
export function parseTokenSource(entry: string): string {
  const s = entry.trim();
  if (s === 'protocol') return s;
  const m = /^(header|query|cookie):(.+)$/.exec(s);
  if (m === null) fail(TOKEN_SOURCE_MESSAGE);
  const name = (m[2] ?? '').trim();
  if (m[1] === 'header') {
    if (!HEADER_NAME_RE.test(name)) fail(`${TOKEN_SOURCE_MESSAGE} (${quote(name)} is not a header name)`);
    return `header:${name.toLowerCase()}`;
  }
  return `${m[1] ?? ''}:${name}`;
}

/** Exact ("chat.example.com") or one leading wildcard label ("*.example.com"), lower-cased. */
export function parseHostPattern(pattern: string): string {
  const p = pattern.trim().toLowerCase();
  const rest = p.startsWith('*.') ? p.slice(2) : p;
  if (!isHostname(rest)) fail('must be a host name such as chat.example.com or *.example.com (no port)');
  return p;
}

export function checkIpOrCidr(entry: string): string {
  const message = 'must be an IP address or a CIDR such as 10.0.0.0/8';
  const [addr = '', prefix, ...rest] = entry.trim().split('/');
  const family = isIP(addr);
  if (family === 0 || rest.length > 0) fail(message);
  if (prefix !== undefined) {
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) fail(message);
    // BlockList is what the proxy-trust code will use; make sure it takes this entry.
    new BlockList().addSubnet(addr, Number(prefix), family === 4 ? 'ipv4' : 'ipv6');
  }
  return entry.trim();
}

export function parseOrigin(origin: string): string {
  if (origin === '*') return origin;
  if (URL_UNSAFE_RE.test(origin)) fail(URL_UNSAFE_MESSAGE);
  let u: URL | undefined;
  try {
    u = new URL(origin);
  } catch {
    u = undefined;
  }
  if (u === undefined || u.origin === 'null' || u.pathname.length > 1 || u.search !== '' || u.hash !== '') {
    fail('must be an origin such as https://chat.example.com (scheme, host and optional port only)');
  }
  return u.origin;
}

export function httpUrl(url: string): string {
  if (URL_UNSAFE_RE.test(url)) fail(URL_UNSAFE_MESSAGE);
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:')) fail('must be an http:// or https:// URL');
  return url;
}
