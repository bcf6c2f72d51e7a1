/**
 * A plugin that dies while traffic flows: requests during the outage get
 * the binding's on_error verdict (503 for deny, passing through for
 * allow), never a hang or a 500, and service recovers once the runner has
 * restarted the plugin (backoff starts at 1 s).
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request, sleep, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, readyz, startGateway, whenReady } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

test('a plugin killed during traffic: 503 while it is down (on_error deny), on_error allow passes, then recovery with a new process', { timeout: 60_000 }, async (t) => {
  const s = scope(t);
  const up = await startUpstream(s);
  const gw = await startGateway(
    s,
    baseConfig({
      routes: [
        { id: 'strict', match: { path: '/strict/*' }, plugins: ['fx'], action: 'app' },
        { id: 'lenient', match: { path: '/lenient/*' }, plugins: [{ plugin: 'fx', on_error: 'allow' }], action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' } } },
    }),
  );
  await whenReady(gw);
  const first = await request(`${gw.url}/strict/x`);
  assert.equal(first.status, 200);
  // The plugin tells the upstream its pid (X-Plugin-Pid); the echo shows it.
  const pid = Number(first.json().headers['x-plugin-pid']);
  assert.ok(pid > 0 && isAlive(pid));

  // Steady traffic across the crash: every answer must be a 200 or a 503.
  const statuses: Array<{ at: number; status: number | string }> = [];
  let traffic = true;
  const loop = (async () => {
    while (traffic) {
      const res = await request(`${gw.url}/strict/loop`, { timeoutMs: 30_000 }).then(
        (r) => r.status,
        (err: NodeJS.ErrnoException) => err.code ?? err.message,
      );
      statuses.push({ at: performance.now(), status: res });
      await sleep(20);
    }
  })();
  s.defer(() => {
    traffic = false;
    return loop;
  });

  await sleep(100);
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !isAlive(pid), { what: `plugin ${pid} to die` });
  const killedAt = performance.now();

  const during = await request(`${gw.url}/strict/during`);
  assert.equal(during.status, 503);
  assert.equal(during.text, 'service unavailable\n');
  // The runner learns of the exit a moment after the process is gone; the
  // restart comes a second later, so /readyz must say 503 in between.
  await waitFor(async () => (await readyz(gw)).status === 503, { what: '/readyz to report the plugin down' });
  const lenient = await request(`${gw.url}/lenient/during`);
  assert.equal(lenient.status, 200, 'on_error allow lets the request through while the plugin is down');
  assert.equal(lenient.json().headers['x-plugin-name'], undefined, 'without the plugin verdict');
  assert.equal(up.received.filter((r) => r.url === '/strict/during').length, 0);

  const back = await waitFor(
    async () => {
      const res = await request(`${gw.url}/strict/after`);
      return res.status === 200 ? res : null;
    },
    { timeoutMs: 60_000, intervalMs: 100, what: 'the plugin to be restarted and serve again' },
  );
  const newPid = Number(back.json().headers['x-plugin-pid']);
  assert.notEqual(newPid, pid, 'a new plugin process serves');
  assert.ok(isAlive(newPid));
  await whenReady(gw);
  const recoveredAt = performance.now();
  await waitFor(() => statuses.some((x) => x.at > recoveredAt && x.status === 200), { what: 'the steady traffic to be served again' });

  traffic = false;
  await loop;
  const odd = statuses.filter((x) => x.status !== 200 && x.status !== 503);
  assert.deepEqual(odd, [], 'every answer during the crash was 200 or 503');
  assert.ok(statuses.some((x) => x.at >= killedAt && x.status === 503), 'the steady traffic saw the outage');
});
