/**
 * WebSocket sessions through the edge worker (src/edge/websocket.ts): the
 * worker asks on_connect at the upgrade, bridges the client's socket and
 * the upstream's, and reports on_disconnect (bytes each way, duration) when
 * the session ends. A real client (Node's WebSocket), the built worker in
 * Miniflare, a real runner with the SDK fixture, a real WebSocket upstream.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { openWebSocket, sleep, upgradeAnswer, waitFor } from '../helpers/http.ts';
import { EDGE_PLUGIN } from '../helpers/paths.ts';
import { readJsonLines, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

interface Disconnect {
  plugin: string;
  r: string;
  tg: string;
  a: string;
  rx: number;
  tx: number;
  ms: number;
}

const s = suiteScope();
let runner: RunnerProcess;
let up: Upstream;
let record: string;

before(async () => {
  assertWorkerBuilt();
  const dir = tempDir(s);
  record = join(dir, 'disconnects.jsonl');
  up = await startUpstream(s, { name: 'chat', websocket: { greet: true } });
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'chat', match: { path: '/chat/*' }, plugins: ['gate'], action: { type: 'proxy', upstream: up.url } },
        { id: 'closed', match: { path: '/closed/*' }, plugins: ['gate'], action: { type: 'proxy', upstream: up.url } },
      ],
      plugins: {
        gate: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'gate', FIXTURE_HOOKS: 'on_connect,on_disconnect', FIXTURE_REFUSE_CONNECT: 'closed', FIXTURE_RECORD: record } },
      },
    }),
    { dir },
  );
});

const text = (m: string | ArrayBuffer) => (typeof m === 'string' ? m : `<binary ${m.byteLength} bytes>`);

for (const transport of ['http', 'ws'] as const) {
  describe(`over the ${transport} hook transport`, () => {
    let edge: Edge;
    let wsUrl: string;
    before(async () => {
      edge = await startEdge(s, { runners: [runner.url], transport });
      wsUrl = edge.url.replace(/^http/, 'ws');
    });

    test('a session is bridged both ways: the upstream\'s messages reach the client, the client\'s reach the upstream and come back', async (t) => {
      const ts = scope(t);
      const client = await openWebSocket(ts, `${wsUrl}/chat/${transport}/both`);
      assert.equal(text(await client.next()), 'welcome from chat', 'upstream → client');
      client.ws.send(`hello over ${transport}`);
      assert.equal(text(await client.next()), `hello over ${transport}`, 'client → upstream → client');
      assert.ok(up.wsMessages.some((m) => !m.binary && m.data.toString() === `hello over ${transport}`), 'the upstream got the text as text');
      client.ws.close(1000, 'bye');
      assert.equal((await client.closed).code, 1000);
    });

    test('binary messages cross the edge as binary, byte for byte', async (t) => {
      const ts = scope(t);
      const client = await openWebSocket(ts, `${wsUrl}/chat/${transport}/binary`);
      await client.next(); // the welcome
      const from = up.wsMessages.length;
      client.ws.send(new Uint8Array([0, 1, 2, 254, 255]));
      const echoed = await client.next();
      const got = up.wsMessages.slice(from);
      assert.deepEqual(
        got.map((m) => ({ binary: m.binary, bytes: [...m.data] })),
        [{ binary: true, bytes: [0, 1, 2, 254, 255] }],
        'the upstream got the bytes as a binary message',
      );
      assert.ok(echoed instanceof ArrayBuffer, `the client got a binary message back, not ${JSON.stringify(text(echoed))}`);
      assert.deepEqual([...new Uint8Array(echoed)], [0, 1, 2, 254, 255]);
    });

    test('on_connect refusing the session: the upgrade is answered 403 and the upstream never sees it', async () => {
      const before = up.received.length;
      const res = await upgradeAnswer(`${edge.url}/closed/${transport}`);
      assert.equal(res.status, 403);
      assert.equal(res.body, 'forbidden\n');
      await sleep(100);
      assert.equal(up.received.length, before, 'no upgrade reached the upstream');
    });

    test('when the upstream closes the session, the client sees its close code and reason, and on_disconnect is reported', async (t) => {
      const ts = scope(t);
      const seenBefore = readJsonLines<Disconnect>(record).length;
      const client = await openWebSocket(ts, `${wsUrl}/chat/${transport}/upstream-closes`);
      await client.next(); // the welcome
      client.ws.send('close please');
      assert.deepEqual(await client.closed, { code: 4000, reason: 'closed by upstream' });
      const [d] = await waitFor(() => {
        const lines = readJsonLines<Disconnect>(record).slice(seenBefore);
        return lines.length > 0 && lines;
      }, { what: 'the on_disconnect record' });
      assert.equal(d.r, 'chat');
      assert.equal(d.rx, Buffer.byteLength('close please'));
    });

    test('on_disconnect reports the route, the bytes each way and the duration when the client closes', async (t) => {
      const ts = scope(t);
      const path = `/chat/${transport}/count`;
      const seenBefore = readJsonLines<Disconnect>(record).length;
      const started = performance.now();
      const client = await openWebSocket(ts, `${wsUrl}${path}`);
      const welcome = text(await client.next()); // to the client
      client.ws.send('12345'); // 5 bytes from the client
      await client.next();
      client.ws.send('abcdefghij'); // 10 bytes from the client
      await client.next();
      await sleep(250);
      client.ws.close(1000);
      await client.closed;
      const held = performance.now() - started;
      const [d] = await waitFor(() => {
        const lines = readJsonLines<Disconnect>(record).slice(seenBefore);
        return lines.length > 0 && lines;
      }, { what: 'the on_disconnect record' });
      assert.equal(d.plugin, 'gate');
      assert.equal(d.r, 'chat');
      assert.equal(d.tg, '', 'the route has no balancer, so no target');
      assert.equal(d.rx, 15, 'bytes received from the client');
      assert.equal(d.tx, Buffer.byteLength(welcome) + 15, 'bytes sent to the client (the welcome and both echoes)');
      assert.ok(d.ms >= 200 && d.ms <= held + 1000, `duration ${d.ms} ms for a session held ~${Math.round(held)} ms`);
    });
  });
}
