/**
 * What a config source may make a runner do (README "Security model"): it
 * names plugins only from the allow-list the runner's own bootstrap file
 * sets (`runner.plugins_allowed`), keys only as references (`secret_env`),
 * timestamps only in RFC 3339 with an offset; a refused config starts
 * nothing and the previous one keeps serving. The last good config saved
 * in the state dir is checked the same way when it is loaded, so a
 * poisoned or stale one does not run.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { freePort, request, waitFor } from '../helpers/http.ts';
import { CONFIGURABLE } from '../helpers/paths.ts';
import { readJsonLines, readyz } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { put, startSource, startStreamRunner, staticRoute, type StreamRunner } from './harness.ts';

/** A plugin that is no plugin: it only proves it ran, by writing `marker`. */
const shell = (marker: string, version: number) => ({ command: ['sh', '-c', `echo ran > '${marker}'; exec sleep 30`], autostart: true, version });

/** The problems of the next "config from the stream refused" line after `mark`. */
async function refusal(r: StreamRunner, mark: number): Promise<string[]> {
  return (await r.waitForLog('config from the stream refused', { from: mark })).problems as string[];
}

const started = (r: StreamRunner) => r.logs.filter((l) => l.msg === 'plugin started');

describe('config stream: what the source may make the runner do', { concurrency: true, timeout: 60_000 }, () => {
  test('a plugin whose program is not on the allow-list refuses the whole config: nothing starts and the previous config keeps serving', async (t) => {
    const s = scope(t);
    const marker = join(tempDir(s), 'pwned');
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } })));
    const r = await startStreamRunner(s, src.url, { bootstrap: { runner: { plugins_allowed: [CONFIGURABLE] } } });
    await r.waitForLog('config applied from the stream');

    const mark = r.logs.length;
    src.conns[0].send(
      'put',
      put({
        routes: { a: staticRoute('/a', 'A', 1), b: { match: { path: '/b' }, plugins: ['evil'], action: { type: 'static', body: 'B' }, version: 3, order: 1 } },
        plugins: { evil: shell(marker, 2) },
      }),
    );
    const problems = await refusal(r, mark);
    assert.ok(
      problems.some((p) => /^plugins\/evil: the program \/\S*\/sh is not in runner\.plugins_allowed/.test(p)),
      `the refusal names the plugin and its program: ${JSON.stringify(problems)}`,
    );
    assert.equal(started(r).length, 0, 'no plugin started');
    assert.equal(existsSync(marker), false, 'the command never ran');
    assert.equal((await request(`${r.gateway}/a`)).text, 'A', 'the previous config keeps serving');
    assert.equal((await request(`${r.gateway}/b`)).status, 404, 'nothing of the refused config applies');
  });

  test('a program the allow-list names (here by a glob) starts; with --plugins-from-stream=any any program does', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const record = join(dir, 'record.jsonl');
    const marker = join(dir, 'ran');
    const allowed = await startSource(s, (c) =>
      c.send('put', put({ plugins: { p: { path: CONFIGURABLE, env: { FIXTURE_RECORD: record, FIXTURE_HOOKS: '' }, autostart: true, version: 1 } } })),
    );
    await startStreamRunner(s, allowed.url, { bootstrap: { runner: { plugins_allowed: [`${dirname(CONFIGURABLE)}/*.ts`] } } });
    await waitFor(() => readJsonLines(record).some((l) => l.ev === 'start'), { timeoutMs: 15_000, what: 'the allowed plugin to start' });

    const anything = await startSource(s, (c) => c.send('put', put({ plugins: { evil: shell(marker, 1) } })));
    const r = await startStreamRunner(s, anything.url, { args: ['--plugins-from-stream=any'] });
    await r.waitForLog('--plugins-from-stream=any');
    await waitFor(() => existsSync(marker), { timeoutMs: 15_000, what: 'the command to run in "any" mode' });
  });

  test('an allowed program cannot be turned into another one: inherit_env and loader variables such as NODE_OPTIONS are refused', async (t) => {
    const s = scope(t);
    const marker = join(tempDir(s), 'pwned');
    const src = await startSource(s, (c) =>
      c.send(
        'put',
        put({
          plugins: {
            p: { path: CONFIGURABLE, env: { NODE_OPTIONS: `--import=data:text/javascript,require('fs').writeFileSync('${marker}','x')`, LD_PRELOAD: '/tmp/x.so' }, autostart: true, version: 1 },
            q: { path: CONFIGURABLE, inherit_env: true, autostart: true, version: 2 },
          },
        }),
      ),
    );
    const r = await startStreamRunner(s, src.url, { bootstrap: { runner: { plugins_allowed: [CONFIGURABLE] } } });
    const problems = await refusal(r, 0);
    for (const re of [/^plugins\/p\.env\.NODE_OPTIONS: /, /^plugins\/p\.env\.LD_PRELOAD: /, /^plugins\/q\.inherit_env: /]) {
      assert.ok(problems.some((p) => re.test(p)), `${re} in ${JSON.stringify(problems)}`);
    }
    assert.equal(started(r).length, 0);
    assert.equal(existsSync(marker), false);
  });

  test('a key with a literal secret is refused (keys come as secret_env references); an expires_at without a full offset is refused', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c) => c.send('put', put({ keys: { leaked: { secret: 'literal-secret-0123456789', version: 1 } } })));
    const r = await startStreamRunner(s, src.url);
    const problems = await refusal(r, 0);
    assert.ok(problems.some((p) => /^keys\/leaked\.secret: a key from a config stream must be a reference/.test(p)), JSON.stringify(problems));

    let mark = r.logs.length;
    src.conns[0].send('put', put({ keys: { never: { secret_env: 'SOME_KEY', expires_at: '2020-01-01T00:00:00+05', version: 2 } } }));
    const bad = await refusal(r, mark);
    assert.ok(bad.some((p) => /^keys\/never\.expires_at: expected an ISO 8601 timestamp with a "Z" or "±hh:mm" offset/.test(p)), JSON.stringify(bad));

    mark = r.logs.length;
    src.conns[0].send('put', put({ keys: { ok: { secret_env: 'SOME_KEY', expires_at: '2020-01-01T00:00:00+05:00', version: 3 } } }));
    await r.waitForLog('config applied from the stream', { from: mark });
  });

  test('a poisoned last good config (a plugin the allow-list does not name) is refused at start with a log line, and does not run', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const marker = join(dir, 'pwned');
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    const { version: _, ...evil } = shell(marker, 1);
    const kinds = (plugins: Record<string, unknown>, routes: Record<string, unknown>) => ({ routes, actions: {}, plugins, keys: {} });
    writeFileSync(
      join(stateDir, 'last-good.json'),
      JSON.stringify({
        format: 1,
        saved_at: new Date().toISOString(),
        input: {},
        items: kinds({ evil: { version: 2, data: evil } }, { a: { version: 1, order: 0, data: { match: { path: '/a' }, action: { type: 'static', body: 'A' } } } }),
        tombstones: kinds({}, {}),
      }),
      { mode: 0o600 },
    );
    const r = await startStreamRunner(s, `http://127.0.0.1:${await freePort()}/v1/stream`, { stateDir, bootstrap: { runner: { plugins_allowed: [CONFIGURABLE] } } });
    const refused = await r.waitForLog('the last good config is refused');
    assert.ok(
      (refused.problems as string[]).some((p) => /^plugins\.evil: the program \/\S*\/sh is not in runner\.plugins_allowed/.test(p)),
      JSON.stringify(refused.problems),
    );
    await r.waitForLog('config stream interrupted');
    assert.equal((await readyz(r)).body.config, false, 'the runner serves no config rather than the poisoned one');
    assert.equal(started(r).length, 0);
    assert.equal(existsSync(marker), false);
  });
});
