/**
 * Plugin host, process lifecycle: restart backoff (driven by a fake clock),
 * the sha256 pin, the stop sequence (stdin EOF, SIGTERM, SIGKILL), and the
 * keeper's promise that a SIGKILLed runner's plugins end once its grace is over.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { CONFIGURABLE, RUNNER_CHILD } from '../helpers/paths.ts';
import { applyReady, config, countingSpawn, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';
import { isAlive } from '../helpers/processes.ts';
import { recordingLogger } from '../../node-runner/log.ts';
import { PluginProcess } from '../../node-runner/plugin/process.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

test('a plugin that crashes at start is restarted after 1s, 2s, 4s, 8s, 16s, 30s, 30s; staying up 30 s resets the backoff', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const spawner = countingSpawn(() => clock.now());
  const m = h.manager({ clock, spawn: spawner, process: { stopGraceMs: 200 } });
  const startFile = join(h.dir, 'start-mode');
  writeFileSync(startFile, 'crash');
  await m.apply(config({ plugins: { p: h.fixture('p', { FIXTURE_START_FILE: startFile }) }, routes: [route('api', ['p'])] }));
  const restarts = () => h.logs('plugin will be restarted', { plugin: 'p' });

  const expected = [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
  for (const [i, delay] of expected.entries()) {
    await waitFor(() => restarts().length === i + 1, { what: `restart #${i + 1} to be scheduled` });
    assert.equal(restarts()[i].delay_ms, delay);
    assert.equal(restarts()[i].reason, 'plugin "p" exited (code 1)', 'the log says why it restarts');
    clock.advance(delay - 1);
    assert.equal(spawner.calls.length, i + 1, `no restart before ${delay} ms`);
    clock.advance(1);
    assert.equal(spawner.calls.length, i + 2, `restart after ${delay} ms`);
  }
  const gaps = spawner.calls.slice(1).map((at, i) => at - spawner.calls[i]);
  assert.deepEqual(gaps, expected);
  assert.equal(statusOf(m, 'p').lastError, 'plugin "p" exited (code 1)');

  // Let the next start succeed: being ready does not reset the count, staying up 30 s does.
  await waitFor(() => restarts().length === 8, { what: 'restart #8 to be scheduled' });
  rmSync(startFile);
  clock.advance(30_000);
  const up = await waitFor(() => (statusOf(m, 'p').ready ? statusOf(m, 'p') : null), { what: 'the plugin to start normally' });
  assert.equal(up.failures, 8, 'ready is not yet healthy');
  clock.advance(29_999);
  assert.equal(statusOf(m, 'p').failures, 8);
  clock.advance(1);
  assert.equal(statusOf(m, 'p').failures, 0, 'up for 30 s: the backoff starts over');
  assert.equal(statusOf(m, 'p').lastError, '');
  assert.equal(h.logs('its restart backoff starts over', { plugin: 'p' }).length, 1);

  const killedAt = clock.now();
  process.kill(up.pid!, 'SIGKILL');
  await waitFor(() => restarts().length === 9, { what: 'a restart after the crash' });
  assert.equal(restarts()[8].delay_ms, 1000, 'the backoff starts over at 1 s');
  assert.equal(restarts()[8].reason, 'plugin "p" exited (signal SIGKILL)');
  clock.advance(1000);
  assert.equal(spawner.calls.at(-1)! - killedAt, 1000);
  await waitFor(() => statusOf(m, 'p').ready && statusOf(m, 'p').pid !== up.pid, { what: 'the plugin to be back' });
});

test('a plugin that crashes right after it said ready is a crash loop too: 1s, 2s, 4s, 8s ... (a valid message does not reset the backoff)', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const spawner = countingSpawn(() => clock.now());
  const m = h.manager({ clock, spawn: spawner, process: { stopGraceMs: 200 } });
  await m.apply(config({ plugins: { p: h.fixture('p', { FIXTURE_START: 'ready-crash' }) }, routes: [route('api', ['p'])] }));
  const restarts = () => h.logs('plugin will be restarted', { plugin: 'p' });

  const expected = [1000, 2000, 4000, 8000, 16_000];
  for (const [i, delay] of expected.entries()) {
    await waitFor(() => restarts().length === i + 1, { what: `restart #${i + 1} to be scheduled` });
    assert.equal(restarts()[i].delay_ms, delay);
    clock.advance(delay);
  }
  assert.equal(h.logs('plugin ready', { plugin: 'p' }).length >= expected.length, true, 'every start said ready before it crashed');
  const gaps = spawner.calls.slice(1).map((at, i) => at - spawner.calls[i]);
  assert.deepEqual(gaps, expected);
  const s = statusOf(m, 'p');
  assert.ok(s.failures >= expected.length);
  assert.equal(s.lastError, 'plugin "p" exited (code 1)');
});

test('a sha256 pin that does not match: the plugin is refused, and the error names the plugin and both sums', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const actual = createHash('sha256').update(readFileSync(CONFIGURABLE)).digest('hex');
  const pinned = 'ab'.repeat(32);
  await m.apply(config({ plugins: { pinned: h.fixture('pinned', {}, { sha256: pinned }) }, routes: [route('api', ['pinned'])] }));

  const entry = await waitFor(() => h.logs('refusing to start', { plugin: 'pinned' })[0], { what: 'the refusal in the log' });

  assert.equal(entry.code, 'CHECKSUM_MISMATCH');
  assert.equal(entry.level, 'error');
  assert.match(entry.msg, /plugin "pinned"/);
  assert.ok(entry.msg.includes(actual), 'names the sum of the file');
  assert.ok(entry.msg.includes(pinned), 'names the pinned sum');
  const s = statusOf(m, 'pinned');
  assert.equal(s.lastError, entry.msg);
  assert.equal(s.pid, undefined);
  assert.equal(s.state, 'backoff');
  assert.deepEqual(h.records({ ev: 'start' }), [], 'the program never ran');
  const v = await m.onRequest('api', request({ r: 'api' }));
  assert.equal(v.s, 503);
  const waited = m.whenReady('pinned', 100).then(() => null, (err: Error) => err);
  clock.advance(100);
  assert.match(String((await waited)?.message), /did not become ready within 100 ms \(plugin "pinned": refusing to start/);
});

test('a sha256 pin that matches (in any letter case) lets the plugin start', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const actual = createHash('sha256').update(readFileSync(CONFIGURABLE)).digest('hex');

  await applyReady(m, { plugins: { pinned: h.fixture('pinned', {}, { sha256: actual.toUpperCase() }) }, routes: [route('api', ['pinned'])] }, ['pinned']);

  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);
  assert.equal(statusOf(m, 'pinned').lastError, '');
});

test('a plugin whose program does not exist is reported with the reason and retried', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const missing = join(h.dir, 'no-such-plugin');
  await m.apply(config({ plugins: { ghost: { path: missing } }, routes: [route('api', ['ghost'])] }));

  await waitFor(() => h.logs('will be restarted', { plugin: 'ghost' }).length === 1, { what: 'a scheduled retry' });

  const s = statusOf(m, 'ghost');
  assert.equal(s.state, 'backoff');
  assert.match(s.lastError, /plugin "ghost": cannot start .*no-such-plugin: ENOENT/);
});

test('stopping is final: stop() before start() is not an error and keeps the plugin from starting; stopping twice is fine', T, async (t) => {
  const h = new Harness(t);
  const spawn = countingSpawn(() => performance.now());
  const p = new PluginProcess('p', config({ plugins: { p: h.fixture('p') }, routes: [] }).plugins.p, { logger: recordingLogger(), spawn });

  await p.stop();
  p.start();
  await p.stop();

  assert.equal(spawn.calls.length, 0, 'never spawned');
  assert.equal(p.state, 'stopped');
});

test('stop() closes stdin and a well-behaved plugin exits by itself, before any signal', T, async (t) => {
  const h = new Harness(t);
  // Time stands still: stop() can only end by the plugin exiting on stdin EOF, never by a grace timer.
  const m = h.manager({ clock: new FakeClock(), process: { stopGraceMs: 3000 } });
  await applyReady(m, { plugins: { p: h.fixture('p') }, routes: [route('api', ['p'])] }, ['p']);
  const pid = statusOf(m, 'p').pid!;

  await m.stop();

  assert.equal(isAlive(pid), false);
  assert.equal(h.records({ ev: 'stdin-end' }).length, 1);
  assert.deepEqual(h.logs('plugin stopped', { plugin: 'p' }).map((e) => [e.code, e.signal]), [[0, null]]);
  assert.deepEqual(h.logs('sending SIG'), []);
  assert.deepEqual(m.status(), []);
  await m.stop(); // idempotent
});

test('a plugin that ignores stdin EOF and SIGTERM is SIGKILLed after the second grace period', T, async (t) => {
  const h = new Harness(t);
  // The grace periods are the subject: time is driven.
  const clock = new FakeClock();
  const m = h.manager({ clock, process: { stopGraceMs: 200 } });
  await applyReady(m, { plugins: { stubborn: h.fixture('stubborn', { FIXTURE_IGNORE_STOP: '1' }) }, routes: [route('api', ['stubborn'])] }, ['stubborn']);
  const pid = statusOf(m, 'stubborn').pid!;
  h.killAtEnd(pid);
  const term = () => h.logs('did not exit after stdin closed; sending SIGTERM', { plugin: 'stubborn' });
  const kill = () => h.logs('did not exit after SIGTERM; sending SIGKILL', { plugin: 'stubborn' });

  const stopped = m.stop();
  await waitFor(() => h.records({ ev: 'stdin-end' }).length === 1, { what: 'the plugin to see stdin close' });
  clock.advance(199);
  assert.equal(term().length, 0, 'no SIGTERM within the first grace period');
  clock.advance(1);
  assert.equal(term().length, 1);
  await waitFor(() => h.records({ ev: 'sigterm-ignored' }).length === 1, { what: 'the plugin to ignore its SIGTERM' });
  clock.advance(199);
  assert.equal(kill().length, 0, 'no SIGKILL within the second grace period');
  clock.advance(1);
  await stopped;

  assert.equal(isAlive(pid), false);
  assert.equal(term().length, 1);
  assert.equal(kill().length, 1);
  assert.equal(h.records({ ev: 'sigterm-ignored' }).length, 1);
  assert.deepEqual(h.logs('plugin stopped', { plugin: 'stubborn' }).map((e) => e.signal), ['SIGKILL']);
});

test('a SIGKILLed runner\'s plugins outlive it under the keeper until the grace ends; then none is left, even one that ignores stdin EOF and SIGTERM', { timeout: 60_000 }, async (t) => {
  const h = new Harness(t);
  const env = { FIXTURE_NAME: 'orphan', FIXTURE_DIR: h.dir, FIXTURE_RECORD: h.recordFile, FIXTURE_IGNORE_STOP: '1' };
  const runner = spawn(process.execPath, [RUNNER_CHILD], {
    // The keeper is a process of its own, on real time: a grace long enough that "still alive" is not a race.
    env: { ...process.env, RUNNER_PLUGIN_ENV: JSON.stringify(env), RUNNER_STATE_DIR: join(h.dir, 'state'), HOOKGATE_KEEPER_GRACE_MS: '3000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  h.defer(() => runner.kill('SIGKILL'));
  let stderr = '';
  runner.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const line = await Promise.race([
    new Promise<string>((resolve) => createInterface({ input: runner.stdout }).once('line', resolve)),
    new Promise<string>((_, reject) => runner.once('exit', (code) => reject(new Error(`runner exited (${code}): ${stderr}`)))),
  ]);
  const pids = JSON.parse(line) as { plugin: number; keeper: number };
  h.killAtEnd(pids.plugin);
  h.killAtEnd(pids.keeper);
  assert.ok(isAlive(pids.plugin), 'the plugin runs while the runner does');

  const dead = new Promise((resolve) => runner.once('exit', resolve));
  runner.kill('SIGKILL');
  await dead;
  assert.ok(isAlive(pids.plugin), 'the plugin outlives the runner during the keeper grace');

  await waitFor(() => !isAlive(pids.plugin), { timeoutMs: 20_000, what: `plugin pid ${pids.plugin} to be gone` });
  await waitFor(() => !isAlive(pids.keeper), { timeoutMs: 10_000, what: `the keeper (pid ${pids.keeper}) to exit` });
  assert.equal(h.records({ ev: 'sigterm-ignored' }).length, 1, 'the keeper tried SIGTERM first');
});

test('a plugin that exits while a child it started still holds its stdout is noticed, its group killed, and it is restarted', {
  ...T,
}, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const startFile = join(h.dir, 'start-mode');
  writeFileSync(startFile, 'orphan-crash');
  await m.apply(config({ plugins: { p: h.fixture('p', { FIXTURE_START_FILE: startFile }) }, routes: [route('api', ['p'])] }));
  const { orphan } = await waitFor(() => h.records({ ev: 'orphan' })[0], { what: 'the plugin to start its child' });
  h.killAtEnd(orphan as number);
  rmSync(startFile);

  // Unnoticed, the exit would wait for the child's 30 s sleep: the default 5 s bound tells the two apart.
  const exited = await waitFor(() => h.logs('plugin exited', { plugin: 'p' })[0], { what: 'the exit to be noticed' }).catch((err: Error) => err);

  assert.ok(!(exited instanceof Error), String(exited));
  await waitFor(() => !isAlive(orphan as number), { what: 'the plugin\'s process group to be killed' });
  await waitFor(() => statusOf(m, 'p').ready, { what: 'the restarted plugin to be ready' });
});
