/**
 * Requests crafted to get past a route's plugins, or to make plugins and
 * upstreams disagree about who the client is, sent byte for byte to a real
 * `hookgate serve`, and the safe answer each now gets:
 *
 * * paths the upstream reads differently from the route (`/%61dmin`,
 *   `//admin`, `/admin;/x`, `/admin%2Fx`, `/public/..%2Fapi`, `..;`): the
 *   guard runs, or 400; the upstream sees exactly the path the plugins saw;
 * * Host headers that name two hosts: 400;
 * * Upgrade requests that are not WebSocket, and WebSocket upgrades the
 *   upstream does not accept: a normal response, through on_response;
 * * header names in another case in chained plugins, plugin-call's --data;
 * * group keys from the client instead of the plugin; unknown groups;
 * * identity headers from the client when the plugin is down; `rm`;
 * * an on_response status of 1xx;
 * * and what already held (framing, header size) still holds.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { parseRaw, rawExchange, rawRequest, request, upgradeAnswer } from '../helpers/http.ts';
import { AUTH_TS, PUSH_TARGETS_SH, VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, runCli, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;
let tenantA: Upstream;
let tenantB: Upstream;

const proxied = (id: string, match: Record<string, unknown>, more: Record<string, unknown> = {}) => ({ id, match, action: 'app', ...more });

before(async () => {
  [up, tenantA, tenantB] = await Promise.all([startUpstream(files, { name: 'app' }), startUpstream(files, { name: 'tenant-a' }), startUpstream(files, { name: 'tenant-b' })]);
  const tenants = { type: 'proxy', upstream: 'http://{target}' };
  gw = await startGateway(
    files,
    baseConfig({
      gateway: { listen: '127.0.0.1:0', strip_request_headers: ['X-Internal-Auth'] },
      routes: [
        proxied('admin-host', { domain: 'admin.example.com' }, { plugins: ['guard'] }),
        proxied('admin', { path: '/admin/*' }, { plugins: ['guard'] }),
        proxied('api', { path: '/api/*' }, { plugins: ['guard'] }),
        proxied('caseless', { path: '/caseless/*', case_insensitive: true }, { plugins: ['guard'] }),
        proxied('files', { path: '/files/*', allow_encoded_slash: true }),
        proxied('public', { path: '/public/*' }, { plugins: ['fx'] }),
        proxied('lenient', { path: '/lenient/*' }, { plugins: [{ plugin: 'fx', on_error: 'allow' }] }),
        proxied('chain', { path: '/chain/*' }, { plugins: ['first', 'second'] }),
        proxied('identity', { path: '/identity/*' }, { plugins: [{ plugin: 'down', on_error: 'allow' }], strip_request_headers: ['X-User'] }),
        proxied('open', { path: '/open/*' }, { plugins: [{ plugin: 'down', on_error: 'allow' }] }),
        { id: 'tenants', match: { path: '/tenants/*' }, plugins: ['fx'], balancer: { group_by: 'header:X-Tenant' }, action: tenants },
        { id: 'tenants-all', match: { path: '/tenants-all/*' }, plugins: ['fx'], balancer: { group_by: 'header:X-Tenant', unknown_group: 'all' }, action: tenants },
        { id: 'rest', action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: {
        guard: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
        fx: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request,on_response' } },
        first: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'first', FIXTURE_HOOKS: 'on_request' } },
        second: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'second', FIXTURE_HOOKS: 'on_request' } },
        // An attached plugin whose socket never exists: down for good.
        down: { attach: { socket: '/nonexistent/hookgate-down.sock', hooks: ['on_request'] } },
        pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: '*', PUSH_GROUPS: `a=${tenantA.target};b=${tenantB.target}` } },
      },
    }),
  );
  await gw.waitForLog('set_targets applied');
  await waitReadyExceptDown();
});

/** /readyz is 503 while `down` is down; wait for every other plugin instead. */
async function waitReadyExceptDown(): Promise<void> {
  const { waitFor } = await import('../helpers/http.ts');
  const { readyz } = await import('../helpers/processes.ts');
  await waitFor(async () => (await readyz(gw)).body.plugins.filter((p) => p.name !== 'down').every((p) => p.ready), { timeoutMs: 20_000, what: 'the plugins to be ready' });
}

/** `method target` written byte for byte to the gateway, with `headers` lines. */
const raw = (target: string, headers: string[] = [], method = 'GET', body = '') => rawExchange(gw.url, target, { headers, method, body });


const reachedUpstream = (u: Upstream, marker: string) => u.received.filter((r) => r.url.includes(marker));

describe('paths are normalised once, before routing', { concurrency: true, timeout: 60_000 }, () => {
  for (const attack of ['/%61dmin/users-a1', '/%61%64%6d%69%6e/users-a1b', '//admin/users-a2', '/admin;/users-a3', '/admin;x=1/users-a4', '/;x/admin/users-a5', '/public/../admin/users-a6', '/public/%2e%2e/admin/users-a7']) {
    test(`${attack} reaches the /admin/* route, whose guard denies it`, async () => {
      const res = await raw(attack);
      assert.equal(res.status, 401, res.body);
      assert.equal(res.body, 'unauthorized\n');
      assert.equal(reachedUpstream(up, attack.slice(-9)).length, 0);
    });
  }

  for (const [attack, why] of [
    ['/admin%2Fusers-b1', 'encoded "/" in the path is not allowed on this route'],
    ['/admin%2fusers-b2', 'encoded "/" in the path is not allowed on this route'],
    ['/admin%5Cusers-b3', 'encoded "/" in the path is not allowed on this route'],
    ['/public/..%2Fapi/me-b4', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/files/..%2F..%2Fadmin-b5', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/public/..;/admin/users-b6', 'dot segment with ";" parameters in the path'],
    ['/public/a%zz-b7', 'malformed percent-escape in the path'],
    ['/public/a%00-b8', 'encoded NUL in the path'],
  ] as const) {
    test(`${attack} is refused with 400 (${why})`, async () => {
      const res = await raw(attack);
      assert.equal(res.status, 400, res.body);
      assert.equal(res.body, `bad request: ${why}\n`);
      assert.match(res.header('content-type')[0] ?? '', /^text\/plain/);
      assert.equal(reachedUpstream(up, attack.slice(-3)).length, 0);
    });
  }

  test('a raw "\\" in the path is refused with 400', async () => {
    const res = await raw('/public/a\\b-b9');
    assert.equal(res.status, 400);
    assert.equal(reachedUpstream(up, '-b9').length, 0);
  });

  test('the upstream gets exactly the normal path the route and the plugin saw (the query as sent)', async () => {
    const res = await raw('/public/%7euser/./a//b/%2e/c%3f;v=1/../d?x=%2e%2e&y=a//b', ['X-Test-Verdict: info']);
    assert.equal(res.status, 200, res.body);
    const seen = res.echo();
    assert.equal(seen.url, '/public/~user/a/b/d?x=%2e%2e&y=a//b');
    const info = JSON.parse(String(seen.headers['x-seen-info'])) as { p: string; q: string; mp: string };
    assert.equal(info.p, '/public/~user/a/b/d');
    assert.equal(info.q, 'x=%2e%2e&y=a//b');
    assert.equal(info.mp, '/public/*');
  });

  test('";" parameters stay in the path the plugin and the upstream see', async () => {
    const res = await raw('/public;jsessionid=1/cart-c1', ['X-Test-Verdict: info']);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.echo().url, '/public;jsessionid=1/cart-c1');
    assert.equal((JSON.parse(String(res.echo().headers['x-seen-info'])) as { mp: string }).mp, '/public/*');
  });

  test('a route with allow_encoded_slash passes %2F through, encoded, with upper-case hex', async () => {
    const res = await raw('/files/a%2fb%2Fc-c2');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.echo().url, '/files/a%2Fb%2Fc-c2');
  });

  test('paths are case-sensitive by default; a case_insensitive route runs its guard for /CASELESS too', async () => {
    const upper = await raw('/ADMIN/users-c3');
    assert.equal(upper.status, 200, 'a case-sensitive /admin/* does not take /ADMIN (the catch-all serves it)');
    assert.equal(upper.echo().url, '/ADMIN/users-c3');
    for (const p of ['/caseless/x-c4', '/CASELESS/x-c4', '/CaseLess/x-c4']) assert.equal((await raw(p)).status, 401, p);
    assert.equal(reachedUpstream(up, 'x-c4').length, 0);
  });

  test('an absolute-form target naming another host than Host is refused', async () => {
    const res = await raw('http://admin.example.com/x-c5', ['Host: www.example.com']);
    assert.equal(res.status, 400);
    assert.equal(res.body, 'bad request: the request target names another host than the Host header\n');
    const same = await raw('http://admin.example.com/x-c6', ['Host: admin.example.com']);
    assert.equal(same.status, 401, 'the same host routes as usual');
  });
});

describe('Host headers', { concurrency: true, timeout: 60_000 }, () => {
  test('a second Host header is refused with 400', async () => {
    const res = await raw('/h1', ['Host: www.example.com', 'Host: admin.example.com']);
    assert.equal(res.status, 400);
    assert.equal(res.body, 'bad request: more than one Host header\n');
    const flipped = await raw('/h1b', ['Host: admin.example.com', 'Host: www.example.com']);
    assert.equal(flipped.status, 400);
    assert.equal(reachedUpstream(up, '/h1').length, 0);
  });

  test('a comma-joined Host is refused with 400', async () => {
    const res = await raw('/h2', ['Host: admin.example.com,x.example.com']);
    assert.equal(res.status, 400);
    assert.equal(res.body, 'bad request: the Host header is not a host name with an optional port\n');
    assert.equal(reachedUpstream(up, '/h2').length, 0);
  });

  test('userinfo or junk in Host is refused; case, port and a trailing dot still route', async () => {
    assert.equal((await raw('/h3', ['Host: user@admin.example.com'])).status, 400);
    assert.equal((await raw('/h3', ['Host: admin.example.com/x'])).status, 400);
    assert.equal((await raw('/h4', ['Host: ADMIN.Example.com.:8443'])).status, 401, 'the admin host route and its guard');
  });
});

describe('Upgrade requests', { concurrency: true, timeout: 60_000 }, () => {
  const internal = 'X-Up-Headers: {"X-Internal":"secret"}';

  test('GET with Upgrade: foo is a normal request: on_response runs, framing is the gateway\'s', async () => {
    const res = await raw('/public/u1', ['Connection: Upgrade', 'Upgrade: foo', internal, 'X-Test-Response: remove:X-Internal']);
    assert.equal(res.status, 200);
    assert.deepEqual(res.header('x-internal'), [], 'the on_response plugin removed it');
    assert.deepEqual(res.header('x-plugin-name'), ['fx']);
    assert.ok(!(res.header('transfer-encoding').length && res.header('content-length').length), 'never both Transfer-Encoding and Content-Length');
    const seen = res.echo();
    assert.equal(seen.method, 'GET');
    assert.equal(seen.headers.upgrade, undefined, 'Upgrade is hop-by-hop');
    assert.doesNotMatch(String(seen.headers.connection ?? ''), /upgrade/i);
  });

  test('POST with Upgrade: h2c keeps its method and body, and is not tunnelled', async () => {
    const res = await raw('/public/u2', ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQAAP__'], 'POST', 'hello body');
    assert.equal(res.status, 200, res.body);
    const seen = res.echo();
    assert.equal(seen.method, 'POST');
    assert.equal(seen.bodyBytes, 10);
    assert.equal(seen.headers.upgrade, undefined);
    assert.equal(seen.headers['http2-settings'], undefined, 'named in Connection, so hop-by-hop');
  });

  test('a WebSocket upgrade the upstream answers without 101 goes through on_response', async () => {
    const res = await raw('/public/u3', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==', internal, 'X-Test-Response: remove:X-Internal']);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.header('x-internal'), []);
    assert.deepEqual(res.header('x-plugin-name'), ['fx']);
  });

  test('a WebSocket upgrade on a route without a WebSocket upstream still gets the guard', async () => {
    const res = await upgradeAnswer(`${gw.url}/admin/u4`);
    assert.equal(res.status, 401);
  });
});

describe('plugins see canonical headers', { concurrency: true, timeout: 60_000 }, () => {
  test("a plugin's x-user replaces the client's X-User for the next plugin and the upstream", async () => {
    const res = await request(`${gw.url}/chain/p1`, { headers: { 'X-User': 'admin', 'x-test-verdict': 'header:x-user=alice@first;saw:X-User@second' } });
    assert.equal(res.status, 200, res.text);
    const seen = res.json();
    assert.equal(seen.headers['x-saw-x-user'], 'alice', 'the second plugin saw only the first plugin\'s value');
    assert.equal(seen.headers['x-user'], 'alice');
  });

  test('plugin-call --data passes header names canonical', async () => {
    const out = await runCli(['plugin-call', AUTH_TS, '--data', '{"m":"GET","p":"/","h":{"authorization":"Bearer tok-alice"}}', '--env', 'HOOKGATE_AUTH_TOKENS=tok-alice:alice']);
    assert.equal(out.code, 0, out.stderr);
    const reply = JSON.parse(out.stdout) as { ok?: boolean; h?: Record<string, string> };
    assert.equal(reply.ok, true, out.stdout);
    assert.deepEqual(reply.h, { 'X-User': 'alice' });
  });
});

describe('group keys', { concurrency: true, timeout: 60_000 }, () => {
  test("the plugin's X-Tenant wins over the client's", async () => {
    const res = await request(`${gw.url}/tenants/g1`, { headers: { 'X-Tenant': 'b', 'x-test-verdict': 'header:X-Tenant=a' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().upstream, 'tenant-a');
    assert.equal(res.json().headers['x-tenant'], 'a');
  });

  test("the client's key counts only where no plugin set one", async () => {
    const res = await request(`${gw.url}/tenants/g2`, { headers: { 'X-Tenant': 'b' } });
    assert.equal(res.json().upstream, 'tenant-b');
  });

  test('an unknown or absent key is a 503, unless the balancer says unknown_group "all"', async () => {
    const unknown = await request(`${gw.url}/tenants/g3`, { headers: { 'X-Tenant': 'zzz' } });
    assert.equal(unknown.status, 503);
    assert.equal(unknown.text, 'no upstream target available\n');
    assert.equal((await request(`${gw.url}/tenants/g3`)).status, 503);
    const all = await request(`${gw.url}/tenants-all/g3`, { headers: { 'X-Tenant': 'zzz' } });
    assert.equal(all.status, 200);
    assert.ok(['tenant-a', 'tenant-b'].includes(all.json().upstream));
    assert.equal(reachedUpstream(tenantA, '/tenants/g3').length + reachedUpstream(tenantB, '/tenants/g3').length, 0);
  });
});

describe('client identity headers', { concurrency: true, timeout: 60_000 }, () => {
  test('with the plugin down and on_error allow, stripped and underscore headers do not reach the upstream', async () => {
    const res = await raw('/identity/i1', ['X-User: admin', 'x_user: root', 'X-Internal-Auth: yes', 'X-Other: kept']);
    assert.equal(res.status, 200, res.body);
    const seen = res.echo().headers;
    assert.equal(seen['x-user'], undefined, 'route strip_request_headers');
    assert.equal(seen['x_user'], undefined, 'names with "_" are dropped by default');
    assert.equal(seen['x-internal-auth'], undefined, 'gateway strip_request_headers');
    assert.equal(seen['x-other'], 'kept');
  });

  test('plugins do not see stripped headers either', async () => {
    const res = await raw('/public/i2', ['X_User: root', 'X-Internal-Auth: yes', 'X-Test-Verdict: saw:X_user;saw:X-Internal-Auth']);
    const seen = res.echo().headers;
    assert.equal(seen['x-saw-x_user'], '(absent)');
    assert.equal(seen['x-saw-x-internal-auth'], '(absent)');
  });

  test("a verdict's rm removes a request header for later plugins and the upstream; a later h sets it again", async () => {
    const removed = await request(`${gw.url}/chain/i3`, { headers: { 'X-Secret': 'client', 'x-test-verdict': 'rm:x-secret@first;saw:X-Secret@second' } });
    assert.equal(removed.status, 200, removed.text);
    assert.equal(removed.json().headers['x-saw-x-secret'], '(absent)');
    assert.equal(removed.json().headers['x-secret'], undefined);
    const again = await request(`${gw.url}/chain/i4`, { headers: { 'X-Secret': 'client', 'x-test-verdict': 'rm:X-Secret@first;header:X-Secret=plugin@second' } });
    assert.equal(again.json().headers['x-secret'], 'plugin');
  });

  test('a verdict that removes Host or a hop-by-hop header is the plugin\'s error (on_error)', async () => {
    assert.equal((await request(`${gw.url}/public/i5`, { headers: { 'x-test-verdict': 'rm:Host' } })).status, 503);
    assert.equal((await request(`${gw.url}/public/i6`, { headers: { 'x-test-verdict': 'rm:Transfer-Encoding' } })).status, 503);
    assert.equal(reachedUpstream(up, '/public/i5').length + reachedUpstream(up, '/public/i6').length, 0);
  });
});

describe('on_response status', { concurrency: true, timeout: 60_000 }, () => {
  test('a 1xx status from on_response is the plugin\'s error: its on_error verdict, not a 500', async () => {
    const denied = await request(`${gw.url}/public/s1`, { headers: { 'x-test-response': 'status:150' } });
    assert.equal(denied.status, 503);
    assert.equal(denied.text, 'service unavailable\n');
    const allowed = await request(`${gw.url}/lenient/s2`, { headers: { 'x-test-response': 'status:101' } });
    assert.equal(allowed.status, 200, 'on_error allow: the upstream\'s answer');
  });
});

describe('what already held still holds', { concurrency: true, timeout: 60_000 }, () => {
  for (const [what, head] of [
    ['Content-Length with Transfer-Encoding', 'POST /k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two Content-Length headers', 'POST /k2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'],
    ['an obs-folded header', 'GET /k3 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n'],
    ['a Transfer-Encoding that is not chunked last', 'POST /k4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['a bare LF', 'GET /k5 HTTP/1.1\nHost: x\n\n'],
  ] as const) {
    test(`${what} → 400`, async () => {
      const res = parseRaw(await rawRequest(gw.url, head));
      assert.equal(res.status, 400);
    });
  }

  test('headers over 16 KiB → 431', async () => {
    const res = parseRaw(await rawRequest(gw.url, `GET /k6 HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17_000)}\r\nConnection: close\r\n\r\n`));
    assert.equal(res.status, 431);
  });
});
