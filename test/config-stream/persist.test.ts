/**
 * The last good config survives a restart: it is persisted atomically in
 * the state directory with the items' versions and tombstones, a runner
 * restarted while the source is down serves it (and says ready), and its
 * version rules still hold when the source comes back. Without one the
 * runner is not ready until the stream delivers.
 */

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { freePort, request, waitFor } from '../helpers/http.ts';
import { readyz } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { put, startSource, startStreamRunner, staticRoute } from './harness.ts';

describe('config stream: the last good config', { concurrency: true, timeout: 120_000 }, () => {
  test('a runner restarted while the source is down serves the persisted config, and its version rules hold when the source is back', async (t) => {
    const s = scope(t);
    const stateDir = join(tempDir(s), 'state');
    const src = await startSource(s, (c) => {
      c.send('put', put({ routes: { a: staticRoute('/a', 'A', 5), gone: staticRoute('/gone', 'G', 6, 1) } }));
      c.send('delete', { path: 'routes/gone', version: 8 });
    });
    const first = await startStreamRunner(s, src.url, { stateDir });
    await waitFor(async () => (await request(`${first.gateway}/gone`)).status === 404, { what: 'the delete to apply' });
    // Stopping waits for the change in progress, persisting included.
    assert.equal((await first.stop()).code, 0);

    const saved = JSON.parse(readFileSync(join(stateDir, 'last-good.json'), 'utf8'));
    assert.equal(saved.format, 1);
    assert.deepEqual(saved.items.routes.a, { version: 5, order: 0, data: { match: { path: '/a' }, action: { type: 'static', body: 'A' } } });
    assert.deepEqual(saved.tombstones.routes, { gone: 8 });
    assert.deepEqual(saved.input.routes, [{ match: { path: '/a' }, action: { type: 'static', body: 'A' }, id: 'a' }]);
    assert.deepEqual(readdirSync(stateDir).filter((f) => f !== 'keeper.log'), ['last-good.json'], 'no temp file left behind (beside the keeper\'s log)');
    const port = src.port;
    await src.close();

    const second = await startStreamRunner(s, src.url, { stateDir });
    await second.waitForLog('serving the last good config');
    assert.equal((await readyz(second)).status, 200, 'ready from the persisted config');
    assert.equal((await request(`${second.gateway}/a`)).text, 'A');
    await second.waitForLog('config stream interrupted');
    const before = second.logs.length;

    // The source is back on the same port with an older patch for the deleted route.
    const back = await startSource(
      s,
      (c) => {
        c.send('patch', { path: 'routes/gone', data: staticRoute('/gone', 'zombie', 7) });
        c.send('patch', { path: 'routes/b', data: staticRoute('/b', 'B', 9) });
      },
      port,
    );
    // Reconnecting waits out the backoff the outage built up (up to 30 s): wait for the connection, not a budget.
    await second.waitForLog('config stream connected', { from: before, timeoutMs: 60_000 });
    await waitFor(async () => (await request(`${second.gateway}/b`)).text === 'B', { what: 'the runner to catch up' });
    assert.ok(back.requests.length >= 1);
    assert.equal((await request(`${second.gateway}/gone`)).status, 404, 'the tombstone survived the restart');
    assert.ok(second.logs.some((l) => l.msg.includes('stale event ignored') && l.path === 'routes/gone'));
  });

  test('with no persisted config and the source down, /readyz says not ready and the gateway answers 503', async (t) => {
    const s = scope(t);
    const url = `http://127.0.0.1:${await freePort()}/v1/stream`;
    const r = await startStreamRunner(s, url);
    await r.waitForLog('config stream interrupted');
    const ready = await readyz(r);
    assert.equal(ready.status, 503);
    assert.equal(ready.body.config, false);
    assert.equal((await request(`${r.gateway}/anything`)).status, 503);
    assert.ok(!existsSync(join(r.stateDir, 'last-good.json')));
  });

  test('a persisted config wins over the bootstrap file’s items', async (t) => {
    const s = scope(t);
    const stateDir = join(tempDir(s), 'state');
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'from the stream', 1) } })));
    const bootstrap = { routes: [{ id: 'a', match: { path: '/a' }, action: { type: 'static', body: 'from the bootstrap' } }] };
    const first = await startStreamRunner(s, src.url, { stateDir, bootstrap });
    await waitFor(async () => (await request(`${first.gateway}/a`)).text === 'from the stream', { what: 'the put to apply' });
    await first.stop();
    await src.close();
    const second = await startStreamRunner(s, src.url, { stateDir, bootstrap });
    await second.waitForLog('serving the last good config');
    assert.equal((await request(`${second.gateway}/a`)).text, 'from the stream');
  });
});
