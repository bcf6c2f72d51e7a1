// The core pipeline's header rules on plain header lists, as both data planes use them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientHeaderList, forwardHeaderList, verdictAnswer } from '../../src/core/gateway/pipeline.ts';
import { headerMapOfList, listGet, stripList } from '../../src/core/protocol/headers.ts';
import type { AuthorizeResult } from '../../src/core/protocol/protocol.ts';

const client = { remoteAddr: '10.0.0.9:4000', ip: '10.0.0.9', protocol: 'HTTP/1.1', tls: false };
const allow = (over: Partial<AuthorizeResult>): AuthorizeResult =>
  ({ ok: true, dr: false, fb: false, s: 0, b: '', h: {}, rm: [], sp: null, cq: false, rp: '', e: '', ...over }) as AuthorizeResult;

test('forwarded headers: hop-by-hop, Connection-named and Expect go; the client chain is extended; X-Forwarded-* are ours', () => {
  const out = forwardHeaderList(
    ['Host', 'a.example', 'Connection', 'close, X-Secret', 'X-Secret', '1', 'Expect', '100-continue', 'Keep-Alive', 'x', 'X-Forwarded-For', '1.1.1.1', 'X-Forwarded-Proto', 'https', 'Accept', '*/*'],
    null,
    client,
    'a.example',
  );
  assert.deepEqual(out, ['Host', 'a.example', 'Accept', '*/*', 'x-forwarded-for', '1.1.1.1, 10.0.0.9', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a.example']);
});

test('forwarded headers: a verdict removes and sets in any case; a plugin cannot set X-Forwarded-For but can remove the chain', () => {
  const list = ['X-User', 'forged', 'x-forwarded-for', '1.1.1.1', 'Cookie', 'c'];
  const set = forwardHeaderList(list, allow({ h: { 'X-User': 'alice', 'X-Forwarded-For': '6.6.6.6' }, rm: ['cookie'] }), client, 'h');
  assert.equal(listGet(set, 'x-user'), 'alice');
  assert.equal(listGet(set, 'cookie'), null);
  assert.equal(listGet(set, 'x-forwarded-for'), '1.1.1.1, 10.0.0.9');
  const removed = forwardHeaderList(list, allow({ rm: ['X-Forwarded-For'] }), client, 'h');
  assert.equal(listGet(removed, 'x-forwarded-for'), '10.0.0.9');
});

test('client headers: repeated headers stay apart, hop-by-hop and Connection-named ones go', () => {
  const out = clientHeaderList(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Connection', 'x-internal', 'X-Internal', 'y', 'Transfer-Encoding', 'chunked']);
  assert.deepEqual(out, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
});

test('header lists: strip keeps the same array when nothing goes; the plugin map is canonical and joined', () => {
  const list = ['Accept', 'a', 'accept', 'b'];
  assert.equal(stripList(list, { names: new Set(['x-user']), dropUnderscores: true }), list);
  assert.deepEqual(stripList(['X_User', 'x', 'X-User', 'y', 'Accept', 'a'], { names: new Set(['x-user']), dropUnderscores: true }), ['Accept', 'a']);
  assert.deepEqual(headerMapOfList(list), { Accept: 'a, b' });
});

test('a deny verdict: its status, body and headers; a failure verdict: status and body, never the reason', () => {
  const deny = verdictAnswer(allow({ ok: false, s: 401, b: 'who are you?\n', h: { 'WWW-Authenticate': 'Bearer' } }));
  assert.equal(deny.status, 401);
  assert.equal(deny.body, 'who are you?\n');
  assert.equal(listGet(deny.headers, 'www-authenticate'), 'Bearer');
  assert.equal(listGet(deny.headers, 'content-type'), 'text/plain; charset=utf-8');
  const failed = verdictAnswer(allow({ ok: false, s: 503, e: 'plugin "auth": timed out' }));
  assert.equal(failed.status, 503);
  assert.equal(failed.body, 'service unavailable\n');
});
