/**
 * The plugin authors' dev loop (issue 16): a plugin's code changing on disk
 * restarts it — at once with `watch` (per plugin) or `serve --watch-plugins`,
 * and at the next SIGHUP or config reload without them — and a reload says
 * what it did, or that nothing changed. Real `hookgate serve` processes and
 * real plugins; the plugin is a small wrapper file in a temp dir that names
 * itself and then runs the gateway tests' verdict plugin, so editing the
 * wrapper is editing the plugin's code.
 */

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/core/config/config.ts';
import { codeFiles, codeFingerprint } from '../../node-runner/plugin/code.ts';
import { streamProblems } from '../../node-runner/config/stream-policy.ts';
import { request, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, runCli, startGateway, type Gateway } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** Writes `<dir>/<file>`: a plugin that calls itself `name` and runs the verdict fixture. */
function writePlugin(dir: string, file: string, name: string): string {
  const path = join(dir, file);
  writeFileSync(path, `process.env.FIXTURE_NAME = ${JSON.stringify(name)};\nprocess.env.FIXTURE_HOOKS = 'on_request';\nawait import(${JSON.stringify(VERDICT_PLUGIN)});\n`);
  return path;
}

/** The plugin (name and pid) that allowed a request to `path`, as the upstream saw it. */
async function whoAnswers(gw: Gateway, path: string): Promise<{ name: string; pid: number }> {
  const res = await request(`${gw.url}${path}`);
  if (res.status !== 200) return { name: `status ${res.status}`, pid: 0 };
  const seen = res.json().headers;
  return { name: String(seen['x-plugin-name'] ?? ''), pid: Number(seen['x-plugin-pid'] ?? 0) };
}

/** Waits until the plugin on `path` calls itself `name` (after its restart). */
function untilAnswers(gw: Gateway, path: string, name: string) {
  return waitFor(
    async () => {
      const w = await whoAnswers(gw, path);
      return w.name === name ? w : null;
    },
    { timeoutMs: 30_000, what: `the plugin on ${path} to answer as ${name}` },
  );
}

describe('plugin watch', { concurrency: true, timeout: 90_000 }, () => {
  test('watch: true restarts that plugin when its file changes; a plugin without it keeps running its old code', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const up = await startUpstream(s);
    writePlugin(dir, 'a.mjs', 'a-v1');
    writePlugin(dir, 'b.mjs', 'b-v1');
    const gw = await startGateway(
      s,
      baseConfig({
        routes: ['a', 'b'].map((id) => ({ id, match: { path: `/${id}/*` }, plugins: [id], action: 'app' })),
        actions: { app: { type: 'proxy', upstream: up.url } },
        plugins: {
          a: { command: [process.execPath, 'a.mjs'], cwd: dir, watch: true },
          b: { command: [process.execPath, 'b.mjs'], cwd: dir },
        },
      }),
    );
    const a1 = await untilAnswers(gw, '/a/x', 'a-v1');
    const b1 = await untilAnswers(gw, '/b/x', 'b-v1');
    await gw.waitForLog((l) => l.msg === 'watching plugin files; a change restarts the plugin' && JSON.stringify(l.plugins) === '["a"]');

    const mark = gw.logs.length;
    writePlugin(dir, 'b.mjs', 'b-v2');
    writePlugin(dir, 'a.mjs', 'a-v2');
    const a2 = await untilAnswers(gw, '/a/x', 'a-v2');
    assert.notEqual(a2.pid, a1.pid, 'a runs in a new process');
    await waitFor(() => !isAlive(a1.pid), { timeoutMs: 10_000, what: "a's old process to exit" });
    const restarted = await gw.waitForLog('plugin code changed; restarting it', { from: mark });
    assert.equal(restarted.plugin, 'a');
    assert.ok(Array.isArray(restarted.files) && restarted.files.includes(join(dir, 'a.mjs')), JSON.stringify(restarted));
    const summary = await gw.waitForLog('plugin files changed', { from: mark });
    assert.deepEqual(summary.restarted, ['a (code changed)']);
    assert.deepEqual(await whoAnswers(gw, '/b/x'), b1, 'b is not watched: same process, old code');
  });

  test('serve --watch-plugins watches every plugin it starts, folders in a watch list too; watch: false opts one out', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const up = await startUpstream(s);
    writePlugin(dir, 'a.mjs', 'a-v1');
    writePlugin(dir, 'b.mjs', 'b-v1');
    writePlugin(dir, 'c.mjs', 'c-v1');
    mkdirSync(join(dir, 'lib', 'deep'), { recursive: true });
    writeFileSync(join(dir, 'lib', 'deep', 'data.txt'), '1');
    const gw = await startGateway(
      s,
      baseConfig({
        routes: ['a', 'b', 'c'].map((id) => ({ id, match: { path: `/${id}/*` }, plugins: [id], action: 'app' })),
        actions: { app: { type: 'proxy', upstream: up.url } },
        plugins: {
          a: { command: [process.execPath, 'a.mjs'], cwd: dir },
          b: { command: [process.execPath, 'b.mjs'], cwd: dir, watch: [join(dir, 'lib')] },
          c: { command: [process.execPath, 'c.mjs'], cwd: dir, watch: false },
        },
      }),
      { args: ['--watch-plugins'] },
    );
    await untilAnswers(gw, '/a/x', 'a-v1');
    const b1 = await untilAnswers(gw, '/b/x', 'b-v1');
    const c1 = await untilAnswers(gw, '/c/x', 'c-v1');
    await gw.waitForLog((l) => l.msg === 'watching plugin files; a change restarts the plugin' && JSON.stringify(l.plugins) === '["a","b"]');

    // a file deep in b's watched folder: b restarts (same wrapper, so same name, new pid)
    let mark = gw.logs.length;
    writeFileSync(join(dir, 'lib', 'deep', 'data.txt'), '2');
    const sum = await gw.waitForLog('plugin files changed', { from: mark });
    assert.deepEqual(sum.restarted, ['b (code changed)']);
    const b2 = await waitFor(
      async () => {
        const w = await whoAnswers(gw, '/b/x');
        return w.name === 'b-v1' && w.pid !== b1.pid ? w : null;
      },
      { timeoutMs: 30_000, what: 'b to answer from a new process' },
    );
    assert.ok(b2.pid > 0);

    mark = gw.logs.length;
    writePlugin(dir, 'c.mjs', 'c-v2');
    writePlugin(dir, 'a.mjs', 'a-v2');
    await untilAnswers(gw, '/a/x', 'a-v2');
    assert.deepEqual(await whoAnswers(gw, '/c/x'), c1, 'watch: false: c keeps its process');
  });

  test('without watch, SIGHUP restarts a plugin whose code changed and says so; an idle SIGHUP logs that nothing changed', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const up = await startUpstream(s);
    writePlugin(dir, 'a.mjs', 'a-v1');
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'a', match: { path: '/a/*' }, plugins: ['a'], action: 'app' }],
        actions: { app: { type: 'proxy', upstream: up.url } },
        plugins: { a: { command: [process.execPath, 'a.mjs'], cwd: dir } },
      }),
    );
    const a1 = await untilAnswers(gw, '/a/x', 'a-v1');

    let mark = gw.logs.length;
    process.kill(gw.pid, 'SIGHUP');
    const idle = await gw.waitForLog('config reloaded', { from: mark });
    assert.equal(idle.msg, 'config reloaded: nothing changed');
    assert.deepEqual(await whoAnswers(gw, '/a/x'), a1);

    writePlugin(dir, 'a.mjs', 'a-v2');
    mark = gw.logs.length;
    process.kill(gw.pid, 'SIGHUP');
    const hup = await gw.waitForLog('config reloaded', { from: mark });
    assert.equal(hup.msg, 'config reloaded: config unchanged, plugins restarted');
    assert.deepEqual(hup.restarted, ['a (code changed)']);
    await untilAnswers(gw, '/a/x', 'a-v2');
  });
});

describe('watch settings', () => {
  test('watch is refused with attach, and must be a boolean or a list of paths', () => {
    const attach = { socket: '/tmp/x.sock', hooks: ['on_request'] };
    assert.throws(
      () => parseConfig({ routes: [], plugins: { p: { attach, watch: true } } }),
      (err: Error & { problems?: string[] }) => (err.problems ?? []).some((p) => p.startsWith('plugins.p') && p.includes('"watch" is for plugins the runner starts')),
    );
    assert.throws(
      () => parseConfig({ routes: [], plugins: { p: { path: '/bin/true', watch: 'yes' } } }),
      (err: Error & { problems?: string[] }) => (err.problems ?? []).some((p) => p.startsWith('plugins.p.watch') && p.includes('expected true, false or a list of paths')),
    );
    assert.doesNotThrow(() => parseConfig({ routes: [], plugins: { p: { path: '/bin/true', watch: ['lib/'] } } }));
  });

  test('a config stream may not set watch', () => {
    const config = parseConfig({ routes: [], plugins: { p: { path: '/bin/true', watch: true } } });
    const problems = streamProblems(config, { plugins: 'allowlist', allowed: ['/bin/true'] });
    assert.ok(
      problems.some((p) => p.startsWith('plugins.p.watch: a plugin from a config stream cannot watch files')),
      problems.join('\n'),
    );
  });

  test('code files: the path; of a command, the files it names (not a bare interpreter or flags); the watch list', (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    writeFileSync(join(dir, 'x.py'), 'print(1)\n');
    assert.deepEqual(codeFiles({ path: '/opt/p' }), ['/opt/p']);
    assert.deepEqual(codeFiles({ command: ['python3', '-u', 'x.py', 'missing.py'], cwd: dir }), [join(dir, 'x.py')]);
    assert.deepEqual(codeFiles({ command: ['python3', 'x.py'], cwd: dir, watch: [join(dir, 'lib')] }), [join(dir, 'x.py'), join(dir, 'lib')]);
    assert.deepEqual(codeFiles({ attach: { socket: '/s', hooks: [] } } as never), []);

    const before = codeFingerprint([join(dir, 'x.py'), join(dir, 'lib')]);
    assert.equal(codeFingerprint([join(dir, 'x.py'), join(dir, 'lib')]), before, 'stable while nothing changes');
    mkdirSync(join(dir, 'lib'));
    writeFileSync(join(dir, 'lib', 'm.py'), '');
    const withLib = codeFingerprint([join(dir, 'x.py'), join(dir, 'lib')]);
    assert.notEqual(withLib, before, 'a created folder and file count');
    writeFileSync(join(dir, 'x.py'), 'print(22)\n');
    assert.notEqual(codeFingerprint([join(dir, 'x.py'), join(dir, 'lib')]), withLib, 'a rewritten file counts');
  });

  test('serve --watch-plugins goes with a config file, not a config stream', async () => {
    const res = await runCli(['serve', '--config-url', 'https://127.0.0.1:1/v1/stream', '--config-key-env', 'K', '--watch-plugins']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--watch-plugins goes with --config/);
  });
});
