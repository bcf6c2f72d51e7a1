/**
 * One runner per state dir, and a private one. A second `hookgate serve`
 * on a state dir another runner holds exits at once with a message naming
 * the dir and the other runner's pid, and the first runner's plugins are
 * left alone (they used to be taken over back and forth). A runner killed
 * with SIGKILL leaves a stale lock the next runner takes over. A state dir
 * writable by others, or owned by another user, is refused.
 */

import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request } from '../helpers/http.ts';
import { CONFIGURABLE } from '../helpers/paths.ts';
import { baseConfig, runCli, startRunner, runnerConfig, writeConfig } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';

const config = (dir: string) =>
  runnerConfig({
    routes: [{ id: 'api', plugins: ['p'], action: { type: 'static', body: 'ok' } }],
    plugins: { p: { path: CONFIGURABLE, env: { FIXTURE_DIR: dir } } },
  });

const pluginPids = (logs: Array<{ msg: string; pid?: unknown }>) => logs.filter((l) => l.msg === 'plugin started' || l.msg === 'plugin adopted').map((l) => Number(l.pid));

describe('the state dir', { concurrency: true, timeout: 60_000 }, () => {
  test("a second runner on a held state dir exits at once, naming the dir and the first runner's pid; the first keeps its plugins", async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const first = await startRunner(s, config(dir), { dir });
    const before = pluginPids(first.logs);

    const second = await runCli(['serve', '--config', first.configFile]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`the state dir ${join(dir, '.hookgate-state')} is in use by another runner \\(pid ${first.pid}\\)`));
    assert.match(second.stderr, /give each runner its own --state-dir/);

    assert.equal((await request(`${first.gateway}/api`)).text, 'ok');
    assert.deepEqual(pluginPids(first.logs), before, 'no plugin was restarted or taken over');
    assert.ok(!first.logs.some((l) => /lost the connection to the keeper/.test(l.msg)), 'the keeper was not taken away');
  });

  test('a runner killed with SIGKILL leaves a stale lock; the next runner takes it over, and releases it when it stops', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const lock = join(dir, '.hookgate-state', 'runner.lock');
    const first = await startRunner(s, config(dir), { dir });
    assert.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, first.pid);
    await first.kill();
    assert.ok(existsSync(lock), 'a killed runner cannot remove its lock');

    const second = await startRunner(s, config(dir), { dir });
    assert.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, second.pid);
    assert.equal((await second.stop()).code, 0);
    assert.equal(existsSync(lock), false, 'a runner that stops releases the lock');
  });

  test('a state dir writable by its group or others is refused, and so is one owned by another user', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const file = writeConfig(dir, baseConfig({ routes: [{ action: { type: 'static' } }] }));
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o770);
    const refused = await runCli(['serve', '--config', file, '--state-dir', open]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`the state dir ${open} is writable by its group or others \\(mode 0770\\); run "chmod go-w ${open}"`));

    if (process.getuid?.() !== 0) return t.diagnostic('not root: the other owner case needs chown');
    const foreign = join(dir, 'foreign');
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, 12345, 12345);
    const theirs = await runCli(['serve', '--config', file, '--state-dir', foreign]);
    assert.equal(theirs.code, 1);
    assert.match(theirs.stderr, new RegExp(`the state dir ${foreign} is owned by uid 12345, not by this user \\(uid 0\\)`));
  });
});
