/**
 * End to end: a runner following the real `hookgate config-server`. An
 * edit of the served file reaches the runner; a killed and restarted server
 * leaves the runner serving what it had, and it catches up when the server
 * is back.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, request, waitFor } from '../helpers/http.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startConfigServer, startStreamRunner } from './harness.ts';

const route = (id: string, body: string) => ({ id, match: { path: `/${id}` }, action: { type: 'static', body } });

test('a runner follows the real config server: edits are served shortly after, and it rides out a server restart', { timeout: 60_000 }, async (t) => {
  const s = scope(t);
  const dir = tempDir(s);
  const file = join(dir, 'served.json5');
  const write = (...routes: unknown[]) => writeFileSync(file, JSON.stringify({ routes }, null, 2));
  write(route('a', 'A'));
  const listen = `127.0.0.1:${await freePort()}`;
  let server = await startConfigServer(s, file, listen);
  const r = await startStreamRunner(s, `http://${listen}/v1/stream`);
  const text = async (path: string) => (await request(`${r.gateway}${path}`)).text;
  await waitFor(async () => (await text('/a')) === 'A', { what: 'the first put to be served' });

  write(route('a', 'A'), route('b', 'B'));
  await waitFor(async () => (await text('/b')) === 'B', { what: 'the edit to be served' });

  await server.kill();
  await r.waitForLog('config stream interrupted');
  assert.equal(await text('/a'), 'A', 'the runner keeps serving while the server is down');
  assert.equal(await text('/b'), 'B');

  write(route('b', 'B2'), route('c', 'C'));
  server = await startConfigServer(s, file, listen);
  await waitFor(async () => (await text('/c')) === 'C', { timeoutMs: 10_000, what: 'the runner to catch up after the restart' });
  assert.equal(await text('/b'), 'B2');
  assert.equal((await request(`${r.gateway}/a`)).status, 404, 'the route removed meanwhile is gone');
});
