/**
 * Key expiry on the hook API, with time driven by a fake clock: a key's
 * `expires_at` (RFC 3339 with an offset, parsed once when the config is
 * validated) ends its HTTP calls and closes the WebSocket links opened
 * with it at that moment, also when the moment is further away than one
 * timer can wait. A key whose expiry is not a number fails closed.
 */

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { createHookApi } from '../../node-runner/hook-api/hook-api.ts';
import { KeyRing } from '../../node-runner/hook-api/keys.ts';
import { PluginManager } from '../../node-runner/plugin/manager.ts';
import { encodeHookFrame } from '../../src/core/protocol/codec.ts';
import { parseConfig } from '../../src/core/config/config.ts';
import { silentLogger } from '../../src/core/log.ts';
import type { StateSnapshot } from '../../src/core/state/routing-snapshot.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { openLink, postFrames, type Link } from '../helpers/hook-api.ts';
import { scope, type Scope } from '../helpers/scope.ts';

const SECRET = 'expiring-key-0123456789abcdef';
const frame = () => encodeHookFrame('on_request', { r: 'plain', m: 'GET', p: '/' });

/** A hook API on 127.0.0.1 whose wall time is `start + clock.now()`, with the keys of `keys` (config form). */
async function serveApi(s: Scope, keys: unknown[] | KeyRing, start: number): Promise<{ url: string; clock: FakeClock }> {
  const clock = new FakeClock();
  const config = parseConfig({ runner: { keys: Array.isArray(keys) ? keys : [] }, routes: [{ id: 'plain', action: { type: 'static' } }] });
  const ring = keys instanceof KeyRing ? keys : KeyRing.fromConfig(config, {}, silentLogger);
  const manager = new PluginManager({ logger: silentLogger });
  await manager.apply(config);
  s.defer(() => manager.stop());
  const api = createHookApi({ hooks: manager, snapshot: () => ({ version: 'v1' }) as StateSnapshot, keys: () => ring, logger: silentLogger, clock, now: () => start + clock.now() });
  const rest = getRequestListener(api.app.fetch, { overrideGlobalObjects: false });
  const server = createServer((req, res) => {
    if (!api.handle(req, res)) void rest(req, res);
  });
  server.on('upgrade', api.upgrade);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.defer(
    () =>
      new Promise<void>((r) => {
        api.closeAll();
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, clock };
}

/** Resolves once the link answered a ping: it is open, and the runner has handled what came before. */
function pong(link: Link): Promise<void> {
  return new Promise((resolve) => {
    link.ws.once('pong', () => resolve());
    link.ws.ping();
  });
}

const T = { timeout: 30_000 };
const HOUR = 3_600_000;

test('a link opened with a key closes with 4001 at the key\'s expires_at, and the key gets 401 from then on', T, async (t) => {
  const s = scope(t);
  const expiresAt = Date.UTC(2030, 0, 1);
  // An hour of fake time: only the injected clock can get there within the test's timeout.
  const { url, clock } = await serveApi(s, [{ id: 'soon', secret: SECRET, expires_at: '2030-01-01T02:00:00+02:00' }], expiresAt - HOUR);
  const link = await openLink(s, url, SECRET);
  assert.equal((await postFrames(url, SECRET, frame())).status, 200, 'the key works before its expiry');

  clock.advance(HOUR - 1);
  await pong(link);
  assert.equal(link.ws.readyState, link.ws.OPEN, 'still open 1 ms before the expiry');

  clock.advance(1);
  const closed = await link.closed;
  assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4001, reason: 'key expired' });
  assert.equal((await postFrames(url, SECRET, frame())).status, 401);
  assert.equal(await openLink(s, url, SECRET).then(() => 0, (e: { status?: number }) => e.status), 401);
});

test('an expiry further away than one timer can wait is re-armed, not reached early', T, async (t) => {
  const s = scope(t);
  const start = Date.UTC(2030, 0, 1);
  const days40 = 40 * 86_400_000;
  const { url, clock } = await serveApi(s, [{ id: 'far', secret: SECRET, expires_at: new Date(start + days40).toISOString() }], start);
  const link = await openLink(s, url, SECRET);
  clock.advance(2 ** 31 - 1);
  await pong(link);
  assert.equal(link.ws.readyState, link.ws.OPEN);
  assert.deepEqual(clock.pendingDelays(), [days40 - (2 ** 31 - 1)], 'one timer, for exactly the time left');
  clock.advance(days40 - (2 ** 31 - 1));
  assert.equal((await link.closed).code, 4001);
  assert.deepEqual(clock.pendingDelays(), [], 'nothing re-armed after the close');
});

test('a key whose expiry is not a number is refused (fail closed), rather than valid forever', T, async (t) => {
  const s = scope(t);
  const { url, clock } = await serveApi(s, new KeyRing([{ id: 'nan', secret: SECRET, expiresAt: Number.NaN }]), Date.UTC(2030, 0, 1));
  assert.equal((await postFrames(url, SECRET, frame())).status, 401);
  assert.equal(await openLink(s, url, SECRET).then(() => 0, (e: { status?: number }) => e.status), 401);
  assert.deepEqual(clock.pendingDelays(), [], 'no timer spinning');
});
