/**
 * The admin endpoints: /healthz answers while the process runs; /readyz
 * answers 200 only when the config is loaded and every plugin with hooks
 * is ready, and says which plugin is not.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, readyz, startGateway } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

describe('admin endpoints', { concurrency: true, timeout: 60_000 }, () => {
  test('/healthz answers 200 ok; /readyz answers 200 with the plugin states once every plugin is ready', async (t) => {
    const s = scope(t);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'api', plugins: ['fx'], action: { type: 'static', body: 'ok' } }],
        plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request,on_response' } } },
      }),
    );
    const health = await request(`${gw.admin}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.text, 'ok\n');

    const ready = await waitFor(async () => {
      const r = await readyz(gw);
      return r.status === 200 ? r : null;
    }, { timeoutMs: 15_000, what: '/readyz 200' });
    assert.equal(ready.body.ready, true);
    assert.equal(ready.body.config, true);
    assert.equal(ready.body.plugins.length, 1);
    assert.deepEqual({ ...ready.body.plugins[0] }, { name: 'fx', ready: true, state: 'ready', hooks: ['on_request', 'on_response'] });
    assert.equal((await request(`${gw.admin}/nope`)).status, 404);
  });

  test('/readyz answers 503 while a plugin with hooks is not ready yet, and its routes fail closed; /healthz still 200', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'api', plugins: ['slow-start'], action: { type: 'proxy', upstream: up.url } }],
        plugins: { 'slow-start': { path: VERDICT_PLUGIN, env: { FIXTURE_READY_DELAY_MS: '2000' } } },
      }),
    );
    const early = await readyz(gw);
    assert.equal(early.status, 503);
    assert.equal(early.body.ready, false);
    assert.equal(early.body.config, true);
    assert.equal(early.body.plugins[0].name, 'slow-start');
    assert.equal(early.body.plugins[0].ready, false);
    assert.equal((await request(`${gw.admin}/healthz`)).status, 200);
    const res = await request(`${gw.url}/x`);
    assert.equal(res.status, 503, 'a route whose plugin is not ready is denied');
    assert.equal(up.received.length, 0);

    await waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs: 15_000, what: '/readyz 200 once the plugin is ready' });
    assert.equal((await request(`${gw.url}/x`)).status, 200);
  });

  test('/readyz answers 503 and names the error of a plugin that cannot start, its failures so far and the delay of its next restart', async (t) => {
    const s = scope(t);
    // An executable whose interpreter does not exist: it passes the config's
    // checks (a missing file would not) and fails when the runner starts it.
    const program = join(tempDir(s), 'broken-plugin');
    writeFileSync(program, '#!/no/such/interpreter\n', { mode: 0o755 });
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'api', plugins: ['broken'], action: { type: 'static', body: 'ok' } }],
        plugins: { broken: { path: program } },
      }),
    );
    const r = await waitFor(async () => {
      const x = await readyz(gw);
      return x.body.plugins[0]?.error && x.body.plugins[0].state === 'backoff' ? x : null;
    }, { what: 'the start error to be reported' });
    assert.equal(r.status, 503);
    assert.equal(r.body.plugins[0].ready, false);
    const failures = Number(r.body.plugins[0].failures);
    assert.ok(failures >= 1, `failures: ${failures}`);
    assert.equal(r.body.plugins[0].restart_delay_ms, Math.min(30_000, 1000 * 2 ** (failures - 1)));
    assert.match(String(r.body.plugins[0].error), new RegExp(`cannot start ${program.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    assert.equal((await request(`${gw.admin}/healthz`)).status, 200);
  });
});
