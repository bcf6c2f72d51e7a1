/**
 * Reloading the config of a running gateway: an edited file applies
 * without a restart (new routes serve, unchanged plugins keep running,
 * changed ones restart); an invalid edit is refused and the previous
 * config keeps serving; SIGHUP reloads too.
 */

import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request, sleep, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, startGateway, whenReady, writeConfig, type Gateway } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

const fixture = (name: string) => ({ path: VERDICT_PLUGIN, env: { FIXTURE_NAME: name, FIXTURE_HOOKS: 'on_request' } });

/** The plugin (name and pid) that allowed a request, as the upstream saw it (the fixture adds X-Plugin-Name and X-Plugin-Pid). */
async function whoAnswers(gw: Gateway, path: string): Promise<{ status: number; name: string; pid: number }> {
  const res = await request(`${gw.url}${path}`);
  if (res.status !== 200) return { status: res.status, name: '', pid: 0 };
  const seen = res.json().headers;
  return { status: res.status, name: String(seen['x-plugin-name'] ?? ''), pid: Number(seen['x-plugin-pid'] ?? 0) };
}

describe('config reload', { concurrency: true, timeout: 60_000 }, () => {
  test('editing the file adds a route without a restart; an unchanged plugin keeps its process, a changed one restarts', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const config = (version: 1 | 2) =>
      baseConfig({
        routes: [
          { id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: 'app' },
          { id: 'other', match: { path: '/other/*' }, plugins: ['fy'], action: 'app' },
          version === 1
            ? { id: 'gone', match: { path: '/gone/*' }, plugins: ['fz'], action: 'app' }
            : { id: 'new', match: { path: '/new/*' }, plugins: ['fx'], action: 'app' },
        ],
        actions: { app: { type: 'proxy', upstream: up.url } },
        plugins: {
          fx: fixture('fx'),
          fy: fixture(version === 1 ? 'fy' : 'fy-v2'),
          ...(version === 1 ? { fz: fixture('fz') } : {}),
        },
      });
    const gw = await startGateway(s, config(1));
    await whenReady(gw);
    const fxBefore = await whoAnswers(gw, '/api/x');
    const fyBefore = await whoAnswers(gw, '/other/x');
    const fz = await whoAnswers(gw, '/gone/x');
    assert.equal(fxBefore.status, 200);
    assert.ok(isAlive(fz.pid));
    assert.equal((await request(`${gw.url}/new/x`)).status, 404);

    const mark = gw.logs.length;
    writeConfig(gw.dir, config(2));
    await gw.waitForLog('config reloaded', { from: mark });

    const fresh = await whoAnswers(gw, '/new/x');
    assert.equal(fresh.status, 200, 'the new route serves');
    assert.equal(fresh.pid, fxBefore.pid, 'the unchanged plugin kept its process');
    assert.equal((await whoAnswers(gw, '/api/x')).pid, fxBefore.pid);
    const fyAfter = await waitFor(
      async () => {
        const w = await whoAnswers(gw, '/other/x');
        return w.name === 'fy-v2' ? w : null;
      },
      { timeoutMs: 10_000, what: 'the changed plugin to answer after its restart' },
    );
    assert.notEqual(fyAfter.pid, fyBefore.pid, 'the changed plugin runs in a new process');
    assert.ok(!isAlive(fyBefore.pid), "the changed plugin's old process is gone");
    assert.ok(!isAlive(fz.pid), 'the removed plugin was stopped');
    assert.equal((await request(`${gw.url}/gone/x`)).status, 404, 'the removed route is gone');
    assert.equal(gw.logs.filter((l) => l.msg === 'gateway listening').length, 1, 'the gateway did not restart');
  });

  test('an invalid edit is refused with a log line and the previous config keeps serving', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const good = baseConfig({ routes: [{ id: 'api', match: { path: '/api/*' }, action: { type: 'proxy', upstream: up.url } }] });
    const gw = await startGateway(s, good);
    assert.equal((await request(`${gw.url}/api/x`)).status, 200);

    let mark = gw.logs.length;
    writeConfig(gw.dir, '{ routes: [ { action: "app" ');
    const refused = await gw.waitForLog('config reload refused', { from: mark });
    assert.ok(Array.isArray(refused.problems) && String(refused.problems[0]).includes('not valid JSON5'), JSON.stringify(refused));
    assert.equal((await request(`${gw.url}/api/x`)).status, 200, 'the previous config still serves');

    mark = gw.logs.length;
    writeConfig(gw.dir, baseConfig({ routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['ghost'], action: { type: 'proxy', upstream: up.url } }] }));
    const refused2 = await gw.waitForLog('config reload refused', { from: mark });
    assert.ok((refused2.problems as string[]).some((p) => p.startsWith('routes[0].plugins[0]') && p.includes('ghost')), JSON.stringify(refused2));
    const res = await request(`${gw.url}/api/x`);
    assert.equal(res.status, 200, 'the previous config still serves');
    assert.ok(!gw.logs.slice(mark).some((l) => l.msg === 'config reloaded'));
  });

  test('SIGHUP reloads the config', async (t) => {
    const s = scope(t);
    // The served path is a symlink into another folder: editing the target
    // there is invisible to the watcher of the served folder, so only the
    // signal can make the gateway read the new content.
    const root = tempDir(s);
    mkdirSync(join(root, 'served'));
    mkdirSync(join(root, 'real'));
    const real = join(root, 'real', 'hookgate.json5');
    const route = (id: string) => ({ id, match: { path: `/${id}` }, action: { type: 'static', body: `${id}\n` } });
    writeFileSync(real, JSON.stringify(baseConfig({ routes: [route('old')] })));
    const served = join(root, 'served', 'hookgate.json5');
    symlinkSync(real, served);
    const gw = await startGateway(s, served);
    assert.equal((await request(`${gw.url}/old`)).text, 'old\n');

    const mark = gw.logs.length;
    writeFileSync(real, JSON.stringify(baseConfig({ routes: [route('old'), route('added')] })));
    await sleep(400);
    assert.equal((await request(`${gw.url}/added`)).status, 404, 'nothing reloaded before the signal');

    process.kill(gw.pid, 'SIGHUP');
    await gw.waitForLog('config reloaded', { from: mark });
    assert.equal((await request(`${gw.url}/added`)).text, 'added\n');
    assert.equal((await request(`${gw.url}/old`)).text, 'old\n');
  });
});
