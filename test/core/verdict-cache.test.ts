/**
 * The verdict cache's rules, on a driven clock: the `cache` config
 * (plugin defaults, route overrides field by field, errors naming the
 * field), what the key is made of, TTL, negative TTL, stale-if-error,
 * single-flight, the LRU bound, the route-level merge the edge uses, and
 * `CachedHooks` in front of a HookClient.
 */

import assert from 'node:assert/strict';
import { problemsOf } from '../helpers/config.ts';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseConfig, type CacheSettings } from '../../src/core/config/config.ts';
import type { HookClient } from '../../src/core/gateway/gateway.ts';
import type { AuthorizeResult, RequestInfo } from '../../src/core/protocol/protocol.ts';
import { decodeHookResult, encodeHookResult } from '../../src/core/protocol/codec.ts';
import { edgeStateOf } from '../../src/core/state/routing-snapshot.ts';
import { CachedHooks, cacheKey, clientIp, keyMaterial, mergeCacheSettings, subtleDigest, VerdictCache, type Fresh } from '../../src/core/gateway/verdict-cache.ts';
import { requestInfo } from '../helpers/protocol.ts';

const STATIC = { type: 'static' };


function settings(over: Partial<CacheSettings> = {}): CacheSettings {
  return { ttl: 30_000, negative_ttl: 0, stale_if_error: 0, key: null, max_entries: 100, ...over };
}

const allow = (h: Record<string, string> = {}): AuthorizeResult => ({ ok: true, dr: false, fb: false, s: 0, b: '', h, rm: [], sp: null, cq: false, rp: '', e: '' });
const deny = (s = 403): AuthorizeResult => ({ ...allow(), ok: false, s });

function info(over: Partial<RequestInfo> = {}): RequestInfo {
  return requestInfo({ r: 'api', m: 'GET', p: '/v1/me', q: 'a=1', d: 'app.example.com', ho: 'app.example.com:8080', pr: 'HTTP/1.1', a: '192.0.2.10:50000', h: { Authorization: 'Bearer t1', Accept: '*/*' }, ...over });
}

const sha = (m: Uint8Array) => createHash('sha256').update(m).digest('hex');
const keyOf = (i: RequestInfo, key: string[] | null = null, withBody = false) => sha(keyMaterial(i, key, withBody));

describe('cache config', () => {
  const base = (plugin: Record<string, unknown>, binding: unknown) => ({
    routes: [{ id: 'api', plugins: [binding], action: STATIC }],
    plugins: { auth: { path: '/bin/true', ...plugin } },
  });

  test('a route overrides the plugin\'s cache field by field, durations parsed as elsewhere', () => {
    const cfg = parseConfig(base({ cache: { ttl: '30s', negative_ttl: '5s', stale_if_error: '5m', key: ['header:Authorization', 'path'] } }, { plugin: 'auth', cache: { ttl: '2s', max_entries: 50 } }));
    assert.deepEqual(cfg.routes[0].plugins[0].cache, { ttl: 2000, negative_ttl: 5000, stale_if_error: 300_000, key: ['header:Authorization', 'path'], max_entries: 50 });
  });

  test('a binding caches nothing without ttl or negative_ttl, and a route can switch a plugin\'s cache off', () => {
    assert.equal(parseConfig(base({}, 'auth')).routes[0].plugins[0].cache, undefined);
    assert.equal(parseConfig(base({ cache: { ttl: '30s' } }, { plugin: 'auth', cache: { ttl: 0 } })).routes[0].plugins[0].cache, undefined);
    const only = parseConfig(base({ cache: { stale_if_error: '1m' } }, 'auth'));
    assert.equal(only.routes[0].plugins[0].cache, undefined);
    assert.equal(parseConfig(base({ cache: { ttl: '1s' } }, 'auth')).routes[0].plugins[0].cache?.max_entries, 10_000, 'default max_entries');
  });

  test('bad cache fields are reported with their path and what was expected', () => {
    const problems = problemsOf(base({ cache: { ttl: 'soon', key: ['header:', 'cookie'], max_entries: 0, size: 1 } }, { plugin: 'auth', cache: { negative_ttl: -1, key: [] } }));
    const text = problems.join('\n');
    assert.match(text, /plugins\.auth\.cache\.ttl: expected a duration/);
    assert.match(text, /plugins\.auth\.cache\.key\[0\]: expected "header:<Name>" or one of "method", "domain"/);
    assert.match(text, /plugins\.auth\.cache\.key\[1\]: expected "header:<Name>"/);
    assert.match(text, /plugins\.auth\.cache\.max_entries: expected at least 1/);
    assert.match(text, /plugins\.auth\.cache\.size: unknown field/);
    assert.match(text, /routes\[0\]\.plugins\[0\]\.cache\.negative_ttl: expected a duration/);
    assert.match(text, /routes\[0\]\.plugins\[0\]\.cache\.key: expected at least one key part/);
  });

  test('"body" in the key of a binding that sends no body is an error', () => {
    const problems = problemsOf(base({ cache: { ttl: '1s', key: ['body'] } }, 'auth'));
    assert.deepEqual(problems.length, 1);
    assert.match(problems[0], /^routes\[0\]\.plugins\[0\]: the cache key names "body", but this binding sends plugin "auth" no body/);
    assert.ok(parseConfig(base({ cache: { ttl: '1s', key: ['body'] }, with_body: true }, 'auth')));
    const together = problemsOf({ ...base({ cache: { ttl: '1s', key: ['body'] } }, 'auth'), gateway: { listen: 'nowhere' } });
    assert.equal(together.length, 2, `reported with the schema's problems: ${together.join('; ')}`);
  });
});

describe('cache key', () => {
  test('the default key changes with every part the plugin is sent', () => {
    const k = keyOf(info());
    const variants: Array<Partial<RequestInfo>> = [
      { m: 'POST' },
      { d: 'other.example.com' },
      { ho: 'app.example.com' },
      { p: '/v1/you' },
      { q: 'a=2' },
      { q: '' },
      { a: '192.0.2.11:50000' },
      { pr: 'HTTP/2' },
      { cl: 5 },
      { mp: '/v1/*' },
      { v: { id: '1' } },
      { h: { Authorization: 'Bearer t2', Accept: '*/*' } },
      { h: { Authorization: 'Bearer t1', Accept: '*/*', Cookie: 'x=1' } },
      { h: { Authorization: 'Bearer t1' } },
      { h: { Authorization: 'Bearer t1', Accept: '*/*', 'X-Tenant': '' } },
    ];
    const seen = new Set([k]);
    for (const v of variants) {
      const other = keyOf(info(v));
      assert.ok(!seen.has(other), `${JSON.stringify(v)} must change the key`);
      seen.add(other);
    }
  });

  test('the client\'s port, hop-by-hop headers, X-Request-Id, traceparent, tracestate and header order are not in the default key', () => {
    const k = keyOf(info());
    assert.equal(keyOf(info({ a: '192.0.2.10:1' })), k);
    const noisy = { Accept: '*/*', 'X-Request-Id': 'r-1', Traceparent: '00-abc-def-01', Tracestate: 'x=1', Connection: 'keep-alive', 'Keep-Alive': '5', Te: 'trailers', Authorization: 'Bearer t1' };
    assert.equal(keyOf(info({ h: noisy })), k);
    assert.equal(clientIp('[2001:db8::1]:443'), '2001:db8::1');
    assert.equal(clientIp('192.0.2.1:80'), '192.0.2.1');
    assert.equal(clientIp('2001:db8::1'), '2001:db8::1');
  });

  test('the body is in the key of with_body bindings only', () => {
    const a = info({ bd: new TextEncoder().encode('{"amount":1}') });
    const b = info({ bd: new TextEncoder().encode('{"amount":2}') });
    assert.notEqual(keyOf(a, null, true), keyOf(b, null, true));
    assert.notEqual(keyOf(a, null, true), keyOf(info(), null, true), 'a body and none differ');
    assert.equal(keyOf(a, null, false), keyOf(b, null, false));
    assert.notEqual(keyOf(a, ['path', 'body'], true), keyOf(b, ['path', 'body'], true));
  });

  test('a named key holds only its parts, header names in any case, absent and empty apart', () => {
    const key = ['header:authorization', 'path'];
    const k = keyOf(info(), key);
    assert.equal(keyOf(info({ m: 'POST', a: '198.51.100.1:1', h: { Authorization: 'Bearer t1', Cookie: 'c' } }), key), k);
    assert.notEqual(keyOf(info({ h: { Authorization: 'Bearer t2' } }), key), k);
    assert.notEqual(keyOf(info({ p: '/x' }), key), k);
    assert.notEqual(keyOf(info({ h: {} }), key), keyOf(info({ h: { Authorization: '' } }), key));
    for (const part of ['method', 'domain', 'host', 'query', 'client_ip']) {
      const base = keyOf(info(), [part]);
      const other = keyOf(info({ m: 'PUT', d: 'b.example', ho: 'b.example', q: 'z', a: '203.0.113.9:1' }), [part]);
      assert.notEqual(base, other, part);
    }
    assert.equal(keyOf(info({ a: '192.0.2.10:1' }), ['client_ip']), keyOf(info(), ['client_ip']));
  });

  test('values cannot run into each other', () => {
    assert.notEqual(keyOf(info({ p: '/a', q: 'b' }), ['path', 'query']), keyOf(info({ p: '/a","b', q: '' }), ['path', 'query']));
  });

  test('a short key is its material, a long one or one with a body its digest, and the two kinds never meet', () => {
    const short = cacheKey(info(), null, false, sha);
    assert.equal(short, new TextDecoder().decode(keyMaterial(info(), null, false)));
    assert.ok((short as string).startsWith('['));
    const long = info({ h: { Cookie: 'c'.repeat(600) } });
    assert.equal(cacheKey(long, null, false, sha), keyOf(long));
    const body = info({ bd: new TextEncoder().encode('x') });
    assert.equal(cacheKey(body, null, true, sha), keyOf(body, null, true));
    assert.ok(!/\[/.test(sha(new Uint8Array(1))) && !/\[/.test(Buffer.from(new Uint8Array(32).fill(0x5b)).toString('base64')), 'hex and base64 digests hold no "["');
  });

  test('the Web Crypto digest is SHA-256', async () => {
    const m = keyMaterial(info(), null, false);
    assert.equal(await subtleDigest(m), sha(m));
  });
});

/** A clock the test moves. */
function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** A call that counts and answers what `next` says. */
function counter(next: () => Fresh<string>) {
  const c = { calls: 0, call: async () => (c.calls++, next()) };
  return c;
}

describe('VerdictCache', () => {
  test('an allow is reused within ttl, then asked for again once', async () => {
    const t = clock();
    const cache = new VerdictCache<string>(settings({ ttl: 1000 }), t.now);
    const c = counter(() => ({ verdict: allow(), cacheable: true }));
    assert.equal((await cache.get('k', c.call)).result, 'miss');
    t.advance(999);
    assert.equal((await cache.get('k', c.call)).result, 'hit');
    assert.equal(c.calls, 1);
    t.advance(1);
    assert.equal((await cache.get('k', c.call)).result, 'miss');
    assert.equal(c.calls, 2);
  });

  test('deny, drop and fallback are kept for negative_ttl, and not at all when it is 0', async () => {
    for (const v of [deny(), { ...allow(), dr: true }, { ...allow(), fb: true }]) {
      const t = clock();
      const cache = new VerdictCache<string>(settings({ ttl: 60_000, negative_ttl: 500 }), t.now);
      const c = counter(() => ({ verdict: v, cacheable: true }));
      await cache.get('k', c.call);
      t.advance(499);
      assert.equal((await cache.get('k', c.call)).result, 'hit');
      t.advance(1);
      await cache.get('k', c.call);
      assert.equal(c.calls, 2);
      const none = new VerdictCache<string>(settings({ ttl: 60_000 }), t.now);
      await none.get('k', c.call);
      await none.get('k', c.call);
      assert.equal(c.calls, 4);
    }
  });

  test('speed limits and rewrites cache like any allow; failures and verdicts marked not cacheable never', async () => {
    const t = clock();
    const cache = new VerdictCache<string>(settings(), t.now);
    const rich = { ...allow(), sp: { dl: 1, ul: 2, gk: 'g' }, rp: '/x', cq: true };
    await cache.get('a', async () => ({ verdict: rich, cacheable: true }));
    assert.equal((await cache.get('a', async () => assert.fail('no call'))).verdict, rich);
    const c = counter(() => ({ failure: 'down' }));
    assert.deepEqual(await cache.get('b', c.call), { failure: 'down', result: 'miss' });
    await cache.get('b', c.call);
    assert.equal(c.calls, 2);
    const nc = counter(() => ({ verdict: allow(), cacheable: false }));
    await cache.get('c', nc.call);
    await cache.get('c', nc.call);
    assert.equal(nc.calls, 2);
    const e = counter(() => ({ verdict: { ...deny(503), e: 'plugin "x": timed out' }, cacheable: true }));
    const neg = new VerdictCache<string>(settings({ negative_ttl: 60_000 }), t.now);
    await neg.get('d', e.call);
    await neg.get('d', e.call);
    assert.equal(e.calls, 2, 'a failure verdict is never stored');
    assert.equal(cache.size, 1);
  });

  test('a failed call gets the expired verdict within stale_if_error, the failure after it', async () => {
    const t = clock();
    const cache = new VerdictCache<string>(settings({ ttl: 1000, stale_if_error: 5000 }), t.now);
    const ok = allow({ 'X-User': 'alice' });
    await cache.get('k', async () => ({ verdict: ok, cacheable: true }));
    const down = counter(() => ({ failure: 'crashed' }));
    t.advance(1000);
    assert.deepEqual(await cache.get('k', down.call), { verdict: ok, result: 'stale' });
    t.advance(4999);
    assert.deepEqual(await cache.get('k', down.call), { verdict: ok, result: 'stale' });
    assert.equal(down.calls, 2, 'each stale answer tried the plugin first');
    t.advance(1);
    assert.deepEqual(await cache.get('k', down.call), { failure: 'crashed', result: 'miss' });
    assert.equal(cache.size, 0, 'a verdict past its stale window is forgotten');
  });

  test('a newer answer replaces the old one, so a stale allow never outlives a deny', async () => {
    const t = clock();
    const cache = new VerdictCache<string>(settings({ ttl: 1000, stale_if_error: 60_000 }), t.now);
    await cache.get('k', async () => ({ verdict: allow(), cacheable: true }));
    t.advance(1000);
    await cache.get('k', async () => ({ verdict: deny(), cacheable: true }));
    assert.deepEqual(await cache.get('k', async () => ({ failure: 'down' })), { failure: 'down', result: 'miss' });
  });

  test('concurrent misses on one key make one call, and every waiter gets its verdict', async () => {
    const cache = new VerdictCache<string>(settings(), clock().now);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const call = async (): Promise<Fresh<string>> => {
      calls++;
      await gate;
      return { verdict: allow(), cacheable: true };
    };
    const all = Array.from({ length: 100 }, () => cache.get('k', call));
    release();
    const got = await Promise.all(all);
    assert.equal(calls, 1);
    assert.ok(got.every((g) => g.verdict?.ok));
    const failing = new VerdictCache<string>(settings(), clock().now);
    let fcalls = 0;
    const failed = await Promise.all(Array.from({ length: 10 }, () => failing.get('k', async () => (fcalls++, { failure: 'x' }))));
    assert.equal(fcalls, 1);
    assert.ok(failed.every((f) => f.failure === 'x'));
  });

  test('a flood of distinct keys keeps at most max_entries, dropping the least recently used', async () => {
    const cache = new VerdictCache<string>(settings({ max_entries: 3 }), clock().now);
    const put = (k: string) => cache.get(k, async () => ({ verdict: allow(), cacheable: true }));
    await put('a');
    await put('b');
    await put('c');
    await cache.get('a', async () => assert.fail('a is cached'));
    await put('d');
    assert.equal(cache.size, 3);
    assert.equal((await cache.get('a', async () => assert.fail('a was used recently'))).result, 'hit');
    assert.equal((await put('b')).result, 'miss', 'b was the least recently used');
    for (let i = 0; i < 10_000; i++) await put(`flood-${i}`);
    assert.equal(cache.size, 3);
  });
});

describe('merged settings and CachedHooks (the edge)', () => {
  test('a route caches only when every binding does: shortest TTLs, union of keys', () => {
    const a = settings({ ttl: 30_000, negative_ttl: 5000, stale_if_error: 60_000, key: ['header:Authorization'], max_entries: 10 });
    const b = settings({ ttl: 10_000, negative_ttl: 8000, stale_if_error: 1000, key: ['path', 'header:Authorization'], max_entries: 99 });
    assert.deepEqual(mergeCacheSettings([a, b]), { ttl: 10_000, negative_ttl: 5000, stale_if_error: 1000, key: ['header:Authorization', 'path'], max_entries: 10 });
    assert.equal(mergeCacheSettings([a, undefined]), null);
    assert.equal(mergeCacheSettings([]), null);
    assert.equal(mergeCacheSettings([a, settings({ key: null })])?.key, null, 'everything wins');
    assert.equal(mergeCacheSettings([settings({ ttl: 1000 }), settings({ ttl: 0, negative_ttl: 1000 })]), null, 'nothing is cached in both kinds');
  });

  /** A HookClient whose verdicts the test picks, counting on_request calls. */
  function inner(next: () => AuthorizeResult) {
    const h = {
      calls: 0,
      hooksOf: () => 1,
      wantsBody: () => false,
      onRequest: async () => (h.calls++, next()),
      onResponse: async () => ({ s: 0, h: {}, rm: [], e: '', b: '' }),
      onConnect: async () => ({ ok: true, e: '', s: 0, b: '' }),
      onDisconnect: () => {},
    };
    return h satisfies HookClient;
  }

  test('hits skip the inner client, failures fall back to stale verdicts, a new generation starts empty', async () => {
    const t = clock();
    let verdict = allow();
    const h = inner(() => verdict);
    let generation = 'g1';
    const hooks = new CachedHooks(h, (id) => (id === 'api' ? { settings: settings({ ttl: 1000, stale_if_error: 1000 }), generation, withBody: false } : null), t.now);
    await hooks.onRequest('api', info());
    await hooks.onRequest('api', info());
    assert.equal(h.calls, 1);
    await hooks.onRequest('api', info({ h: { Authorization: 'Bearer other' } }));
    assert.equal(h.calls, 2, 'another key');
    await hooks.onRequest('open', info());
    await hooks.onRequest('open', info());
    assert.equal(h.calls, 4, 'a route without cache settings is not cached');

    t.advance(1000);
    verdict = { ...deny(503), e: 'no runner answered' };
    assert.equal((await hooks.onRequest('api', info())).ok, true, 'stale within stale_if_error');
    t.advance(1000);
    assert.equal((await hooks.onRequest('api', info())).e, 'no runner answered', 'the failure after it');

    verdict = allow();
    await hooks.onRequest('api', info());
    const before = h.calls;
    generation = 'g2';
    await hooks.onRequest('api', info());
    assert.equal(h.calls, before + 1, 'a new generation does not read the old entries');
    verdict = { ...allow(), nc: true };
    t.advance(1000);
    await hooks.onRequest('api', info());
    await hooks.onRequest('api', info());
    assert.equal(h.calls, before + 3, 'a verdict marked nc is not stored');
    hooks.retain(new Set());
    assert.equal(hooks.sizeOf('api'), 0);
  });
});

test('the edge reads cache settings from the state snapshot, and leaves out an entry that does not hold together', () => {
  const good = { ttl: 1000, negative_ttl: 0, stale_if_error: 0, key: null, max_entries: 5, generation: 'g' };
  const edge = edgeStateOf({
    version: 'v1',
    config: { routes: [{ id: 'a', action: STATIC }], actions: {} },
    cache: { a: good, b: { ...good, ttl: -1 }, c: { ...good, key: [1] }, d: { ...good, generation: 3 }, e: null, f: { ...good, max_entries: 0 } },
  });
  assert.deepEqual([...edge.cache.entries()], [['a', good]]);
  assert.equal(edgeStateOf({ version: 'v', config: { routes: [], actions: {} } }).cache.size, 0, 'an older runner sends none');
});

test('nc travels in a result frame when set, and a decoded verdict has no nc key otherwise', () => {
  assert.equal(decodeHookResult('on_request', encodeHookResult('on_request', { ...allow(), nc: true })).nc, true);
  assert.ok(!('nc' in decodeHookResult('on_request', encodeHookResult('on_request', allow()))));
});
