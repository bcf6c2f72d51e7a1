/**
 * When the upstream fails: an unreachable upstream gets the action's
 * fallback when one is configured, else a short 502; an upstream slower
 * than the action's timeout gets a 504 (or the fallback).
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { request as httpRequest } from 'node:http';
import { freePort, request, sleep } from '../helpers/http.ts';
import { baseConfig, startGateway, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;

before(async () => {
  up = await startUpstream(files, { name: 'slow' });
  const breaking = await startUpstream(files, {
    name: 'breaking',
    handler: (req, res) => {
      // Half a body, then the connection breaks.
      res.writeHead(200, req.url === '/broken/sized' ? { 'content-length': '100000' } : { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(50_000, 1));
      setTimeout(() => res.socket?.destroy(), 100);
    },
  });
  const dead = `http://127.0.0.1:${await freePort()}`;
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'down-fb', match: { path: '/down-fb/*' }, action: { type: 'proxy', upstream: dead, fallback: 'sorry' } },
        { id: 'down', match: { path: '/down/*' }, action: { type: 'proxy', upstream: dead } },
        { id: 'slow', match: { path: '/slow/*' }, action: { type: 'proxy', upstream: up.url, timeout: '300ms' } },
        { id: 'broken', match: { path: '/broken/*' }, action: { type: 'proxy', upstream: breaking.url } },
        { id: 'slow-fb', match: { path: '/slow-fb/*' }, action: { type: 'proxy', upstream: up.url, timeout: '300ms', fallback: 'sorry' } },
        { id: 'patient', match: { path: '/patient/*' }, action: { type: 'proxy', upstream: up.url, timeout: '5s' } },
      ],
      actions: { sorry: { type: 'static', status: 503, body: 'try again later\n', headers: { 'Retry-After': '5' } } },
    }),
  );
});

describe('upstream failures', { concurrency: true, timeout: 60_000 }, () => {
  test("an unreachable upstream gets the action's fallback when one is configured", async () => {
    const res = await request(`${gw.url}/down-fb/x`);
    assert.equal(res.status, 503);
    assert.equal(res.text, 'try again later\n');
    assert.equal(res.headers['retry-after'], '5');
  });

  test('an unreachable upstream without a fallback gets 502 with a short body', async () => {
    const res = await request(`${gw.url}/down/x`);
    assert.equal(res.status, 502);
    assert.equal(res.text, 'upstream unreachable\n');
    assert.ok(!res.text.includes('127.0.0.1'), 'the body does not reveal the upstream address');
  });

  test('an upstream slower than the action timeout gets 504, and not before the timeout', async () => {
    const started = performance.now();
    const res = await request(`${gw.url}/slow/x`, { headers: { 'x-up-delay': '3000' } });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 504);
    assert.equal(res.text, 'upstream timed out\n');
    assert.ok(elapsed >= 250, `504 after only ${Math.round(elapsed)} ms`);
  });

  test(
    'a sub-second action timeout is honoured: "300ms" answers 504 before an upstream that takes a second',
    async () => {
      // Ordered against the upstream's own 1 s delay rather than a wall-time
      // budget: the gateway's 300 ms timer starts first, so load delays both.
      const res = await request(`${gw.url}/slow/precise`, { headers: { 'x-up-delay': '1000' } });
      assert.equal(res.status, 504, 'the upstream answered first: the 300 ms timeout was not kept');
    },
  );

  test("an upstream slower than the action timeout gets the action's fallback when one is configured", async () => {
    const res = await request(`${gw.url}/slow-fb/x`, { headers: { 'x-up-delay': '3000' } });
    assert.equal(res.status, 503);
    assert.equal(res.text, 'try again later\n');
  });

  for (const framing of ['chunked', 'sized']) {
    test(`an upstream that breaks off mid-body (${framing}) cuts the client's response off too, never a clean short body`, async () => {
      await assert.rejects(request(`${gw.url}/broken/${framing}`), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ECONNRESET', `${err.code}: ${err.message}`);
        return true;
      });
    });
  }

  test('a client that goes away while the upstream is still answering is not an error: nothing is logged at error level', async () => {
    const from = gw.logs.length;
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${gw.url}/patient/leaving`, { headers: { 'x-up-delay': '800' } });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 150);
    });
    await sleep(1200);
    const errors = gw.logs.slice(from).filter((l) => (l.level ?? 0) >= 50);
    assert.deepEqual(errors, []);
    assert.equal((await request(`${gw.url}/patient/after`)).status, 200, 'and the gateway goes on serving');
  });

  test('an upstream within the timeout is served normally', async () => {
    // 50 ms against 5 s, not 300 ms: on a loaded machine the way there and back alone can take longer than 300 ms.
    const res = await request(`${gw.url}/patient/y`, { headers: { 'x-up-delay': '50' } });
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/patient/y');
  });
});
