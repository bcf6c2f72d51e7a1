/**
 * The runtime-neutral rules of `serve` and `drop` (src/core/serve/,
 * src/core/config/config-actions.ts) and the Node plane's decision to drop a
 * TLS connection before its handshake (node-runner/gateway/drop.ts):
 * plain data in, plain data out.
 */

import assert from 'node:assert/strict';
import { problemsOf } from '../helpers/config.ts';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/core/config/config.ts';
import { edgeWarnings } from '../../src/core/config/config-actions.ts';
import { contentTypeOf } from '../../src/core/serve/mime.ts';
import { normalizePath } from '../../src/core/routing/path.ts';
import { etagOf, fileAnswer, servePath } from '../../src/core/serve/serve.ts';
import { GatewayState } from '../../src/core/state/state.ts';
import { dropsBeforeHandshake } from '../../node-runner/gateway/drop.ts';
import { streamProblems } from '../../node-runner/config/stream-policy.ts';


describe('servePath: which file a normal path names', () => {
  /** The normal path first, as the pipeline has it. */
  const of = (raw: string, mp: string) => {
    const p = normalizePath(raw);
    assert.equal(typeof p, 'string', raw);
    return servePath(p as string, mp);
  };

  test('the prefix of the matched pattern is dropped; exact patterns drop everything', () => {
    assert.deepEqual(of('/static/css/app.css', '/static/*')?.segments, ['css', 'app.css']);
    assert.deepEqual(of('/v1/u/42/x.txt', '/v1/u/:id/*')?.segments, ['x.txt']);
    assert.deepEqual(of('/anything/here', '')?.segments, ['anything', 'here']);
    assert.deepEqual(of('/app', '/app'), { segments: [], trailingSlash: false, canAddSlash: false });
    assert.deepEqual(of('/static', '/static/*'), { segments: [], trailingSlash: false, canAddSlash: true });
  });

  test('segments emptied by ";" parameters do not count toward the prefix, as in routing', () => {
    assert.deepEqual(of('/;x/static/a.txt', '/static/*')?.segments, ['a.txt']);
    assert.deepEqual(of('/static;v=1/a.txt', '/static/*')?.segments, ['a.txt']);
  });

  test('names are decoded once', () => {
    assert.deepEqual(of('/s/a%20b.txt', '/s/*')?.segments, ['a b.txt']);
    assert.deepEqual(of('/s/%252e%252e', '/s/*')?.segments, ['%2e%2e']);
    assert.deepEqual(of('/s/caf%C3%A9', '/s/*')?.segments, ['café']);
  });

  test('names that could climb or hide are refused', () => {
    for (const raw of ['/s/a%2Fb', '/s/a%5Cb', '/s/.env', '/s/.git/config', '/s/%FF', '/s/x/.htpasswd']) assert.equal(of(raw, '/s/*'), null, raw);
    assert.deepEqual(of('/s/.well-known/acme-challenge/t', '/s/*')?.segments, ['.well-known', 'acme-challenge', 't']);
  });

  test("a plugin's rewrite names the file below the root as it is", () => {
    assert.deepEqual(servePath('/sub/index.html', '/static/*', true)?.segments, ['sub', 'index.html']);
  });
});

describe('fileAnswer: conditional requests and ranges', () => {
  const file = { size: 10, mtimeMs: Date.parse('2026-01-02T03:04:05.678Z'), name: 'a.txt' };
  const etag = etagOf(file);
  const lm = 'Fri, 02 Jan 2026 03:04:05 GMT';
  const get = (headers: string[], method = 'GET') => fileAnswer(method, headers, file);
  const header = (h: string[], name: string) => h[h.indexOf(name) + 1];

  test('a plain GET: 200, the whole file, validators and type', () => {
    const a = get([]);
    assert.equal(a.status, 200);
    assert.deepEqual(a.body, { start: 0, end: 9 });
    assert.equal(header(a.headers, 'etag'), etag);
    assert.equal(header(a.headers, 'last-modified'), lm);
    assert.equal(header(a.headers, 'content-type'), 'text/plain; charset=utf-8');
    assert.equal(header(a.headers, 'content-length'), '10');
  });

  test('HEAD: the same head, no body; Range is for GET only', () => {
    const a = get(['Range', 'bytes=0-1'], 'HEAD');
    assert.equal(a.status, 200);
    assert.equal(a.body, null);
    assert.equal(header(a.headers, 'content-length'), '10');
  });

  test('preconditions, in the order of RFC 9110', () => {
    assert.equal(get(['If-None-Match', etag]).status, 304);
    assert.equal(get(['If-None-Match', '*']).status, 304);
    assert.equal(get(['If-None-Match', '"x"', 'If-Modified-Since', lm]).status, 200, 'If-None-Match wins over If-Modified-Since');
    assert.equal(get(['If-Modified-Since', lm]).status, 304);
    assert.equal(get(['If-Modified-Since', 'not a date']).status, 200);
    assert.equal(get(['If-Match', `W/${etag}`]).status, 412, 'If-Match compares strongly');
    assert.equal(get(['If-Match', etag]).status, 200);
    assert.equal(get(['If-Unmodified-Since', 'Thu, 01 Jan 2026 00:00:00 GMT']).status, 412);
    const nm = get(['If-None-Match', etag]);
    assert.equal(nm.body, null);
    assert.ok(!nm.headers.includes('content-length'));
  });

  test('ranges: one range, suffix, open end, clamped end', () => {
    const r = (v: string) => get(['Range', v]);
    assert.deepEqual([r('bytes=2-5').status, r('bytes=2-5').body], [206, { start: 2, end: 5 }]);
    assert.deepEqual(r('bytes=-3').body, { start: 7, end: 9 });
    assert.deepEqual(r('bytes=-30').body, { start: 0, end: 9 });
    assert.deepEqual(r('bytes=8-').body, { start: 8, end: 9 });
    assert.deepEqual(r('bytes=8-100').body, { start: 8, end: 9 });
    assert.equal(header(r('bytes=8-100').headers, 'content-range'), 'bytes 8-9/10');
  });

  test('ranges that cannot be satisfied: 416; ranges that do not parse or are several: 200', () => {
    const r = (v: string) => get(['Range', v]);
    assert.equal(r('bytes=10-').status, 416);
    assert.equal(r('bytes=-0').status, 416);
    assert.equal(header(r('bytes=10-').headers, 'content-range'), 'bytes */10');
    for (const v of ['bytes=0-1,3-4', 'items=0-1', 'bytes=5-2', 'bytes=x-y', 'bytes=-']) assert.equal(r(v).status, 200, v);
  });

  test('If-Range: the current tag or date honours the range; anything else gets the whole file', () => {
    assert.equal(get(['Range', 'bytes=0-1', 'If-Range', etag]).status, 206);
    assert.equal(get(['Range', 'bytes=0-1', 'If-Range', lm]).status, 206);
    assert.equal(get(['Range', 'bytes=0-1', 'If-Range', '"old"']).status, 200);
    assert.equal(get(['Range', 'bytes=0-1', 'If-Range', 'Thu, 01 Jan 2026 00:00:00 GMT']).status, 200);
  });

  test('an empty file: 200 without a body', () => {
    const a = fileAnswer('GET', [], { ...file, size: 0 });
    assert.equal(a.status, 200);
    assert.equal(a.body, null);
  });
});

test('contentTypeOf: by the last extension, any case; unknown is octet-stream', () => {
  assert.equal(contentTypeOf('index.HTML'), 'text/html; charset=utf-8');
  assert.equal(contentTypeOf('a.tar.gz'), 'application/gzip');
  assert.equal(contentTypeOf('x.woff2'), 'font/woff2');
  assert.equal(contentTypeOf('x.svg'), 'image/svg+xml');
  assert.equal(contentTypeOf('Makefile'), 'application/octet-stream');
  assert.equal(contentTypeOf('.bashrc'), 'application/octet-stream');
  assert.equal(contentTypeOf('x.constructor'), 'application/octet-stream');
});

describe('config: serve and drop', () => {
  test('a serve action gets its defaults', () => {
    const c = parseConfig({ routes: [{ action: { type: 'serve', root: './public' } }] });
    assert.deepEqual(c.routes[0].action, { type: 'serve', root: './public', index: 'index.html' });
  });

  test('problems name their field', () => {
    const problems = problemsOf({
      routes: [
        { action: { type: 'serve', root: 'a', file: 'b' } },
        { action: { type: 'serve' } },
        { action: { type: 'serve', file: 'a', index: 'x.html', fallback: 'y.html' } },
        { action: { type: 'serve', root: 'a', fallback: '../etc/passwd' } },
        { action: { type: 'serve', root: 'a', index: 'a/b.html' } },
        { action: { type: 'serve', root: 'a', listing: true } },
        { plugins: ['auth'], action: 'gone' },
        { action: 'px' },
      ],
      actions: { gone: { type: 'drop' }, px: { type: 'proxy', upstream: 'http://a', fallback: 'site' }, site: { type: 'serve', root: 'x' } },
      plugins: { auth: { path: '/bin/true' } },
    });
    const expected = [
      /^routes\[0\]\.action: expected exactly one of "root".*or "file"/,
      /^routes\[1\]\.action: expected exactly one of "root"/,
      /^routes\[2\]\.action\.index: only with "root"/,
      /^routes\[2\]\.action\.fallback: only with "root"/,
      /^routes\[3\]\.action\.fallback: expected a path below root/,
      /^routes\[4\]\.action\.index: expected a file name/,
      /^routes\[5\]\.action\.listing: unknown field/,
      /^routes\[6\]\.plugins: this route's action is "drop"/,
      /^actions\.px\.fallback: "site" is a serve; a fallback must be static or redirect/,
    ];
    for (const re of expected) assert.equal(problems.filter((p) => re.test(p)).length, 1, `${re} in:\n  ${problems.join('\n  ')}`);
    assert.equal(problems.length, expected.length, problems.join('\n'));
  });

  test('the action variant names the new types', () => {
    assert.match(problemsOf({ routes: [{ action: { type: 'sendfile' } }] })[0], /"serve", "drop" or "pass"/);
  });

  test('edge warnings: one per serve route, none for drop', () => {
    const c = parseConfig({
      routes: [{ id: 'site', action: 'site' }, { id: 'gone', action: { type: 'drop' } }, { id: 'one', action: { type: 'serve', file: 'x' } }],
      actions: { site: { type: 'serve', root: 'x' } },
    });
    const w = edgeWarnings(c);
    assert.equal(w.length, 2, w.join('\n'));
    assert.match(w[0], /^routes\[0\]\.action: route "site" is a "serve" route \(action "site"\); an edge worker cannot serve files and answers it with 501/);
    assert.match(w[1], /^routes\[2\]\.action: route "one"/);
  });
});

describe('dropsBeforeHandshake: whether a TLS connection can be closed on its server name alone', () => {
  const state = (routes: unknown[]) => new GatewayState(parseConfig({ routes }));
  const drop = { type: 'drop' };
  const ok = { type: 'static', body: 'ok' };

  test('a drop route for the name with no path or methods drops; another name does not', () => {
    const s = state([{ match: { domain: 'blocked.example.com' }, action: drop }, { action: ok }]);
    assert.equal(dropsBeforeHandshake(s, 'blocked.example.com'), true);
    assert.equal(dropsBeforeHandshake(s, 'BLOCKED.example.com.'), true);
    assert.equal(dropsBeforeHandshake(s, 'open.example.com'), false);
  });

  test('an earlier route that serves some requests for the name keeps the connection', () => {
    const s = state([{ match: { domain: '*.example.com', path: '/health' }, action: ok }, { match: { domain: '*.example.com' }, action: drop }]);
    assert.equal(dropsBeforeHandshake(s, 'a.example.com'), false);
  });

  test('drop routes with a path before a drop-all route still drop', () => {
    const s = state([{ match: { domain: 'a.example.com', path: '/x' }, action: drop }, { match: { domain: 'a.example.com' }, action: drop }]);
    assert.equal(dropsBeforeHandshake(s, 'a.example.com'), true);
  });

  test('without SNI, a route with a domain could still match by Host: no drop before it', () => {
    const s = state([{ match: { domain: 'a.example.com' }, action: ok }, { action: drop }]);
    assert.equal(dropsBeforeHandshake(s, ''), false);
    assert.equal(dropsBeforeHandshake(s, 'b.example.com'), true);
    assert.equal(dropsBeforeHandshake(state([{ action: drop }]), ''), true);
  });

  test('no route for the name: not a drop (its requests get 404)', () => {
    assert.equal(dropsBeforeHandshake(state([{ match: { domain: 'a.example.com' }, action: ok }]), 'b.example.com'), false);
  });
});

test('a config stream may not carry serve actions unless it is trusted as the runner (--plugins-from-stream=any)', () => {
  const config = parseConfig({ routes: [{ action: 'site' }, { action: { type: 'serve', root: '/' } }, { action: { type: 'drop' } }], actions: { site: { type: 'serve', root: '/srv/www' } } });
  const problems = streamProblems(config, { plugins: 'allowlist', allowed: ['/**'] });
  assert.deepEqual(problems.map((p) => p.slice(0, p.indexOf(':'))), ['actions.site', 'routes[1].action']);
  assert.match(problems[0], /would let the stream publish any file the runner can read/);
  assert.deepEqual(streamProblems(config, { plugins: 'any', allowed: [] }), []);
});
