/**
 * The self-hosted gateway (`hookgate serve`) with a caching binding: the
 * gateway's on_request goes through the runner's verdict cache, so repeated
 * requests with one token reach the plugin once, the upstream still gets
 * the headers the verdict added, and cached verdicts keep being served
 * while the plugin is dead (the runner restarts it after a backoff, so what
 * an unseen token gets then is test/plugin-host/cache.test.ts's business,
 * on a driven clock).
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { CONFIGURABLE } from '../helpers/paths.ts';
import { baseConfig, isAlive, readJsonLines, startGateway, whenReady } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type EchoBody } from '../helpers/upstream.ts';

test('hookgate serve answers repeated requests from the verdict cache, also while the plugin is dead', { timeout: 60_000 }, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  const record = join(dir, 'record.jsonl');
  const up = await startUpstream(s);
  const gw = await startGateway(
    s,
    baseConfig({
      routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'proxy', upstream: up.url } }],
      plugins: {
        auth: {
          path: CONFIGURABLE,
          env: { FIXTURE_NAME: 'auth', FIXTURE_DIR: dir, FIXTURE_RECORD: record, FIXTURE_HEADER: 'X-User=alice' },
          ready_timeout: '60s',
          cache: { ttl: '1h', key: ['header:Authorization'] },
        },
      },
    }),
  );
  await whenReady(gw);
  const calls = () => readJsonLines<{ ev: string; hook?: string }>(record).filter((r) => r.ev === 'call' && r.hook === 'on_request').length;
  const alice = { authorization: 'Bearer t-alice' };

  for (const path of ['/api/a', '/api/b', '/api/c']) {
    const res = await request(`${gw.url}${path}`, { headers: alice });
    assert.equal(res.status, 200);
    assert.equal(res.json<EchoBody>().headers['x-user'], 'alice', 'the upstream gets the verdict\'s header, cached or not');
  }
  assert.equal(calls(), 1, 'one plugin call for three requests with one token');

  const pid = readJsonLines<{ ev: string; pid: number }>(record).find((r) => r.ev === 'start')!.pid;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => !isAlive(pid), { what: `plugin ${pid} to die` });
  const cached = await request(`${gw.url}/api/d`, { headers: alice });
  assert.equal(cached.status, 200, 'a cached verdict needs no plugin');
  assert.equal(cached.json<EchoBody>().headers['x-user'], 'alice');
  assert.equal(calls(), 1);
});
