/**
 * Plugins survive a runner restart (issue 6, docs/keeper.md): real
 * `hookgate serve` processes, a real keeper, real plugins. Every test kills
 * whatever keeper and plugins it left behind, even when it fails.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { encodeHookFrame } from '../../src/core/protocol/codec.ts';
import { postFrames } from '../helpers/hook-api.ts';
import { request, sleep, waitFor } from '../helpers/http.ts';
import { CONFIGURABLE, PUSH_TARGETS_SH, SDK_PLUGIN } from '../helpers/paths.ts';
import { isAlive, KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { keepersOf, killKeepersAtEnd } from '../helpers/keepers.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

const T = { timeout: 60_000 };

/** The pid of each plugin, from the runner's "plugin started" / "plugin adopted" log lines (the last one wins). */
async function pids(r: RunnerProcess): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const l of r.logs) if ((l.msg === 'plugin started' || l.msg === 'plugin adopted') && typeof l.plugin === 'string') out[l.plugin] = Number(l.pid);
  return out;
}

async function setup(t: import('node:test').TestContext) {
  const s = scope(t);
  const dir = tempDir(s);
  const stateDir = join(dir, '.hookgate-state');
  killKeepersAtEnd(s, stateDir);
  const records = join(dir, 'records.jsonl');
  const up = await startUpstream(s, { name: 'pushed' });
  const config = (authEnv: Record<string, string> = {}) =>
    runnerConfig({
      routes: [
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'api\n' } },
        { id: 'lb', match: { path: '/lb/*' }, balancer: { type: 'roundrobin' }, action: { type: 'proxy', upstream: 'http://{target}' } },
      ],
      plugins: {
        auth: { path: CONFIGURABLE, env: { FIXTURE_NAME: 'auth', FIXTURE_RECORD: records, FIXTURE_DIR: dir, ...authEnv } },
        other: { path: CONFIGURABLE, autostart: true, env: { FIXTURE_NAME: 'other', FIXTURE_RECORD: records, FIXTURE_HOOKS: '' } },
        pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: 'lb', PUSH_TARGETS: up.target } },
      },
    });
  const env = { HOOKGATE_KEEPER_GRACE_MS: '30000' };
  return { s, dir, stateDir, config, env, up };
}

test('a SIGKILLed runner started again adopts its plugins: same pids, hooks answer, targets served before any push', T, async (t) => {
  const { s, dir, stateDir, config, env } = await setup(t);
  const first = await startRunner(s, config(), { dir, env });
  await first.waitForLog('set_targets applied');
  // The pusher logs its push right after it: wait for that line too, or the keeper holds it
  // for the next runner (as it should), which would look like a push made for the second one.
  await first.waitForLog((l) => l.from === 'plugin' && /pushed/.test(String(l.msg)));
  const before = await pids(first);
  const keeper = keepersOf(stateDir);
  assert.equal(keeper.length, 1, 'one keeper');

  // traffic while the runner dies
  let stop = false;
  const traffic = (async () => {
    while (!stop) {
      await postFrames(first.url, KEY, encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/x' })).catch(() => {});
      await sleep(5);
    }
  })();
  await sleep(100);
  await first.kill();
  stop = true;
  await traffic;
  for (const [name, pid] of Object.entries(before)) assert.ok(isAlive(pid), `${name} (pid ${pid}) survived the runner`);

  const second = await startRunner(s, config(), { dir, env });
  assert.deepEqual(await pids(second), before, 'the same plugin processes');
  assert.deepEqual(keepersOf(stateDir), keeper, 'the same keeper');
  const lb = await request(`${second.gateway}/lb/x`);
  assert.equal(lb.status, 200, `served at once: ${lb.text}`);
  const reply = await postFrames(second.url, KEY, encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/x' }));
  assert.equal(reply.status, 200);
  assert.equal(second.logs.filter((l) => l.from === 'plugin' && /pushed/.test(l.msg)).length, 0, 'the pusher was not configured again, so it pushed nothing new');
  assert.equal(second.logs.filter((l) => l.msg === 'plugin adopted').length, 3);
  await second.stop();
  await waitFor(() => Object.values(before).every((p) => !isAlive(p)) && keepersOf(stateDir).length === 0, { timeoutMs: 10_000, what: 'plugins and keeper gone after a deliberate stop' });
});

test('a plugin whose definition changed across the restart is replaced; the others are adopted', T, async (t) => {
  const { s, dir, config, env } = await setup(t);
  const first = await startRunner(s, config(), { dir, env });
  const before = await pids(first);
  await first.kill();

  const second = await startRunner(s, config({ FIXTURE_HEADER: 'X-Version=2' }), { dir, env });
  const after = await pids(second);
  assert.notEqual(after.auth, before.auth, 'auth was replaced');
  assert.equal(after.other, before.other);
  assert.equal(after.pusher, before.pusher);
  await waitFor(() => !isAlive(before.auth), { timeoutMs: 10_000, what: 'the old auth to be stopped' });
});

test('a plugin whose code changed on disk while the runner was down is replaced, not adopted with its old code', T, async (t) => {
  const { s, dir, env } = await setup(t);
  const wrapper = join(dir, 'auth.mjs');
  const write = (version: string) => writeFileSync(wrapper, `// version ${version}\nawait import(${JSON.stringify(CONFIGURABLE)});\n`);
  write('1');
  const config = runnerConfig({
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth', 'other'], action: { type: 'static', body: 'api\n' } }],
    plugins: {
      auth: { command: [process.execPath, wrapper], env: { FIXTURE_NAME: 'auth' } },
      other: { path: CONFIGURABLE, env: { FIXTURE_NAME: 'other' } },
    },
  });
  const first = await startRunner(s, config, { dir, env });
  const before = await pids(first);
  await first.kill();
  write('2');

  const second = await startRunner(s, config, { dir, env });
  const after = await pids(second);
  assert.notEqual(after.auth, before.auth, 'auth (code changed) was replaced');
  assert.equal(after.other, before.other, 'other (unchanged) was adopted');
  assert.ok(second.logs.some((l) => l.msg === 'plugin definition or code changed while the runner was down; replacing the kept process' && l.plugin === 'auth'));
  await waitFor(() => !isAlive(before.auth), { timeoutMs: 10_000, what: 'the old auth to be stopped' });
});

test('a stale snapshot whose pid belongs to an unrelated process, with no keeper: the runner starts fresh and never signals it', T, async (t) => {
  const { s, dir, stateDir, config, env } = await setup(t);
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  s.defer(() => sleeper.kill('SIGKILL'));
  const pid = sleeper.pid!;
  const { mkdirSync } = await import('node:fs');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(
    join(stateDir, 'plugins.json'),
    JSON.stringify({ format: 1, keeper_pid: pid, plugins: { auth: { pid, start_time: 1, spec_hash: 'x', socket: null, hooks: [], configure: [] } }, targets: {}, speed: {} }),
  );
  const runner = await startRunner(s, config(), { dir, env });
  const now = await pids(runner);
  assert.notEqual(now.auth, pid);
  assert.ok(isAlive(pid));
  await runner.stop();
  assert.ok(isAlive(pid), 'the unrelated process is alive after the runner stopped');
});

test('a runner killed for good: after the keeper grace no plugin and no keeper remain, and the keeper\'s log in the state dir says so', T, async (t) => {
  const { s, dir, stateDir, config } = await setup(t);
  const runner = await startRunner(s, config(), { dir, env: { HOOKGATE_KEEPER_GRACE_MS: '1000' } });
  const before = await pids(runner);
  await runner.kill();
  await sleep(300);
  assert.ok(Object.values(before).every(isAlive), 'plugins outlive the runner during the grace');
  await waitFor(() => Object.values(before).every((p) => !isAlive(p)) && keepersOf(stateDir).length === 0, { timeoutMs: 10_000, what: 'plugins and keeper gone after the grace' });

  const log = readFileSync(join(stateDir, 'keeper.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const msgs = log.map((l) => l.msg);
  for (const m of ['keeper listening', 'a runner connected', 'plugin started', 'the runner disconnected; plugins keep running for the grace', 'stopping every plugin and exiting', 'plugin exited']) {
    assert.ok(msgs.includes(m), `the keeper log has "${m}": ${JSON.stringify(msgs)}`);
  }
  assert.equal(log.find((l) => l.msg === 'stopping every plugin and exiting')?.why, 'no runner connected for 1000 ms');
  assert.equal(log.filter((l) => l.msg === 'plugin exited').length, Object.keys(before).length);
  assert.equal(statSync(join(stateDir, 'keeper.log')).mode & 0o777, 0o600);
});

test('an unreadable snapshot is logged and ignored; plugins start fresh', T, async (t) => {
  const { s, dir, stateDir, config, env } = await setup(t);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(stateDir, 'plugins.json'), '{not json');
  const runner = await startRunner(s, config(), { dir, env });
  assert.ok(runner.logs.some((l) => /cannot read the plugin snapshot/.test(l.msg)));
  assert.equal(runner.logs.filter((l) => l.msg === 'plugin started').length, 3);
});

test('a prox push-only plugin bound to a route, adopted by a restarted runner, is push-only at once: its route is served, not failed closed', T, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  const stateDir = join(dir, '.hookgate-state');
  killKeepersAtEnd(s, stateDir);
  const up = await startUpstream(s, { name: 'pushed' });
  const push = JSON.stringify([{ method: 'set_targets', params: { route_id: 'lb', targets: [up.target] } }]);
  const config = runnerConfig({
    routes: [{ id: 'lb', match: { path: '/lb/*' }, plugins: ['prox'], balancer: { type: 'roundrobin' }, action: { type: 'proxy', upstream: 'http://{target}' } }],
    plugins: { prox: { path: CONFIGURABLE, env: { FIXTURE_NAME: 'prox', FIXTURE_START: 'ack-only', FIXTURE_PUSH: push } } },
  });
  const env = { HOOKGATE_KEEPER_GRACE_MS: '30000' };
  const first = await startRunner(s, config, { dir, env });
  await first.waitForLog('treating it as push-only');
  assert.equal((await request(`${first.gateway}/lb/x`)).status, 200);
  const before = await pids(first);
  await first.kill();

  const second = await startRunner(s, config, { dir, env });
  assert.deepEqual(await pids(second), before, 'the same plugin process');
  const lb = await request(`${second.gateway}/lb/x`);
  assert.equal(lb.status, 200, `served at once: ${lb.text}`);
  assert.equal(second.logs.filter((l) => /sent no ready/.test(l.msg)).length, 0);
});

test('an SDK plugin SIGKILLed after its runner died leaves no socket folder: the keeper removes the one the runner made', T, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  killKeepersAtEnd(s, join(dir, '.hookgate-state'));
  const config = runnerConfig({
    routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['sdk'], action: { type: 'static', body: 'api\n' } }],
    plugins: { sdk: { path: SDK_PLUGIN, env: { TMPDIR: dir } } },
  });
  const runner = await startRunner(s, config, { dir, env: { HOOKGATE_KEEPER_GRACE_MS: '30000' } });
  const ready = await runner.waitForLog((l) => l.msg === 'plugin ready' && l.plugin === 'sdk');
  const folder = dirname(String(ready.socket));
  assert.match(basename(folder), /^hookgate-plugin-/);
  assert.ok(existsSync(folder));
  const { sdk } = await pids(runner);
  await runner.kill();

  process.kill(sdk, 'SIGKILL');
  await waitFor(() => !isAlive(sdk) && !existsSync(folder), { what: 'the plugin gone and its folder removed' });
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('hookgate-plugin-')), []);
});
