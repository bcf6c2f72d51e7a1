/**
 * The published package, used as someone outside the repo uses it: `npm
 * pack`, install the tarball into an empty folder (dependencies from the
 * npm cache), write a plugin with `hookgate/sdk` in plain JavaScript, and
 * run `npx hookgate` on the system's Node (≥ 20, not the checkout's pinned
 * runtime) to serve it.
 *
 * `npm test` builds `lib/` first (`pretest`), so packing here skips the
 * scripts.
 */

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { request } from './helpers/http.ts';
import { ROOT } from './helpers/paths.ts';
import { baseConfig, startGateway, whenReady } from './helpers/processes.ts';
import { suiteScope, tempDir } from './helpers/scope.ts';
import { startUpstream } from './helpers/upstream.ts';

/** The first `node` on PATH outside this checkout that is at least Node 20 (the system's), else the one running the tests. */
function systemNode(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || dir.startsWith(ROOT)) continue;
    const bin = join(dir, 'node');
    if (!existsSync(bin)) continue;
    const major = Number(execFileSync(bin, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).trim());
    if (major >= 20) return bin;
  }
  return process.execPath;
}

/** Runs a command to completion (bounded); returns stdout, or fails with its output. */
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out}\n${err}`));
    });
  });
}

const PLUGIN = `#!/usr/bin/env node
import { allow, createPlugin, deny } from 'hookgate/sdk';

const plugin = createPlugin();
plugin.onRequest((req) => (req.h['Authorization'] === 'Bearer let-me-in' ? allow({ 'X-User': 'outsider' }) : deny(401, 'no\\n')));
await plugin.start();
`;

const TYPED = `import { allow, createPlugin, type RequestInfo } from 'hookgate/sdk';
const check = (req: RequestInfo) => allow({ 'X-Path': req.p });
await createPlugin().onRequest(check).start();
`;

describe('the packed package, installed into an empty folder', { timeout: 300_000 }, () => {
  const s = suiteScope();
  let app = '';
  const node = systemNode();

  before(async () => {
    assert.ok(existsSync(join(ROOT, 'lib/node-runner/cli/cli.js')), 'lib/ is built (npm run build:package; npm test does it first)');
    const dir = tempDir(s, 'hookgate-pack-');
    await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], ROOT);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    app = join(dir, 'app');
    execFileSync('mkdir', [app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // Tarballs come from the npm cache that installing the checkout filled; metadata the cache lacks is fetched.
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], app);
  });

  test('brings only runtime dependencies: no TypeScript, wrangler or miniflare', () => {
    const installed = readdirSync(join(app, 'node_modules'));
    for (const dev of ['typescript', 'wrangler', 'miniflare', '@cloudflare', 'node']) assert.ok(!installed.includes(dev), `${dev} is not installed`);
  });

  test('npx hookgate validate runs on the system Node', async () => {
    writeFileSync(join(app, 'check.json5'), JSON.stringify(baseConfig({ routes: [{ action: { type: 'static', body: 'hi' } }] })));
    const out = await run(node, [join(app, 'node_modules/.bin/hookgate'), 'validate', 'check.json5'], app);
    assert.match(out, /check\.json5: ok \(1 routes, 0 plugins\)/);
  });

  test('hookgate/sdk is typed: a TypeScript plugin type-checks against the shipped .d.ts', async () => {
    writeFileSync(join(app, 'typed.ts'), TYPED);
    const tsc = join(ROOT, 'node_modules/.bin/tsc');
    await run(tsc, ['--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules/@types'), 'typed.ts'], app);
    writeFileSync(join(app, 'wrong.ts'), `import { allow } from 'hookgate/sdk';\nallow({ 'X-Count': 42 });\n`);
    await assert.rejects(run(tsc, ['--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules/@types'), 'wrong.ts'], app), /wrong\.ts/);
  });

  test('serves a route guarded by a plugin written with hookgate/sdk, on the system Node', async () => {
    const plugin = join(app, 'auth.mjs');
    writeFileSync(plugin, PLUGIN);
    chmodSync(plugin, 0o755);
    const up = await startUpstream(s);
    const config = baseConfig({
      routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'proxy', upstream: up.url } }],
      plugins: { auth: { path: plugin } },
    });
    // The runner puts its own Node first on the plugins' PATH: here, the system's.
    const gw = await startGateway(s, config, { bin: [node, join(app, 'node_modules/.bin/hookgate')], cwd: app });
    await whenReady(gw);
    assert.equal((await request(`${gw.url}/api/me`)).status, 401);
    const ok = await request(`${gw.url}/api/me`, { headers: { authorization: 'Bearer let-me-in' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json().headers['x-user'], 'outsider');
  });
});
