/**
 * SIGTERM drains: a request in flight completes, new connections are
 * refused meanwhile, the process exits 0, and no plugin process remains.
 */

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openWebSocket, request, sleep, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, readJsonLines, startGateway, whenReady } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

test('SIGTERM lets a slow request in flight finish with 200, refuses new connections, exits 0 and stops every plugin', { timeout: 60_000 }, async (t) => {
  const s = scope(t);
  // The upstream holds its answer until the test has seen the drain begin
  // (or 10 s pass), so the request is in flight whatever the machine's speed.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const up = await startUpstream(s, {
    handler: (req, res) => {
      req.resume();
      const timer = setTimeout(release, 10_000);
      void released.then(() => {
        clearTimeout(timer);
        res.end(`answered ${req.url}`);
      });
    },
  });
  s.defer(() => release());
  const pids = join(tempDir(s), 'pids');
  const gw = await startGateway(
    s,
    baseConfig({
      routes: [{ id: 'api', plugins: ['fx'], action: { type: 'proxy', upstream: up.url } }],
      plugins: {
        fx: { path: VERDICT_PLUGIN, env: { FIXTURE_PID_FILE: pids, FIXTURE_HOOKS: 'on_request' } },
        pusher: { path: VERDICT_PLUGIN, autostart: true, env: { FIXTURE_PID_FILE: pids, FIXTURE_HOOKS: '' } },
      },
    }),
  );
  await whenReady(gw);
  const pluginPids = await waitFor(
    () => {
      const list = existsSync(pids) ? readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number) : [];
      return list.length === 2 ? list : null;
    },
    { what: 'both plugins to have started' },
  );
  assert.ok(pluginPids.every(isAlive));

  const slow = request(`${gw.url}/slow`);
  await waitFor(() => up.received.some((r) => r.url === '/slow'), { what: 'the slow request to reach the upstream' });

  const mark = gw.logs.length;
  process.kill(gw.pid, 'SIGTERM');
  await gw.waitForLog('draining requests in flight', { from: mark });
  await assert.rejects(request(`${gw.url}/late`), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ECONNREFUSED', `a new connection during the drain: ${err.code} ${err.message}`);
    return true;
  });

  await sleep(300);
  assert.ok(gw.running(), 'the gateway waits for the request in flight');
  release();
  const res = await slow;
  assert.equal(res.status, 200, 'the request in flight completed');
  assert.equal(res.text, 'answered /slow');
  assert.equal(up.received.filter((r) => r.url === '/late').length, 0);

  const exit = await gw.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  for (const pid of pluginPids) assert.ok(!isAlive(pid), `plugin ${pid} is still running after the gateway exited`);
});

/** A gateway with one WebSocket route whose plugin records on_disconnect; an open session through it. */
async function openSession(t: TestContext) {
  const s = scope(t);
  const up = await startUpstream(s, { websocket: true });
  const disconnects = join(tempDir(s), 'disconnects.jsonl');
  const gw = await startGateway(
    s,
    baseConfig({
      routes: [{ id: 'ws', plugins: ['fx'], action: { type: 'proxy', upstream: up.url } }],
      plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_connect,on_disconnect', FIXTURE_DISCONNECT_FILE: disconnects } } },
    }),
  );
  await whenReady(gw);
  const session = await openWebSocket(s, gw.url.replace(/^http/, 'ws') + '/ws');
  session.ws.send('ping');
  assert.equal(await session.next(), 'ping');
  return { gw, session, disconnects };
}

test('SIGTERM ends open WebSocket sessions and still exits 0', { timeout: 60_000 }, async (t) => {
  const { gw, session } = await openSession(t);
  process.kill(gw.pid, 'SIGTERM');
  await session.closed;
  assert.deepEqual(await gw.exited, { code: 0, signal: null });
});

test(
  'a WebSocket session ended by SIGTERM is still reported by on_disconnect',
  {
    timeout: 60_000,
  },
  async (t) => {
    const { gw, session, disconnects } = await openSession(t);
    process.kill(gw.pid, 'SIGTERM');
    await session.closed;
    await gw.exited;
    const records = readJsonLines<{ r: string; rx: number; tx: number }>(disconnects);
    assert.equal(records.length, 1, 'one on_disconnect record for the session');
    const [rec] = records;
    assert.equal(rec.r, 'ws');
    assert.ok(rec.rx > 0 && rec.tx > 0);
  },
);
