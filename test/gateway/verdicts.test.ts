/**
 * Every field of a plugin's verdict, as a client and an upstream observe
 * it through the gateway: allow with headers, deny, drop, fallback, path
 * rewrite, query cleaning, speed limits; on_response status and header
 * changes; verdicts that try to set headers a plugin may not set
 * (hop-by-hop, Host, Content-Length, CR/LF) or rewrite to something that is
 * not a path, which are the plugin's error; what plugins are told; several
 * plugins on one route; plugins that time out or fail.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { request, sleep } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { scope, suiteScope } from '../helpers/scope.ts';
import { patternFacts, patternStream, startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;

before(async () => {
  up = await startUpstream(files, { name: 'app' });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'strict', match: { path: '/v/*' }, plugins: ['fx'], action: 'app' },
        { id: 'lenient', match: { path: '/lenient/*' }, plugins: [{ plugin: 'fx', on_error: 'allow' }], action: 'app' },
        { id: 'no-fallback', match: { path: '/nofb/*' }, plugins: ['fx'], action: { type: 'proxy', upstream: up.url } },
        { id: 'chain', match: { path: '/chain/*' }, plugins: ['first', 'second'], action: 'app' },
        { id: 'hurry', match: { path: '/hurry/*' }, plugin_timeout: '300ms', plugins: ['fx'], action: 'app' },
        {
          id: 'facts',
          match: { domain: '*.facts.test', path: '/facts/:item' },
          set: { tier: 'gold' },
          plugins: ['fx'],
          balancer: { targets: [up.target] },
          action: { type: 'proxy', upstream: 'http://{target}' },
        },
      ],
      actions: {
        app: { type: 'proxy', upstream: up.url, fallback: 'sorry' },
        sorry: { type: 'static', status: 200, body: 'fallback page\n', headers: { 'X-Fallback': 'yes' } },
      },
      plugins: {
        fx: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request,on_response' } },
        first: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'first', FIXTURE_HOOKS: 'on_request' } },
        second: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'second', FIXTURE_HOOKS: 'on_request' } },
      },
    }),
  );
  await whenReady(gw);
});

/** A request through the gateway whose plugin verdict is `verdict`. */
const via = (path: string, verdict: string, more: Record<string, string> = {}) =>
  request(`${gw.url}${path}`, { headers: { 'x-test-verdict': verdict, ...more } });
const reached = (path: string) => up.received.filter((r) => r.url.split('?')[0] === path);

describe('on_request verdicts', { concurrency: true, timeout: 60_000 }, () => {
  test('allow with headers: the upstream sees the added headers', async () => {
    const res = await via('/v/allow', 'header:X-Tenant=acme;header:X-Role=admin');
    assert.equal(res.status, 200);
    const seen = res.json().headers;
    assert.equal(seen['x-tenant'], 'acme');
    assert.equal(seen['x-role'], 'admin');
    assert.equal(seen['x-plugin-name'], 'fx');
  });

  test('deny: the client gets the plugin status, body and headers; the upstream is not asked', async () => {
    const res = await via('/v/deny', 'deny:418');
    assert.equal(res.status, 418);
    assert.equal(res.text, 'denied by fixture\n');
    assert.equal(res.headers['x-denied-by'], 'fixture');
    assert.equal(res.headers['x-plugin-pid'], undefined, 'on_response is not called for a denied request');
    assert.equal(reached('/v/deny').length, 0);
  });

  test('deny without a status answers 403', async () => {
    const res = await via('/v/deny-default', 'deny:0');
    assert.equal(res.status, 403);
    assert.equal(res.text, 'denied by fixture\n');
  });

  test('drop: the connection is closed without any response', async () => {
    await assert.rejects(via('/v/drop', 'drop'), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ECONNRESET', `expected the connection to be reset, got ${err.code}: ${err.message}`);
      return true;
    });
    assert.equal(reached('/v/drop').length, 0);
  });

  test("fallback: the action's fallback is served instead of the upstream", async () => {
    const res = await via('/v/fb', 'fallback');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'fallback page\n');
    assert.equal(res.headers['x-fallback'], 'yes');
    assert.equal(reached('/v/fb').length, 0);
  });

  test('fallback on an action without one answers 503', async () => {
    const res = await via('/nofb/fb', 'fallback');
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
    assert.equal(reached('/nofb/fb').length, 0);
  });

  test('rewrite path: the upstream sees the new path with the original query', async () => {
    const res = await via('/v/public/page?lang=en', 'rewrite:/internal/page-v2');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/internal/page-v2?lang=en');
  });

  test('clean query: the upstream sees the path without the query string', async () => {
    const res = await via('/v/search?q=secret&utm_source=x', 'cleanquery');
    assert.equal(res.json().url, '/v/search');
  });

  test('rewrite and clean query combine', async () => {
    const res = await via('/v/a?b=c', 'rewrite:/z;cleanquery');
    assert.equal(res.json().url, '/z');
  });

  test('a download speed limit of 1 Mbps paces a 300 KB response (takes at least ~1.5 s) and keeps it intact', async () => {
    const size = 300_000;
    const expected = await patternFacts(size, 7);
    const started = performance.now();
    const res = await request(`${gw.url}/v/slow-down`, { headers: { 'x-test-verdict': 'speed:1', 'x-up-size': String(size) } });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 200);
    assert.equal(res.bodySha256, expected.sha256);
    assert.ok(elapsed >= 1500, `300 KB at 1 Mbps took only ${Math.round(elapsed)} ms`);
  });

  test(
    'a speed-limited response without Content-Type reaches the client without one',
    {
    },
    async () => {
      const res = await request(`${gw.url}/v/untyped`, { headers: { 'x-test-verdict': 'speed:100', 'x-up-size': '1000', 'x-up-untyped': '1' } });
      assert.equal(res.status, 200);
      assert.equal(res.bodyBytes, 1000);
      assert.equal(res.headers['content-type'], undefined, `the client got content-type ${res.headers['content-type']}`);
    },
  );

  test('an upload speed limit of 1 Mbps paces a 300 KB request body (takes at least ~1.5 s) and keeps it intact', async () => {
    const size = 300_000;
    const expected = await patternFacts(size, 5);
    const started = performance.now();
    const res = await request(`${gw.url}/v/slow-up`, { method: 'POST', headers: { 'x-test-verdict': 'upspeed:1' }, body: patternStream(size, 5) });
    assert.equal(res.status, 200);
    const [rec] = reached('/v/slow-up');
    assert.equal(rec.bodySha256, expected.sha256);
    const elapsed = rec.endedAt - started;
    assert.ok(elapsed >= 1500, `the upstream had 300 KB after only ${Math.round(elapsed)} ms at 1 Mbps`);
  });
});

describe('on_response', { concurrency: true, timeout: 60_000 }, () => {
  test('the plugin changes the status', async () => {
    const res = await request(`${gw.url}/v/status`, { headers: { 'x-test-response': 'status:299' } });
    assert.equal(res.status, 299);
    assert.equal(res.json().upstream, 'app', 'the body is the upstream body');
  });

  test('the plugin sets and removes response headers', async () => {
    const res = await request(`${gw.url}/v/headers`, {
      headers: { 'x-test-response': 'set:X-Added=1;set:Cache-Control=no-store;remove:X-Served-By', 'x-up-headers': '{"Cache-Control":"max-age=60"}' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-added'], '1');
    assert.equal(res.headers['cache-control'], 'no-store', 'a set header replaces the upstream value');
    assert.equal(res.headers['x-served-by'], undefined);
    assert.equal(res.headers['x-plugin-name'], 'fx');
  });
});

describe('forbidden verdicts (headers a plugin may not set, rewrites that are not paths) are the plugin error', { concurrency: true, timeout: 60_000 }, () => {
  const forbidden: Array<[string, string]> = [
    ['Host', 'header:Host=evil.example'],
    ['Content-Length', 'header:Content-Length=5'],
    ['Keep-Alive (hop-by-hop)', 'hopbyhop'],
    ['Connection (hop-by-hop)', 'header:Connection=close'],
    ['Transfer-Encoding (hop-by-hop)', 'header:Transfer-Encoding=chunked'],
    ['TE (hop-by-hop)', 'header:Te=trailers'],
    ['Upgrade (hop-by-hop)', 'header:Upgrade=h2c'],
    ['a value with CR/LF', 'crlf'],
    ['a name that is not a token', 'header:Bad Name=1'],
    ['a rewrite to another host', 'rewrite://evil.example/x'],
    ['a rewrite that is not a path', 'rewrite:http://evil.example/x'],
  ];
  forbidden.forEach(([what, verdict], i) => {
    test(`${what}: 503 by default (on_error deny)`, async () => {
      const path = `/v/forbidden-${i}`;
      const res = await via(path, verdict);
      assert.equal(res.status, 503);
      assert.equal(res.text, 'service unavailable\n');
      assert.equal(reached(path).length, 0);
    });

    test(`${what}: with on_error "allow" the request passes without the plugin's verdict`, async () => {
      const path = `/lenient/forbidden-${i}`;
      const res = await via(path, `${verdict};header:X-Also=1`);
      assert.equal(res.status, 200);
      assert.equal(res.json().url, path, 'the path is not rewritten');
      const seen = res.json().headers;
      assert.equal(seen.host, new URL(gw.url).host, 'Host is the one the client sent');
      assert.equal(seen['x-also'], undefined, 'no header of the refused verdict was applied');
      assert.equal(seen['x-plugin-name'], undefined);
      assert.equal(seen['x-evil'], undefined);
      assert.equal(seen['injected'], undefined);
      assert.notEqual(seen['content-length'], '5');
    });
  });

  test('on_response setting a forbidden header: with on_error "allow" the upstream response passes unchanged', async () => {
    const res = await request(`${gw.url}/lenient/resp-forbidden`, { headers: { 'x-test-response': 'set:Transfer-Encoding=gzip;set:X-Added=1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-added'], undefined);
    assert.equal(res.json().upstream, 'app');
  });
});

describe('what plugins are told', { concurrency: true, timeout: 60_000 }, () => {
  test('on_request gets the route, method, path, raw query, domain, Host, protocol, remote address, length, matched patterns and variables', async () => {
    const res = await request(`${gw.url}/facts/box?x=1&y=%20`, {
      method: 'POST',
      headers: { host: 'EU.Facts.test:8080', 'x-test-verdict': 'info', 'content-type': 'text/plain' },
      body: 'hello',
    });
    assert.equal(res.status, 200);
    const info = JSON.parse(String(res.json().headers['x-seen-info'])) as Record<string, unknown>;
    assert.match(String(info.a), /^127\.0\.0\.1:\d+$/);
    delete info.a;
    delete info.tg;
    assert.deepEqual(info, {
      r: 'facts',
      m: 'POST',
      p: '/facts/box',
      q: 'x=1&y=%20',
      d: 'eu.facts.test',
      ho: 'EU.Facts.test:8080',
      pr: 'HTTP/1.1',
      cl: 5,
      md: '*.facts.test',
      mg: 'eu',
      mp: '/facts/:item',
      v: { tier: 'gold', item: 'box' },
    });
  });

  test('on_response gets the selected target and the upstream status', async () => {
    const res = await request(`${gw.url}/facts/box`, { headers: { host: 'us.facts.test', 'x-test-response': 'info', 'x-up-status': '201' } });
    assert.equal(res.status, 201);
    assert.equal(res.headers['x-seen-target'], up.target);
    assert.equal(res.headers['x-seen-status'], '201');
  });
});

describe('several plugins on one route', { concurrency: true, timeout: 60_000 }, () => {
  test('run in order: headers merge and the second plugin sees what the first added', async () => {
    const res = await via('/chain/a', 'header:X-From-First=1@first;saw:X-From-First@second;header:X-Shared=one@first;header:X-Shared=two@second');
    assert.equal(res.status, 200);
    const seen = res.json().headers;
    assert.equal(seen['x-from-first'], '1');
    assert.equal(seen['x-saw-x-from-first'], '1', 'the second plugin saw the header the first added');
    assert.equal(seen['x-shared'], 'two', 'a later plugin overrides an earlier one');
  });

  test('the first deny wins; a deny from a later plugin still denies', async () => {
    const both = await via('/chain/b', 'deny:418@first;deny:429@second');
    assert.equal(both.status, 418);
    const second = await via('/chain/c', 'deny:429@second');
    assert.equal(second.status, 429);
    assert.equal(reached('/chain/b').length + reached('/chain/c').length, 0);
  });

  test('a rewrite takes the last non-empty value and query cleaning sticks', async () => {
    const res = await via('/chain/d?secret=1', 'rewrite:/from-first@first;cleanquery@first;rewrite:/from-second@second');
    assert.equal(res.json().url, '/from-second');
  });
});

describe('failing plugins get on_error', { concurrency: true, timeout: 60_000 }, () => {
  test('a plugin slower than the route plugin_timeout: 503, not before the timeout', async () => {
    const started = performance.now();
    const res = await via('/hurry/x', 'sleep:3000');
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
    assert.ok(performance.now() - started >= 250);
    assert.equal(reached('/hurry/x').length, 0);
  });

  test('a plugin whose handler throws: 503 with on_error deny, passes with on_error allow', async () => {
    assert.equal((await via('/v/throws', 'throw')).status, 503);
    assert.equal((await via('/lenient/throws', 'throw')).status, 200);
  });
});

test(
  'an on_response that fails (a forbidden header) answers 503 by default, and the gateway keeps serving',
  {
    timeout: 60_000,
  },
  async (t) => {
    // A gateway of its own: when this bug strikes, the process is gone.
    const s = scope(t);
    const upstream = await startUpstream(s);
    const own = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'r', plugins: ['fx'], action: { type: 'proxy', upstream: upstream.url } }],
        plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request,on_response' } } },
      }),
    );
    await whenReady(own);
    const res = await request(`${own.url}/resp-forbidden`, { headers: { 'x-test-response': 'set:Content-Length=1' } });
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
    await sleep(200);
    assert.equal((await request(`${own.url}/next`)).status, 200, 'the gateway still serves after a failing on_response');
  },
);
