import type { UpgradeRequest } from './request-head.js';

/**
 * Brings a request's target to origin form ("/path?query"), or says why it
 * cannot be. RFC 9112 §3.2.2 has servers accept the absolute form
 * ("http://host/path"), where the target's authority, not Host, names the
 * resource. wsgate routes by Host and path and forwards the target as it
 * reads it: left as it is, "GET http://b.example/admin" with Host a.example
 * would be routed as a.example's, past the checks of a "/admin" route, and
 * read by a backend as b.example's /admin. So the absolute form is
 * accepted, and rewritten to origin form, only when its authority is the
 * Host; other forms (authority, asterisk) are not requests wsgate serves.
 * Heads from the gateway's own parser are always in origin form.
 */
export function toOriginForm(req: UpgradeRequest): string | undefined {
  const url = req.url ?? '/';
  if (url.charCodeAt(0) === SLASH) return undefined;
  const m = ABSOLUTE.exec(url);
  if (m === null) return 'request target is not in origin or absolute form';
  const host = req.headers.host;
  if (typeof host !== 'string' || m[1]!.toLowerCase() !== host.toLowerCase()) return 'absolute-form target names another host than Host';
  (req as { url?: string }).url = m[2] === undefined || m[2] === '' ? '/' : m[2].startsWith('?') ? `/${m[2]}` : m[2];
  return undefined;
}

const SLASH = 0x2f;
/** scheme "://" authority (no userinfo) then the path and query, if any. */
const ABSOLUTE = /^(?:https?|wss?):\/\/([^/?#@\s]+)([/?][^#\s]*)?$/i;
