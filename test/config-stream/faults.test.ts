/**
 * A runner following a config stream rides out its faults: `reconnect`
 * restarts the stream, malformed data restarts it without applying
 * anything, a silent stream is caught by the read timeout, and a refused
 * credential is logged once while the runner keeps serving what it has.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request, sleep, waitFor } from '../helpers/http.ts';
import { readyz } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { put, startSource, startStreamRunner, staticRoute } from './harness.ts';

describe('config stream: faults', { concurrency: true, timeout: 60_000 }, () => {
  test('a reconnect event makes the runner connect again, and it keeps serving', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c, i) => {
      c.send('put', put({ routes: { a: staticRoute('/a', `A${i}`, 1 + i) } }));
      if (i === 0) setTimeout(() => c.send('reconnect', {}), 100);
    });
    const r = await startStreamRunner(s, src.url);
    await waitFor(() => src.requests.length === 2, { what: 'a second request to the source' });
    await waitFor(async () => (await request(`${r.gateway}/a`)).text === 'A1', { what: "the second stream's put to apply" });
    assert.ok(r.logs.some((l) => l.msg.includes('asked to reconnect')));
  });

  test('malformed event data restarts the stream without applying it or what followed it', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c, i) => {
      c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } }));
      if (i === 0) {
        setTimeout(() => {
          c.raw('event: patch\ndata: {"path": "routes/b", "data": {\n\n');
          c.send('patch', { path: 'routes/c', data: staticRoute('/c', 'C', 3) });
        }, 200);
      }
      if (i === 1) setTimeout(() => c.send('patch', { path: 'nonsense', data: staticRoute('/d', 'D', 4) }), 200);
    });
    const r = await startStreamRunner(s, src.url);
    const first = await r.waitForLog('malformed event');
    assert.equal(first.event, 'patch');
    await waitFor(() => src.requests.length >= 2, { what: 'the stream to restart after malformed JSON' });
    const second = await r.waitForLog('malformed event', { pred: (l) => String(l.err).includes('path "nonsense"') });
    assert.ok(second);
    await waitFor(() => src.requests.length >= 3, { what: 'the stream to restart after an event the item model refuses' });
    assert.equal((await request(`${r.gateway}/a`)).text, 'A');
    assert.equal((await request(`${r.gateway}/c`)).status, 404, 'the patch after the malformed event on the same stream was not applied');
    assert.equal((await request(`${r.gateway}/d`)).status, 404);
  });

  test('a silent stream (no heartbeat) is dropped after the read timeout and reconnected', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } })));
    const r = await startStreamRunner(s, src.url, { env: { HOOKGATE_STREAM_READ_TIMEOUT_MS: '400' } });
    await r.waitForLog('config applied from the stream');
    const interrupted = await r.waitForLog('config stream interrupted');
    assert.match(String(interrupted.why), /no data for 400 ms/);
    await waitFor(() => src.requests.length >= 2, { what: 'a reconnect after the read timeout' });

    // Heartbeats keep a quiet stream alive: every 100 ms against a 2 s read
    // timeout, so a loaded machine's pauses do not pass for silence; watched
    // for longer than the read timeout.
    const heartbeats = await startSource(s, (c) => {
      c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } }));
      const timer = setInterval(() => c.raw(': heartbeat\n\n'), 100);
      s.defer(() => clearInterval(timer));
    });
    const r2 = await startStreamRunner(s, heartbeats.url, { env: { HOOKGATE_STREAM_READ_TIMEOUT_MS: '2000' } });
    await r2.waitForLog('config applied from the stream');
    await sleep(3000);
    assert.equal(heartbeats.requests.length, 1, 'heartbeats kept the stream up');
  });

  test('a refused credential is logged once, retried slowly, and the runner keeps serving its bootstrap config', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'from the stream', 9) } })));
    src.status = 401;
    const r = await startStreamRunner(s, src.url, {
      key: 'wrong-key-wrong-key-wrong',
      bootstrap: { routes: [{ id: 'a', match: { path: '/a' }, action: { type: 'static', body: 'from the bootstrap' } }] },
    });
    const refused = await r.waitForLog('the config source refused the credential');
    assert.equal(refused.status, 401);
    await waitFor(() => src.requests.length >= 3, { what: 'retries' });
    assert.equal(r.logs.filter((l) => l.msg.includes('refused the credential')).length, 1, 'logged once, not per retry');
    assert.equal((await request(`${r.gateway}/a`)).text, 'from the bootstrap');
    assert.equal((await readyz(r)).status, 200, 'the bootstrap config counts as a complete config');
    assert.equal(src.conns.length, 0);
  });
});
