/**
 * Balancing through the gateway: round-robin over real upstreams, targets
 * pushed by the example push-only plugin (push-targets.sh) replacing the
 * configured ones, an empty balancer answering 503 until a plugin fills it,
 * and grouped pools chosen by a request header.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { PUSH_TARGETS_SH } from '../helpers/paths.ts';
import { baseConfig, startGateway, type Gateway } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

const servedBy = async (gw: Gateway, path: string, headers: Record<string, string> = {}) => {
  const res = await request(`${gw.url}${path}`, { headers });
  assert.equal(res.status, 200, `${path}: ${res.status} ${res.text}`);
  return String(res.headers['x-served-by']);
};

async function sequence(gw: Gateway, path: string, n: number, headers: Record<string, string> = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await servedBy(gw, path, headers));
  return out;
}

describe('balancing', { concurrency: true, timeout: 60_000 }, () => {
  test('roundrobin alternates between two real upstreams', async (t) => {
    const s = scope(t);
    const [a, b] = await Promise.all([startUpstream(s, { name: 'a' }), startUpstream(s, { name: 'b' })]);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'rr', balancer: { type: 'roundrobin', targets: [a.target, b.target] }, action: { type: 'proxy', upstream: 'http://{target}' } }],
      }),
    );
    const seen = await sequence(gw, '/x', 6);
    assert.deepEqual(seen.slice().sort(), ['a', 'a', 'a', 'b', 'b', 'b']);
    for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], `requests ${i - 1} and ${i} went to the same upstream: ${seen}`);
    assert.equal(a.received.length, 3);
    assert.equal(b.received.length, 3);
  });

  test('targets pushed by push-targets.sh (autostart, route_id "*") replace the configured ones', async (t) => {
    const s = scope(t);
    const [configured, p1, p2] = await Promise.all([
      startUpstream(s, { name: 'configured' }),
      startUpstream(s, { name: 'pushed-1' }),
      startUpstream(s, { name: 'pushed-2' }),
    ]);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [
          { id: 'one', match: { path: '/one/*' }, balancer: { targets: [configured.target] }, action: 'app' },
          { id: 'two', match: { path: '/two/*' }, balancer: { targets: [configured.target] }, action: 'app' },
        ],
        actions: { app: { type: 'proxy', upstream: 'http://{target}' } },
        plugins: {
          pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: '*', PUSH_TARGETS: `${p1.target},${p2.target}` } },
        },
      }),
    );
    await gw.waitForLog('set_targets applied');
    const before = configured.received.length;
    for (const route of ['/one/x', '/two/x']) {
      const seen = await sequence(gw, route, 4);
      assert.deepEqual(seen.slice().sort(), ['pushed-1', 'pushed-1', 'pushed-2', 'pushed-2'], `${route}: ${seen}`);
    }
    assert.equal(configured.received.length, before, 'no request went to the configured target after the push');
  });

  test('a balancer without targets answers 503 until a plugin pushes some', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s, { name: 'late' });
    // The pusher waits for a gate file before it reads its configure line, so
    // the test decides when the push happens.
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [
          { id: 'empty', match: { path: '/empty/*' }, balancer: { type: 'roundrobin' }, action: { type: 'proxy', upstream: 'http://{target}' } },
          { id: 'other', match: { path: '/other' }, action: { type: 'static', body: 'other\n' } },
        ],
        plugins: {
          pusher: {
            command: ['sh', '-c', `while [ ! -e gate ]; do sleep 0.05; done; exec "${PUSH_TARGETS_SH}"`],
            autostart: true,
            env: { PUSH_ROUTE: 'empty', PUSH_TARGETS: up.target },
          },
        },
      }),
    );
    const res = await request(`${gw.url}/empty/x`);
    assert.equal(res.status, 503);
    assert.equal(res.text, 'no upstream target available\n');

    writeFileSync(join(gw.dir, 'gate'), '');
    await waitFor(async () => (await request(`${gw.url}/empty/x`)).status === 200, { what: 'the route to be served after the push' });
    assert.equal(await servedBy(gw, '/empty/y'), 'late');
  });

  test('grouped pools (PUSH_GROUPS) are chosen by the group_by header; with unknown_group "all", no header picks from all', async (t) => {
    const s = scope(t);
    const [eu1, eu2, us1] = await Promise.all([startUpstream(s, { name: 'eu-1' }), startUpstream(s, { name: 'eu-2' }), startUpstream(s, { name: 'us-1' })]);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'geo', balancer: { type: 'roundrobin', group_by: 'header:X-Region', unknown_group: 'all' }, action: { type: 'proxy', upstream: 'http://{target}' } }],
        plugins: {
          pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: 'geo', PUSH_GROUPS: `eu=${eu1.target}|${eu2.target};us=${us1.target}` } },
        },
      }),
    );
    await gw.waitForLog('set_targets applied');
    assert.deepEqual((await sequence(gw, '/', 4, { 'x-region': 'eu' })).sort(), ['eu-1', 'eu-1', 'eu-2', 'eu-2']);
    assert.deepEqual(await sequence(gw, '/', 3, { 'x-region': 'us' }), ['us-1', 'us-1', 'us-1']);
    const any = new Set(await sequence(gw, '/', 6));
    assert.deepEqual([...any].sort(), ['eu-1', 'eu-2', 'us-1']);
  });
});
