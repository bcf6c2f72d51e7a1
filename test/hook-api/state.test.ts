/**
 * `GET /v1/state` (docs/protocol.md §2): the versioned snapshot edge workers
 * route by — the routes with their matches and actions, which hooks each
 * route's plugins declared, and the balancer targets plugins pushed.
 * `ETag` is the version; `If-None-Match` gets 304. The version changes when
 * a plugin pushes new targets and when the config file changes.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { getState } from '../helpers/hook-api.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';

interface Snapshot {
  version: string;
  config: { routes: Array<Record<string, unknown>>; actions: Record<string, unknown> };
  hooks: Record<string, string[]>;
  body: string[];
  targets: Record<string, { targets: string[]; groups: Record<string, string[]> | null }>;
  speed: Record<string, unknown>;
}

const s = suiteScope();
let runner: RunnerProcess;
let targetsFile: string;
let config: Record<string, unknown>;

const routes = [
  { id: 'api', match: { path: '/api/*', methods: ['GET', 'POST'] }, plugins: ['auth'], action: 'app' },
  { id: 'full', match: { domain: 'ws.example.com', path: '/ws/*' }, plugins: ['fixture'], action: 'app' },
  { id: 'plain', match: { path: '/health' }, action: { type: 'static', body: 'ok\n' } },
  { id: 'pool', match: { path: '/pool/*' }, balancer: { type: 'roundrobin', targets: ['127.0.0.1:9'] }, action: { type: 'proxy', upstream: 'http://{target}' } },
];

before(async () => {
  const dir = tempDir(s);
  targetsFile = join(dir, 'targets.json');
  writeFileSync(targetsFile, JSON.stringify(['127.0.0.1:7001', '127.0.0.1:7002']));
  config = runnerConfig({
    routes,
    actions: { app: { type: 'proxy', upstream: 'http://127.0.0.1:9' } },
    plugins: {
      auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
      fixture: { path: EDGE_PLUGIN },
      // Bound to no route: it only pushes targets (read from the file) to "pool".
      pusher: { path: EDGE_PLUGIN, autostart: true, env: { FIXTURE_HOOKS: '', FIXTURE_TARGETS_FILE: targetsFile, FIXTURE_PUSH_ROUTE: 'pool' } },
    },
  });
  runner = await startRunner(s, config, { dir });
  await waitFor(async () => (await snapshot()).targets.pool, { what: 'the pusher to push its first targets' });
});

async function snapshot(): Promise<Snapshot> {
  const res = await getState(runner.url, KEY);
  assert.equal(res.status, 200, res.text());
  return res.json<Snapshot>();
}

test('the snapshot holds the routes with their matches and actions, and no plugin config', async () => {
  const snap = await snapshot();
  assert.deepEqual(
    snap.config.routes.map((r) => r.id),
    ['api', 'full', 'plain', 'pool'],
  );
  const api = snap.config.routes[0];
  assert.deepEqual(api.match, { path: '/api/*', methods: ['GET', 'POST'] });
  assert.equal(api.action, 'app');
  assert.equal('plugins' in api, false, 'the edge runs no plugins: bindings are not in the snapshot');
  assert.deepEqual(snap.config.routes[1].match, { domain: 'ws.example.com', path: '/ws/*' });
  assert.deepEqual(snap.config.routes[2].action, { type: 'static', status: 200, body: 'ok\n', headers: {} });
  assert.deepEqual(snap.config.actions, { app: { type: 'proxy', upstream: 'http://127.0.0.1:9', timeout: 30_000, max_connections: 1024, queue_timeout: 5000 } });
  assert.equal('plugins' in snap.config, false);
  assert.equal(JSON.stringify(snap).includes(KEY), false, 'no runner key in the snapshot');
});

test('the snapshot says which hooks each route\'s plugins declared (routes without hooks are absent)', async () => {
  const snap = await snapshot();
  assert.deepEqual(snap.hooks, {
    api: ['on_request'],
    full: ['on_request', 'on_response', 'on_connect', 'on_disconnect'],
  });
  assert.deepEqual(snap.body, []);
});

test('the snapshot carries the targets a plugin pushed', async () => {
  const snap = await snapshot();
  assert.deepEqual(snap.targets, { pool: { targets: ['127.0.0.1:7001', '127.0.0.1:7002'], groups: null } });
});

test('ETag is the version (also in Hookgate-State); If-None-Match with it gets 304 and no body', async () => {
  const res = await getState(runner.url, KEY);
  const snap = res.json<Snapshot>();
  assert.equal(res.headers.get('etag'), `"${snap.version}"`);
  assert.equal(res.headers.get('hookgate-state'), snap.version);

  const again = await getState(runner.url, KEY, `"${snap.version}"`);
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  assert.equal(again.headers.get('etag'), `"${snap.version}"`);
  assert.equal(again.headers.get('hookgate-state'), snap.version);

  const stale = await getState(runner.url, KEY, '"0000000000000000"');
  assert.equal(stale.status, 200, 'a stale ETag gets the snapshot');
  assert.equal(stale.json<Snapshot>().version, snap.version);
});

test('a push of new targets changes the version; pushing the old targets again restores it (the version is the content)', async () => {
  const before = await snapshot();
  writeFileSync(targetsFile, JSON.stringify(['127.0.0.1:7003']));
  const changed = await waitFor(
    async () => {
      const snap = await snapshot();
      return snap.version !== before.version && snap;
    },
    { what: 'the version to change after the push' },
  );
  assert.deepEqual(changed.targets.pool, { targets: ['127.0.0.1:7003'], groups: null });
  const stale = await getState(runner.url, KEY, `"${before.version}"`);
  assert.equal(stale.status, 200, 'the old ETag no longer matches');

  writeFileSync(targetsFile, JSON.stringify(['127.0.0.1:7001', '127.0.0.1:7002']));
  await waitFor(async () => (await snapshot()).version === before.version, { what: 'the version to come back with the old targets' });
});

test('a change of the config file (reloaded by the runner) changes the version and the snapshot', async () => {
  const before = await snapshot();
  const from = runner.logs.length;
  runner.rewrite({ ...config, routes: [...routes, { id: 'added', match: { path: '/added' }, action: { type: 'redirect', to: '/health' } }] });
  await runner.waitForLog('config reloaded', { from });
  const after = await snapshot();
  assert.notEqual(after.version, before.version);
  assert.deepEqual(
    after.config.routes.map((r) => r.id),
    ['api', 'full', 'plain', 'pool', 'added'],
  );
  assert.deepEqual(after.targets.pool, before.targets.pool, 'pushed targets survive a reload that keeps the route');
  const hooks = await fetch(`${runner.url}/v1/state`, { headers: { authorization: `Bearer ${KEY}`, 'if-none-match': `"${before.version}"` } });
  await hooks.body?.cancel();
  assert.equal(hooks.status, 200);
  assert.equal(hooks.headers.get('hookgate-state'), after.version);
});
