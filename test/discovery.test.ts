/**
 * Plugin discovery (`plugins_dir` + `plugins_glob`, as go-plugin's
 * Discover): every executable in the folder whose name matches the glob is
 * a plugin named after its file; a matching file that is not executable is
 * a warning and never runs; an explicit `plugins` entry of the same name
 * wins; ambiguous or invalid names and a missing folder are config errors.
 * Checked through `loadConfigFile`, `hookgate validate`, `hookgate serve`
 * and the config server, on real folders and files.
 */

import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfigFile } from '../node-runner/config/config-file.ts';
import { startConfigServer } from '../node-runner/config/config-server.ts';
import { recordingLogger } from '../node-runner/log.ts';
import { ConfigError, type Config } from '../src/core/config/config.ts';
import { request } from './helpers/http.ts';
import { AUTH_TS, ROOT } from './helpers/paths.ts';
import { baseConfig, readyz, runCli, startGateway, whenReady, writeConfig } from './helpers/processes.ts';
import { scope, tempDir, type Scope } from './helpers/scope.ts';

const SCRIPT = '#!/bin/sh\nexit 0\n';

/** Writes `dir/name` with mode `mode` (0o755: executable; 0o644: not). */
function file(dir: string, name: string, mode: number, text = SCRIPT): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

/** A temp dir with a `plugins` folder holding `files` (name → mode); returns the dir and the folder. */
function setup(s: Scope, files: Record<string, number>): { dir: string; plugins: string } {
  const dir = tempDir(s);
  const plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  for (const [name, mode] of Object.entries(files)) file(plugins, name, mode);
  return { dir, plugins };
}

/** Loads `config` written into `dir`; returns the config and the warnings, or the problems it was refused with. */
async function load(dir: string, config: Record<string, unknown>): Promise<{ config?: Config; warnings: string[]; problems?: string[] }> {
  const warnings: string[] = [];
  try {
    return { config: await loadConfigFile(writeConfig(dir, config), (w) => warnings.push(w)), warnings };
  } catch (err) {
    if (err instanceof ConfigError) return { warnings, problems: err.problems };
    throw err;
  }
}

const STATIC = { type: 'static', body: 'ok' };

describe('plugins_dir discovery (loadConfigFile)', { concurrency: true }, () => {
  test('an executable is registered under its file name without the extension, with an absolute path; a non-executable file is a warning and not registered', async (t) => {
    const { dir, plugins } = setup(scope(t), { 'auth.sh': 0o755, 'notes.txt': 0o644 });
    const { config, warnings, problems } = await load(dir, { plugins_dir: './plugins' });
    assert.equal(problems, undefined);
    assert.deepEqual(Object.keys(config!.plugins), ['auth']);
    assert.equal(config!.plugins.auth.path, join(plugins, 'auth.sh'));
    assert.ok(isAbsolute(config!.plugins.auth.path!));
    assert.equal(config!.plugins.auth.cwd, dir, 'the working directory defaults to the config folder, as for a plugin written in plugins');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /^plugins_dir: "notes\.txt" .*not executable.*not registered/);
  });

  test('a matching folder is a warning (not a regular file), not a plugin', async (t) => {
    const { dir, plugins } = setup(scope(t), { 'auth.sh': 0o755 });
    mkdirSync(join(plugins, 'lib'));
    const { config, warnings } = await load(dir, { plugins_dir: 'plugins' });
    assert.deepEqual(Object.keys(config!.plugins), ['auth']);
    assert.deepEqual(warnings, ['plugins_dir: "lib" matches plugins_glob but is not a regular file; it is not registered as a plugin']);
  });

  test('plugins_glob filters: only matching files are registered, and others are not even warned about', async (t) => {
    const { dir } = setup(scope(t), { 'a.py': 0o755, 'b.sh': 0o755, 'c.txt': 0o644 });
    const { config, warnings } = await load(dir, { plugins_dir: 'plugins', plugins_glob: '*.py' });
    assert.deepEqual(Object.keys(config!.plugins), ['a']);
    assert.deepEqual(warnings, []);
  });

  test('an explicit plugins entry with the same name wins over the discovered file', async (t) => {
    const { dir } = setup(scope(t), { 'auth.sh': 0o755, 'audit.sh': 0o755 });
    const { config } = await load(dir, { plugins_dir: 'plugins', plugins: { auth: { command: ['python3', 'auth.py'] } } });
    assert.deepEqual(config!.plugins.auth.command, ['python3', 'auth.py']);
    assert.equal(config!.plugins.auth.path, undefined);
    assert.equal(config!.plugins.audit.path, join(dir, 'plugins', 'audit.sh'));
  });

  test('a route can bind a discovered plugin, with per-route overrides', async (t) => {
    const { dir } = setup(scope(t), { 'auth.sh': 0o755 });
    const { config, problems } = await load(dir, {
      plugins_dir: 'plugins',
      routes: [{ id: 'api', plugins: ['auth', { plugin: 'auth', on_error: 'allow' }], action: STATIC }],
    });
    assert.equal(problems, undefined);
    assert.deepEqual(config!.routes[0].plugins, [
      { plugin: 'auth', on_error: 'deny', with_body: false },
      { plugin: 'auth', on_error: 'allow', with_body: false },
    ]);
  });

  test('two executables giving the same name are a config problem naming both files', async (t) => {
    const { dir } = setup(scope(t), { 'a.sh': 0o755, 'a.py': 0o755 });
    const { problems } = await load(dir, { plugins_dir: 'plugins' });
    assert.deepEqual(problems, ['plugins_dir: "a.py" and "a.sh" both give the plugin name "a"; rename one, or name the plugin in plugins']);
  });

  test('a non-executable file does not collide with an executable of the same name', async (t) => {
    const { dir } = setup(scope(t), { 'a.sh': 0o755, 'a.md': 0o644 });
    const { config, warnings, problems } = await load(dir, { plugins_dir: 'plugins' });
    assert.equal(problems, undefined);
    assert.equal(config!.plugins.a.path, join(dir, 'plugins', 'a.sh'));
    assert.equal(warnings.length, 1);
  });

  test('an executable whose name is not a valid plugin name is a config problem', async (t) => {
    const { dir } = setup(scope(t), { 'my plugin.sh': 0o755 });
    const { problems } = await load(dir, { plugins_dir: 'plugins' });
    assert.equal(problems?.length, 1);
    assert.match(problems![0], /^plugins_dir: "my plugin\.sh" gives the plugin name "my plugin", which is not one of letters, digits/);
  });

  test('a missing plugins_dir is a config problem naming it, listed with the other problems', async (t) => {
    const dir = tempDir(scope(t));
    const { problems } = await load(dir, { plugins_dir: './nope', routes: [{ plugins: ['ghost'], action: 'missing' }] });
    assert.deepEqual(problems, [
      `plugins_dir: "./nope" (${join(dir, 'nope')}) does not exist`,
      'routes[0].plugins[0]: no plugin named "ghost" in plugins',
      'routes[0].action: no action named "missing" in actions',
    ]);
  });

  test('every load reads the folder again: an executable added later is picked up', async (t) => {
    const { dir, plugins } = setup(scope(t), { 'a.sh': 0o755 });
    const before = await load(dir, { plugins_dir: 'plugins' });
    file(plugins, 'b.sh', 0o755);
    const after = await load(dir, { plugins_dir: 'plugins' });
    assert.deepEqual(Object.keys(before.config!.plugins), ['a']);
    assert.deepEqual(Object.keys(after.config!.plugins), ['a', 'b']);
  });
});

describe('plugins_dir discovery (commands)', { concurrency: true, timeout: 60_000 }, () => {
  test('hookgate validate prints a non-executable file as a warning and exits 0', async (t) => {
    const { dir } = setup(scope(t), { 'auth.sh': 0o755, 'notes.txt': 0o644 });
    const configFile = writeConfig(dir, { plugins_dir: 'plugins', routes: [{ plugins: ['auth'], action: STATIC }] });
    const res = await runCli(['validate', configFile]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /ok \(1 routes, 1 plugins\)/);
    assert.match(res.stderr, /warning: plugins_dir: "notes\.txt" matches plugins_glob but is not executable/);
  });

  test('hookgate validate exits 1 on a name collision, printing the problem', async (t) => {
    const { dir } = setup(scope(t), { 'a.sh': 0o755, 'a.py': 0o755 });
    const res = await runCli(['validate', writeConfig(dir, { plugins_dir: 'plugins' })]);
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /plugins_dir: "a\.py" and "a\.sh" both give the plugin name "a"/);
  });

  test('hookgate serve starts a discovered plugin that a route binds, and logs the warnings', async (t) => {
    const s = scope(t);
    // Under the project folder, so the plugin's `import 'hookgate/sdk'` resolves (package self-reference).
    mkdirSync(join(ROOT, 'tmp'), { recursive: true });
    const dir = mkdtempSync(join(ROOT, 'tmp', 'discovery-'));
    s.defer(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'plugins'));
    copyFileSync(AUTH_TS, join(dir, 'plugins', 'auth.ts'));
    chmodSync(join(dir, 'plugins', 'auth.ts'), 0o755);
    file(join(dir, 'plugins'), 'notes.txt', 0o644);
    const configFile = writeConfig(dir, baseConfig({ plugins_dir: 'plugins', routes: [{ id: 'api', plugins: ['auth'], action: STATIC }] }));

    const gw = await startGateway(s, configFile);
    await whenReady(gw);

    const status = await readyz(gw);
    assert.deepEqual(status.body.plugins.map((p) => [p.name, p.ready]), [['auth', true]]);
    assert.equal((await request(`${gw.url}/x`)).status, 401);
    assert.equal((await request(`${gw.url}/x`, { headers: { authorization: 'Bearer demo-token' } })).status, 200);
    const warning = await gw.waitForLog((l) => /"notes\.txt".*not executable/.test(l.msg));
    assert.equal(warning.level, 40, 'logged at warn level');
  });

  test('hookgate serve reads the folder again on reload and logs its warnings then too', async (t) => {
    const s = scope(t);
    const { dir, plugins } = setup(s, { 'a.sh': 0o755 });
    const config = baseConfig({ plugins_dir: 'plugins', routes: [{ action: STATIC }] });
    const gw = await startGateway(s, writeConfig(dir, config));
    await whenReady(gw); // a round trip: the config file is watched by then
    const from = gw.logs.length;
    file(plugins, 'b.txt', 0o644);
    gw.rewrite({ ...config, routes: [{ id: 'changed', action: STATIC }] });
    const warning = await gw.waitForLog((l) => /"b\.txt".*not executable/.test(l.msg), { from });
    assert.equal(warning.level, 40);
    await gw.waitForLog('config reloaded', { from });
  });

  test('the config server streams a discovered plugin like one written in plugins', async (t) => {
    const s = scope(t);
    const { dir, plugins } = setup(s, { 'auth.sh': 0o755, 'notes.txt': 0o644 });
    const configFile = writeConfig(dir, { plugins_dir: 'plugins', routes: [{ id: 'api', plugins: ['auth'], action: STATIC }] });
    const logger = recordingLogger();
    const key = 'config-key-0123456789abcdef';
    const server = await startConfigServer({ configFile, listen: '127.0.0.1:0', key, logger });
    s.defer(() => server.close());

    const put = await firstEvent(server.url, key);
    assert.equal(put.event, 'put');
    assert.deepEqual(put.data.plugins, { auth: { path: join(plugins, 'auth.sh'), cwd: dir, version: put.data.plugins.auth.version } });
    assert.ok(logger.entries.some((e) => e.level === 'warn' && /"notes\.txt".*not executable/.test(e.msg)));
  });
});

/** The first event of a config stream. */
async function firstEvent(url: string, key: string): Promise<{ event: string; data: any }> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` }, signal: ac.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  try {
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    ac.abort();
  }
  const block = text.slice(0, text.indexOf('\n\n')).split('\n');
  const field = (name: string) => block.find((l) => l.startsWith(`${name}: `))!.slice(name.length + 2);
  return { event: field('event'), data: JSON.parse(field('data')) };
}
