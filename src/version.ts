import { createRequire } from 'node:module';

/** wsgate's version, from its package.json (read once, at startup). */
export function version(): string {
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
  return pkg.version;
}
