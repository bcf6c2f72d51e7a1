/**
 * The edge worker shares the route schema with the self-hosted gateway but
 * cannot serve files or drop connections: the built worker in Miniflare,
 * routing by a real runner's state, answers a `drop` route as it answers a
 * drop verdict (an empty 403) and a `serve` route with
 * 501 and a body saying why, after the route's verdict (a deny still wins).
 * The same runner's own gateway serves the file.
 */

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { request } from '../helpers/http.ts';
import { EDGE_PLUGIN } from '../helpers/paths.ts';
import { runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

const s = suiteScope();
let runner: RunnerProcess;
let edge: Edge;

before(async () => {
  assertWorkerBuilt();
  const dir = tempDir(s, 'hookgate-edge-serve-');
  mkdirSync(join(dir, 'public'));
  writeFileSync(join(dir, 'public', 'hello.txt'), 'hello from disk\n');
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'gone', match: { path: '/gone/*' }, action: { type: 'drop' } },
        { id: 'files', match: { path: '/files/*' }, action: 'files' },
        { id: 'guarded', match: { path: '/guarded/*' }, plugins: ['fixture'], action: 'files' },
      ],
      actions: { files: { type: 'serve', root: 'public' } },
      plugins: { fixture: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request' } } },
    }),
    { dir },
  );
  edge = await startEdge(s, { runners: [runner.url], transport: 'http' });
});

test('a drop route answers at the edge as a drop verdict does: an empty 403', async () => {
  // The worker also says Connection: close; workerd keeps hop-by-hop headers to itself, so it is not seen here.
  const res = await edge.fetch('/gone/x');
  assert.equal(res.status, 403);
  assert.equal(res.text, '');
});

test('a serve route answers 501 at the edge, saying only the self-hosted gateway serves files; the runner\'s gateway serves the file', async () => {
  const res = await edge.fetch('/files/hello.txt');
  assert.equal(res.status, 501);
  assert.match(res.text, /this route's action is "serve", which only the self-hosted gateway \(hookgate serve\) can carry out, not the edge worker/);
  const local = await request(`${runner.gateway}/files/hello.txt`);
  assert.equal(local.status, 200);
  assert.equal(local.text, 'hello from disk\n');
});

test('on a serve route the verdict still comes first at the edge: a deny is the deny, an allow the 501', async () => {
  const denied = await edge.fetch('/guarded/deny');
  assert.equal(denied.status, 403);
  assert.equal(denied.text, 'denied by fixture\n');
  const allowed = await edge.fetch('/guarded/hello.txt');
  assert.equal(allowed.status, 501);
});

test('the runner warned at start that edge workers cannot serve its serve routes', async () => {
  await runner.waitForLog((l) => /route "files" is a "serve" route \(action "files"\); an edge worker cannot serve files/.test(l.msg));
});
