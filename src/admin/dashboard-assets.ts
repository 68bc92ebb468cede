import { createHash } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// The dashboard's static files, served by the admin listener at GET /. They
// sit next to this module: src/admin/dashboard/ when running from source,
// dist/admin/dashboard/ in the built package (scripts/copy-dashboard.mjs puts
// them there, uPlot in its vendor/ folder). From source, uPlot comes from
// node_modules. Each file is read once, at its first request, then kept in memory.

const DASHBOARD_DIR = new URL('./dashboard/', import.meta.url);

/** The page loads only its own files and talks only to its own origin: no inline script, no CDN. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

interface AssetSpec {
  readonly type: string;
  /** The file in the dashboard folder. */
  readonly file: string;
  /** For a vendored file: where it is in node_modules when the dashboard folder has no copy. */
  readonly module?: string;
}

const ASSETS: ReadonlyMap<string, AssetSpec> = new Map([
  ['/', { type: 'text/html; charset=utf-8', file: 'index.html' }],
  ['/index.html', { type: 'text/html; charset=utf-8', file: 'index.html' }],
  ['/dashboard.js', { type: 'text/javascript; charset=utf-8', file: 'dashboard.js' }],
  ['/dashboard.css', { type: 'text/css; charset=utf-8', file: 'dashboard.css' }],
  ['/vendor/uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', file: 'vendor/uPlot.iife.min.js', module: 'uplot/dist/uPlot.iife.min.js' }],
  ['/vendor/uPlot.min.css', { type: 'text/css; charset=utf-8', file: 'vendor/uPlot.min.css', module: 'uplot/dist/uPlot.min.css' }],
]);

interface Asset {
  readonly body: Buffer;
  readonly etag: string;
}

const cache = new Map<string, Promise<Asset>>();

/** The dashboard's URL paths (for tests and for the admin server's route list). */
export const DASHBOARD_PATHS: readonly string[] = [...ASSETS.keys()];

/**
 * Serves a dashboard file for a GET or HEAD request to `path` (the URL path,
 * without the query). Returns false, having written nothing, when `path` is
 * not a dashboard file; otherwise answers (asynchronously) and returns true.
 */
export function serveDashboard(path: string, res: ServerResponse): boolean {
  const spec = ASSETS.get(path);
  if (spec === undefined) return false;
  let asset = cache.get(spec.file);
  if (asset === undefined) {
    asset = load(spec);
    cache.set(spec.file, asset);
    // A missing file is answered 500 now and looked for again next time.
    asset.catch(() => cache.delete(spec.file));
  }
  asset.then(
    (a) => reply(res, spec, a),
    (err: unknown) => fail(res, err),
  );
  return true;
}

async function load(spec: AssetSpec): Promise<Asset> {
  const body = await readFile(await locate(spec));
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
  return { body, etag };
}

async function locate(spec: AssetSpec): Promise<string> {
  const local = fileURLToPath(new URL(spec.file, DASHBOARD_DIR));
  if (spec.module === undefined) return local;
  try {
    await access(local);
    return local;
  } catch {
    return createRequire(import.meta.url).resolve(spec.module);
  }
}

function reply(res: ServerResponse, spec: AssetSpec, asset: Asset): void {
  if (res.destroyed || res.headersSent) return;
  const headers = {
    'content-type': spec.type,
    'cache-control': 'no-cache',
    etag: asset.etag,
    'content-security-policy': DASHBOARD_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  if (res.req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': asset.body.length });
  res.end(res.req.method === 'HEAD' ? undefined : asset.body);
}

function fail(res: ServerResponse, err: unknown): void {
  if (res.destroyed || res.headersSent) return;
  const text = `dashboard file unavailable: ${(err as Error).message}\n`;
  res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
