/**
 * `npm run build:worker`: bundles the edge worker exactly as `wrangler
 * deploy` would (`wrangler deploy --dry-run --outdir dist/worker`) and
 * prints the bundle's size, raw and gzipped (goal: under 64 KiB gzipped).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist/worker');
rmSync(out, { recursive: true, force: true });
const wrangler = join(root, 'node_modules/.bin/wrangler');
const r = spawnSync(wrangler, ['deploy', '--dry-run', '--outdir', out], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
  env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
  encoding: 'utf8',
});
if (r.status !== 0) {
  process.stderr.write(r.stdout + r.stderr);
  process.stderr.write(`build:worker: wrangler failed (exit ${r.status})\n`);
  process.exit(1);
}
const file = readdirSync(out).find((f) => f.endsWith('.js'));
if (!file) {
  process.stderr.write(`build:worker: no .js bundle in ${out}\n`);
  process.exit(1);
}
const code = readFileSync(join(out, file));
const gz = gzipSync(code, { level: 9 }).length;
const kib = (n: number) => (n / 1024).toFixed(1) + ' KiB';
process.stdout.write(`worker bundle ${join('dist/worker', file)}: ${kib(code.length)} raw, ${kib(gz)} gzipped (goal < 64 KiB gzipped)\n`);
