/**
 * WebSocket sessions through the gateway: messages echo both ways,
 * on_connect can refuse the upgrade (403), and on_disconnect reports the
 * session's bytes and duration once it ends.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { openWebSocket, sleep, upgradeAnswer, waitFor } from '../helpers/http.ts';
import { AUTH_TS, VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, readJsonLines, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;
let disconnects: string;

before(async () => {
  up = await startUpstream(files, { name: 'echo', websocket: true });
  disconnects = join(tempDir(files), 'disconnects.jsonl');
  const plugin = (name: string, env: Record<string, string>) => ({
    path: VERDICT_PLUGIN,
    env: { FIXTURE_NAME: name, FIXTURE_HOOKS: 'on_connect,on_disconnect', FIXTURE_DISCONNECT_FILE: disconnects, ...env },
  });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'ws', match: { path: '/ws' }, plugins: ['gatekeeper'], action: 'echo' },
        { id: 'ws-measured', match: { path: '/ws-measured' }, plugins: ['gatekeeper'], action: 'echo' },
        { id: 'ws-refused', match: { path: '/ws-refused' }, plugins: ['bouncer'], action: 'echo' },
        { id: 'ws-auth', match: { path: '/ws-auth' }, plugins: ['auth'], action: 'echo' },
      ],
      actions: { echo: { type: 'proxy', upstream: up.url } },
      plugins: {
        gatekeeper: plugin('gatekeeper', {}),
        bouncer: plugin('bouncer', { FIXTURE_CONNECT: 'deny' }),
        auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 's3cret:alice' } },
      },
    }),
  );
  await whenReady(gw);
});

const wsUrl = (path: string) => gw.url.replace(/^http/, 'ws') + path;

/** The status a raw upgrade request is answered with (101 or a refusal). */
const upgradeStatus = async (path: string, headers: Record<string, string> = {}): Promise<number> => (await upgradeAnswer(`${gw.url}${path}`, { headers })).status;

describe('WebSocket', { concurrency: true, timeout: 60_000 }, () => {
  test('messages echo through the gateway both ways, text and binary', async (t) => {
    const s = scope(t);
    const { ws, next } = await openWebSocket(s, wsUrl('/ws'));
    ws.send('hello through the gateway');
    assert.equal(await next(), 'hello through the gateway');
    const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
    ws.send(big);
    const back = (await next()) as ArrayBuffer;
    assert.deepEqual(new Uint8Array(back), big);
    ws.send('and again');
    assert.equal(await next(), 'and again');
  });

  test('on_connect refusing the session refuses the upgrade with 403, and the upstream never sees it', async () => {
    const sessions = up.received.filter((r) => r.url === '/ws-refused').length;
    assert.equal(await upgradeStatus('/ws-refused'), 403);
    assert.equal(up.received.filter((r) => r.url === '/ws-refused').length, sessions);
    // the same route shape with an allowing plugin upgrades
    assert.equal(await upgradeStatus('/ws'), 101);
  });

  test('an upgrade is an HTTP request too: on_request (the auth plugin) denies it without a token', async () => {
    assert.equal(await upgradeStatus('/ws-auth'), 401);
    assert.equal(up.received.filter((r) => r.url === '/ws-auth').length, 0);
    assert.equal(await upgradeStatus('/ws-auth', { authorization: 'Bearer s3cret' }), 101);
    const [seen] = up.received.filter((r) => r.url === '/ws-auth');
    assert.equal(seen.headers['x-user'], 'alice');
  });

  test('on_disconnect reports the bytes each way and the duration after the session closes', async (t) => {
    const s = scope(t);
    const { ws, next, closed } = await openWebSocket(s, wsUrl('/ws-measured'));
    const message = 'x'.repeat(1000);
    ws.send(message);
    assert.equal(await next(), message);
    await sleep(300);
    ws.close(1000, 'done');
    await closed;
    const record = await waitFor(
      () => readJsonLines<{ name: string; r: string; rx: number; tx: number; ms: number; a: string }>(disconnects).find((d) => d.r === 'ws-measured'),
      { what: 'the on_disconnect record of route ws-measured' },
    );
    assert.equal(record.name, 'gatekeeper');
    // A 1000-byte text message is a 1008-byte masked frame from the client and a 1004-byte frame back.
    assert.ok(record.rx >= 1008, `rx ${record.rx} < 1008`);
    assert.ok(record.tx >= 1004, `tx ${record.tx} < 1004`);
    assert.ok(record.rx < 4096 && record.tx < 4096, `rx ${record.rx} / tx ${record.tx}: more than the session carried`);
    assert.ok(record.ms >= 250, `the session lasted at least 300 ms, reported ${record.ms}`);
    assert.match(record.a, /^127\.0\.0\.1:\d+$/);
  });
});
