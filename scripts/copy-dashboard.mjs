// Part of `npm run build`: copies the dashboard's static files (src/admin/dashboard/)
// and the chart library it uses (uPlot, from node_modules) next to the compiled
// admin server, into dist/admin/dashboard/ and dist/admin/dashboard/vendor/.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const from = new URL('src/admin/dashboard/', root);
const to = new URL('dist/admin/dashboard/', root);
const uplot = new URL('node_modules/uplot/dist/', root);
const VENDOR = ['uPlot.iife.min.js', 'uPlot.min.css'];

rmSync(to, { recursive: true, force: true });
mkdirSync(new URL('vendor/', to), { recursive: true });
for (const entry of readdirSync(from, { withFileTypes: true })) {
  if (entry.isFile()) copyFileSync(new URL(entry.name, from), new URL(entry.name, to));
}
for (const name of VENDOR) copyFileSync(new URL(name, uplot), new URL(`vendor/${name}`, to));
