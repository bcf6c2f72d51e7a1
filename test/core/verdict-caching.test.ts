/**
 * Verdict caches as requests meet them, on a driven clock: a binding's
 * cache on the runner side (the dispatcher's, keyed on what that plugin is
 * sent), and the edge's route-level `CachedHooks` in front of a hook
 * client. A cached verdict stands in for the call; TTL, negative TTL and
 * stale-if-error decide for how long; a degraded verdict is never cached
 * at the edge. The request id is not part of any key.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { listGet } from '../../src/core/protocol/headers.ts';
import { CachedHooks, mergeCacheSettings } from '../../src/core/gateway/verdict-cache.ts';
import { allow, deny } from '../../node-runner/sdk/index.ts';
import { answerOf, coreGateway, proxyOf, type Planned } from '../helpers/core.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import type { MemoryPlugin } from '../helpers/memory-hooks.ts';
import { requestInfo } from '../helpers/protocol.ts';

const PROXY = { type: 'proxy', upstream: 'http://10.0.0.1:3000' };

/** Route `r` binding `bindings`, plugins with the given cache blocks, on `clock`. */
function cached(bindings: unknown[], plugins: Record<string, { cache?: Record<string, unknown>; run: MemoryPlugin }>, clock: FakeClock) {
  return coreGateway(
    {
      routes: [{ id: 'r', plugins: bindings, action: PROXY }],
      plugins: Object.fromEntries(Object.entries(plugins).map(([n, p]) => [n, { path: '/bin/true', ...(p.cache ? { cache: p.cache } : {}) }])),
    },
    Object.fromEntries(Object.entries(plugins).map(([n, p]) => [n, p.run])),
    { clock },
  );
}

const byToken: MemoryPlugin = { on_request: (req) => (req.h.Authorization === 'Bearer good' ? allow({ 'X-User': 'alice' }) : deny(401)) };
const token = (t: string) => ['Authorization', `Bearer ${t}`];
const verdictOf = (p: Planned) => (p.at === 'step' ? p.authorized.verdict : null);

describe('a binding\'s cache (runner side)', () => {
  test('an allow is reused within ttl without a call; after ttl the plugin is asked once', async () => {
    const clock = new FakeClock();
    const gw = cached(['auth'], { auth: { cache: { ttl: '30s' }, run: byToken } }, clock);
    const calls = () => gw.hooks.callsOf('auth').length;
    for (let i = 0; i < 3; i++) assert.equal(listGet(proxyOf(await gw.plan({ target: '/me', headers: token('good') })).headers, 'x-user'), 'alice');
    assert.equal(calls(), 1);
    clock.advance(30_000);
    await gw.plan({ target: '/me', headers: token('good') });
    await gw.plan({ target: '/me', headers: token('good') });
    assert.equal(calls(), 2);
  });

  test('the request id is not in the key: requests with their own ids share the verdict', async () => {
    const gw = cached(['auth'], { auth: { cache: { ttl: '30s' }, run: byToken } }, new FakeClock());
    await gw.plan({ target: '/me', headers: [...token('good'), 'X-Request-Id', 'one'] });
    await gw.plan({ target: '/me', headers: [...token('good'), 'X-Request-Id', 'two'] });
    await gw.plan({ target: '/me', headers: token('good') });
    assert.equal(gw.hooks.callsOf('auth').length, 1);
  });

  test('anything else the plugin is sent is in the default key: another token, path or query is asked', async () => {
    const gw = cached(['auth'], { auth: { cache: { ttl: '30s', negative_ttl: '30s' }, run: byToken } }, new FakeClock());
    await gw.plan({ target: '/me', headers: token('good') });
    assert.equal(answerOf(await gw.plan({ target: '/me', headers: token('bad') })).status, 401);
    await gw.plan({ target: '/you', headers: token('good') });
    await gw.plan({ target: '/me?x=1', headers: token('good') });
    assert.equal(gw.hooks.callsOf('auth').length, 4);
  });

  test('a deny is reused for negative_ttl, and never without it', async () => {
    const clock = new FakeClock();
    const neg = cached(['auth'], { auth: { cache: { ttl: '30s', negative_ttl: '5s' }, run: byToken } }, clock);
    for (let i = 0; i < 3; i++) assert.equal(answerOf(await neg.plan({ target: '/', headers: token('bad') })).status, 401);
    assert.equal(neg.hooks.callsOf('auth').length, 1);
    clock.advance(5_000);
    await neg.plan({ target: '/', headers: token('bad') });
    assert.equal(neg.hooks.callsOf('auth').length, 2);
    const none = cached(['auth'], { auth: { cache: { ttl: '30s' }, run: byToken } }, clock);
    await none.plan({ target: '/', headers: token('bad') });
    await none.plan({ target: '/', headers: token('bad') });
    assert.equal(none.hooks.callsOf('auth').length, 2);
  });

  test('the key of a later binding holds what earlier plugins changed: two tokens of one user share its verdict', async () => {
    const gw = cached(
      ['login', 'policy'],
      {
        login: { run: { on_request: (req) => allow({ 'X-User': req.h.Authorization === 'Bearer a' || req.h.Authorization === 'Bearer b' ? 'alice' : 'bob' }) } },
        policy: { cache: { ttl: '30s', key: ['header:X-User'] }, run: { on_request: (req) => allow({ 'X-Policy': `for-${req.h['X-User']}` }) } },
      },
      new FakeClock(),
    );
    await gw.plan({ target: '/', headers: token('a') });
    await gw.plan({ target: '/', headers: token('b') });
    assert.equal(gw.hooks.callsOf('policy').length, 1, 'alice twice: one call');
    const bob = proxyOf(await gw.plan({ target: '/', headers: token('c') }));
    assert.equal(gw.hooks.callsOf('policy').length, 2);
    assert.equal(listGet(bob.headers, 'x-policy'), 'for-bob');
  });

  test('a plugin that fails after ttl: the expired verdict within stale_if_error (marked not cacheable), its on_error after', async () => {
    const clock = new FakeClock();
    const gw = cached(['auth'], { auth: { cache: { ttl: '10s', stale_if_error: '1m' }, run: byToken } }, clock);
    await gw.plan({ target: '/', headers: token('good') });
    gw.hooks.down('auth');
    clock.advance(30_000);
    const stale = await gw.plan({ target: '/', headers: token('good') });
    assert.equal(listGet(proxyOf(stale).headers, 'x-user'), 'alice');
    assert.equal(verdictOf(stale)?.nc, true);
    clock.advance(40_000);
    assert.equal(answerOf(await gw.plan({ target: '/', headers: token('good') })).status, 503);
  });

  test('failures are never cached: the plugin back up is asked at once', async () => {
    const gw = cached(['auth'], { auth: { cache: { ttl: '30s', negative_ttl: '30s' }, run: byToken } }, new FakeClock());
    gw.hooks.down('auth');
    assert.equal(answerOf(await gw.plan({ target: '/', headers: token('good') })).status, 503);
    gw.hooks.down('auth', true);
    assert.equal(listGet(proxyOf(await gw.plan({ target: '/', headers: token('good') })).headers, 'x-user'), 'alice');
  });

  test('concurrent misses on one key make one plugin call, and every request gets the verdict', async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const gw = cached(['auth'], { auth: { cache: { ttl: '30s' }, run: { on_request: async () => (await gate, allow({ 'X-User': 'alice' })) } } }, new FakeClock());
    const all = Array.from({ length: 20 }, () => gw.plan({ target: '/', headers: token('good') }));
    release();
    for (const p of await Promise.all(all)) assert.equal(listGet(proxyOf(p).headers, 'x-user'), 'alice');
    assert.equal(gw.hooks.callsOf('auth').length, 1);
  });
});

describe('the edge\'s route cache (CachedHooks in front of the hook client)', () => {
  const sha = async (m: Uint8Array) => createHash('sha256').update(m).digest('hex');
  const settings = mergeCacheSettings([{ ttl: 30_000, negative_ttl: 0, stale_if_error: 0, key: ['header:Authorization'], max_entries: 100 }])!;

  function edge(bindings: unknown[], plugins: Record<string, MemoryPlugin>, clock: FakeClock) {
    const gw = coreGateway({ routes: [{ id: 'r', plugins: bindings, action: PROXY }], plugins: Object.fromEntries(Object.keys(plugins).map((n) => [n, { path: '/bin/true' }])) }, plugins, { clock });
    const edgeHooks = new CachedHooks(gw.hooks, (id) => (id === 'r' ? { settings, generation: 'g1', withBody: false } : null), () => clock.now(), sha);
    const info = (t: string) => requestInfo({ r: 'r', m: 'GET', p: '/', d: 'app.example.com', h: { Authorization: `Bearer ${t}`, 'X-Request-Id': crypto.randomUUID() } });
    return { gw, edgeHooks, info };
  }

  test('a hit skips the hook client (and the plugin) until ttl', async () => {
    const clock = new FakeClock();
    const { gw, edgeHooks, info } = edge(['auth'], { auth: byToken }, clock);
    for (let i = 0; i < 3; i++) assert.deepEqual((await edgeHooks.onRequest('r', info('good'))).h, { 'X-User': 'alice' });
    assert.equal(gw.hooks.callsOf('auth').length, 1);
    clock.advance(30_000);
    await edgeHooks.onRequest('r', info('good'));
    assert.equal(gw.hooks.callsOf('auth').length, 2);
  });

  test('a verdict an on_error allow went into is not cached at the edge; a failure is not either', async () => {
    const clock = new FakeClock();
    const { gw, edgeHooks, info } = edge([{ plugin: 'flaky', on_error: 'allow' }, 'auth'], { flaky: { on_request: () => { throw new Error('down'); } }, auth: byToken }, clock);
    await edgeHooks.onRequest('r', info('good'));
    await edgeHooks.onRequest('r', info('good'));
    assert.equal(gw.hooks.callsOf('auth').length, 2, 'degraded (nc) verdicts are asked for again');
    const failing = edge(['gone'], { gone: { on_request: () => { throw new Error('down'); } } }, clock);
    assert.equal((await failing.edgeHooks.onRequest('r', failing.info('good'))).s, 503);
    assert.equal(failing.edgeHooks.sizeOf('r'), 0);
  });
});
