/**
 * Plugin host, least privilege: a plugin starts with a minimal environment
 * (PATH with the runner's Node first, HOME, LANG, LC_*, TZ, TMPDIR, the
 * handshake variables and its own `env`), not the runner's, which holds
 * the runner's keys and the config stream's credential. `inherit_env:
 * true` gives it the whole environment. Both spawn paths are checked: a
 * plugin started directly (`plugin-call`) and one the keeper starts
 * (`serve` with a state dir). The plugin reports what it sees.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { CLI, CONFIGURABLE, ROOT } from '../helpers/paths.ts';
import { readJsonLines, runnerConfig, startRunner } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { MAGIC_COOKIE_KEY } from '../../src/core/protocol/protocol.ts';

const T = { timeout: 30_000 };
/** What a runner holds in its environment and must not hand to plugins. */
const RUNNER_SECRETS = { HOOKGATE_EDGE_KEY: 'edge-secret-0123456789abcdef', HOOKGATE_CONFIG_KEY: 'config-secret-0123456789abcdef', AWS_SECRET_ACCESS_KEY: 'aws' };
const KEPT = { HOME: '/home/hookgate-test', LANG: 'C.UTF-8', LC_ALL: 'C', TZ: 'UTC' };

type Env = Record<string, string>;
const startEnvs = (record: string) => readJsonLines<{ ev: string; name: string; env?: Env }>(record).filter((l) => l.ev === 'start');

function assertMinimal(env: Env, own: Env): void {
  for (const k of Object.keys(RUNNER_SECRETS)) assert.equal(env[k], undefined, `${k} reached the plugin`);
  for (const [k, v] of Object.entries({ ...KEPT, ...own })) assert.equal(env[k], v, k);
  assert.ok(env.TMPDIR, 'TMPDIR is kept');
  assert.equal(env.PATH.split(':')[0], dirname(process.execPath), "the runner's Node comes first on PATH");
  assert.ok(env[MAGIC_COOKIE_KEY], 'the handshake variables are set');
  const extra = Object.keys(env).filter((k) => !['PATH', 'TMPDIR', ...Object.keys(KEPT), ...Object.keys(own)].includes(k) && !k.startsWith('HOOKGATE_PLUGIN_') && !k.startsWith('LC_'));
  assert.deepEqual(extra, [], 'nothing else from the runner');
}

test("a plugin started directly (plugin-call) sees a minimal environment, not the runner's secrets", T, async (t) => {
  const s = scope(t);
  const record = join(tempDir(s), 'record.jsonl');
  const child = spawn(
    process.execPath,
    [CLI, 'plugin-call', CONFIGURABLE, '--env', `FIXTURE_RECORD=${record}`, '--env', 'FIXTURE_RECORD_ENV=1', '--data', '{"m":"GET","p":"/"}'],
    { cwd: ROOT, env: { ...process.env, ...RUNNER_SECRETS, ...KEPT, TMPDIR: tempDir(s) }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 0, stderr);
  const [start] = startEnvs(record);
  assertMinimal(start.env!, { FIXTURE_RECORD: record, FIXTURE_RECORD_ENV: '1' });
});

test('a plugin the keeper starts sees a minimal environment too; inherit_env: true gives one the whole environment', T, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  const record = join(dir, 'record.jsonl');
  const own = { FIXTURE_RECORD: record, FIXTURE_RECORD_ENV: '1', FIXTURE_HOOKS: '' };
  await startRunner(
    s,
    runnerConfig(
      {
        plugins: {
          minimal: { path: CONFIGURABLE, env: { ...own, FIXTURE_NAME: 'minimal' }, autostart: true },
          everything: { path: CONFIGURABLE, env: { ...own, FIXTURE_NAME: 'everything' }, inherit_env: true, autostart: true },
        },
      },
      { keys: [{ id: 'edge', secret_env: 'HOOKGATE_EDGE_KEY' }] },
    ),
    { dir, env: { ...RUNNER_SECRETS, ...KEPT }, ready: false },
  );
  await waitFor(() => startEnvs(record).length === 2, { timeoutMs: 15_000, what: 'both plugins to start' });
  const byName = Object.fromEntries(startEnvs(record).map((l) => [l.name, l.env!]));
  assertMinimal(byName.minimal, { ...own, FIXTURE_NAME: 'minimal' });
  assert.equal(byName.everything.HOOKGATE_EDGE_KEY, RUNNER_SECRETS.HOOKGATE_EDGE_KEY, 'inherit_env passes the runner environment on');
  assert.equal(byName.everything.HOOKGATE_KEEPER_GRACE_MS, '5000');
});
