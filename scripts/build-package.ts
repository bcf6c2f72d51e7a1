/**
 * `npm run build:package`: compiles what the published package runs into
 * `lib/` (JavaScript and `.d.ts`, with `tsc -p tsconfig.build.json`), so
 * an install needs only Node ≥ 20 and the runtime dependencies: no
 * TypeScript, no type stripping at start-up.
 *
 * Besides the compiled modules, `lib/examples/` gets the demo's other
 * files (config, shell plugin), with the demo config pointing at the
 * compiled example plugin. Compiled files that start with `#!` (the CLI,
 * the example plugins) are made executable.
 *
 * Runs before `npm start`, `npm test` and `npm pack`, and does nothing
 * when `lib/` is newer than every input (`--force` rebuilds anyway): the
 * checkout's own example plugin imports `hookgate/sdk`, which resolves,
 * as it does for users, to the compiled SDK.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const lib = join(root, 'lib');
const stamp = join(lib, '.built');
const inputs = ['src/core', 'node-runner', 'examples', 'tsconfig.build.json', 'tsconfig.json', 'scripts/build-package.ts'];
if (!process.argv.includes('--force') && existsSync(stamp)) {
  const built = statSync(stamp).mtimeMs;
  const newest = Math.max(...inputs.flatMap((p) => walk(join(root, p))).map((f) => statSync(f).mtimeMs));
  if (newest < built) process.exit(0);
}
rmSync(lib, { recursive: true, force: true });

const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  process.stderr.write(`build:package: tsc failed (exit ${tsc.status})\n`);
  process.exit(1);
}

for (const file of walk(join(root, 'examples'))) {
  if (file.endsWith('.ts') || file.endsWith('.py')) continue; // .py examples find the SDK from the package root
  const out = join(lib, relative(root, file));
  if (file.endsWith('.json5')) {
    // Plugin paths in the demo config name the .ts sources; the package runs the compiled files.
    writeFileSync(out, readFileSync(file, 'utf8').replace(/(\.\.\/plugins\/[\w-]+)\.ts"/g, '$1.js"'));
  } else {
    cpSync(file, out);
  }
}

let executables = 0;
for (const file of walk(lib)) {
  if (!file.endsWith('.js') && !file.endsWith('.sh') && !file.endsWith('.py')) continue;
  if (readFileSync(file, 'utf8').startsWith('#!')) {
    chmodSync(file, 0o755);
    executables++;
  }
}
const count = walk(lib).filter((f) => f.endsWith('.js')).length;
writeFileSync(stamp, '');
process.stdout.write(`build:package: ${count} modules in lib/ (${executables} executable)\n`);

/** Every file under `path` (itself when it is a file). */
function walk(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => walk(join(path, name)));
}
