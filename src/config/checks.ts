// Checks that relate several values: route → upstream, unique names,
// balance ↔ hash, which auth method is configured, clashing addresses.
// They read the raw parsed YAML defensively rather than zod's output, so they
// run (and report) even when some unrelated value is wrong.

import type { PathSegment, Problem } from './problems.js';
import { formatPath, quote } from './problems.js';
import { DEFAULTS, NAME_MESSAGE } from './schema.js';
import { parseAddress } from './values.js';

type Raw = Record<string, unknown>;

function isRecord(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** YAML's empty value stands for an empty section (see `section` in schema.ts). */
function asSection(v: unknown): Raw | undefined {
  if (v === null) return {};
  return isRecord(v) ? v : undefined;
}

const NAME_RE = /^[A-Za-z0-9_-]+$/;
const BALANCES = new Set(['round-robin', 'least-connections', 'power-of-two', 'hash']);

export function crossCheck(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const root = asSection(raw);
  if (root === undefined) return problems;
  const upstreams = isRecord(root.upstreams) ? root.upstreams : undefined;
  if (upstreams !== undefined) checkUpstreams(upstreams, problems);
  if (Array.isArray(root.routes)) checkRoutes(root.routes, upstreams, problems);
  checkAddresses(root, problems);
  return problems;
}

function checkUpstreams(upstreams: Raw, problems: Problem[]): void {
  for (const [name, value] of Object.entries(upstreams)) {
    const path = ['upstreams', name];
    if (!NAME_RE.test(name)) problems.push({ path, message: `upstream name ${NAME_MESSAGE}` });
    // Plain objects treat this key as their prototype: the upstream would silently vanish.
    else if (name === '__proto__') problems.push({ path, message: 'is a reserved name' });
    const u = asSection(value);
    if (u === undefined) continue;
    const balance = u.balance ?? 'round-robin';
    if (typeof balance !== 'string' || !BALANCES.has(balance)) continue;
    const hasHash = u.hash !== undefined;
    if (balance === 'hash' && !hasHash) {
      problems.push({ path: [...path, 'hash'], message: 'is required when balance is hash (e.g. hash: { key: "header:x-user-id" })' });
    }
    // A hash key beside another balance is accepted and unused: CONFIG.md's own
    // example writes one, and switching algorithms should be a one-line change.
  }
}

function checkRoutes(routes: readonly unknown[], upstreams: Raw | undefined, problems: Problem[]): void {
  const known = upstreams === undefined ? [] : Object.keys(upstreams);
  const names = new Map<string, string>();
  routes.forEach((value, i) => {
    const r = asSection(value);
    if (r === undefined) return;
    const path: PathSegment[] = ['routes', i];

    if (upstreams !== undefined && typeof r.upstream === 'string' && r.upstream.trim() !== '') {
      const target = r.upstream.trim();
      if (!Object.hasOwn(upstreams, target)) {
        const list = known.length === 0 ? 'none' : known.map((k) => (NAME_RE.test(k) ? k : quote(k))).join(', ');
        problems.push({ path: [...path, 'upstream'], message: `no upstream named ${quote(target)} (known: ${list})` });
      }
    }

    // An unnamed route is "route-<index>"; a user may have taken that name already.
    const named = typeof r.name === 'string';
    if (named || r.name === undefined) {
      const name = named ? (r.name as string).trim() : `route-${i}`;
      const where = formatPath(named ? [...path, 'name'] : path);
      const first = names.get(name);
      if (first === undefined) {
        names.set(name, where);
      } else if (named) {
        problems.push({ path: [...path, 'name'], message: `duplicate route name ${quote(name)} (also ${first})` });
      } else {
        problems.push({ path, message: `its default name ${quote(name)} is already taken by ${first}; give this route a name` });
      }
    }

    if (r.auth !== undefined) checkAuth(r.auth, [...path, 'auth'], problems);
  });
}

function checkAuth(value: unknown, path: PathSegment[], problems: Problem[]): void {
  const auth = asSection(value);
  if (auth === undefined) return;
  const methods = ['jwt', 'apiKeys', 'forward'].filter((k) => auth[k] !== undefined);
  if (methods.length === 0) {
    problems.push({ path, message: 'needs at least one of jwt, apiKeys or forward' });
  }
  const jwt = auth.jwt === undefined ? undefined : asSection(auth.jwt);
  if (jwt !== undefined) {
    const keys = ['secret', 'publicKey', 'jwksUrl'].filter((k) => jwt[k] !== undefined);
    if (keys.length === 0) {
      problems.push({ path: [...path, 'jwt'], message: 'needs one of secret, publicKey or jwksUrl' });
    } else if (keys.length > 1) {
      problems.push({ path: [...path, 'jwt'], message: `set only one of secret, publicKey or jwksUrl (found ${keys.join(' and ')})` });
    }
  }
}

/** Two listeners (or a listener and admin) on one fixed port would fail at bind; say so now. */
function checkAddresses(root: Raw, problems: Problem[]): void {
  const seen = new Map<string, string>();
  const visit = (value: unknown, path: PathSegment[]): void => {
    if (typeof value !== 'string') return;
    let key: string;
    try {
      const a = parseAddress(value.trim());
      if (a.port === 0) return;
      key = `${a.host.toLowerCase()}:${a.port}`;
    } catch {
      return; // the schema reports the malformed address
    }
    const first = seen.get(key);
    if (first === undefined) seen.set(key, formatPath(path));
    else problems.push({ path, message: `same address as ${first}` });
  };
  if (Array.isArray(root.listeners)) {
    root.listeners.forEach((l, i) => visit(asSection(l)?.address, ['listeners', i, 'address']));
  }
  const admin = asSection(root.admin);
  if (admin !== undefined) visit(admin.address ?? DEFAULTS.admin.address, ['admin', 'address']);
}
