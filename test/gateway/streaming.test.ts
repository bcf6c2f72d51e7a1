/**
 * Bodies stream through the gateway: large request and response bodies
 * arrive intact, the first bytes pass before the last ones exist, and a
 * `with_body` binding gets a copy of the first 64 KiB while the upstream
 * still gets the whole body.
 */

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, describe, test } from 'node:test';
import { request as httpRequest } from 'node:http';
import { request } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { patternFacts, patternStream, sha256, startUpstream, type Upstream } from '../helpers/upstream.ts';

const MB = 1024 * 1024;
/** How long a half-sent body waits for the other side before giving up (only reached when the gateway buffers). */
const PATIENCE_MS = 5000;

const files = suiteScope();
let gw: Gateway;
let up: Upstream;
/** the custom upstream of the streaming tests */
let trickle: Upstream;
const trickleState = { firstSeenByClient: () => {}, upstreamSawFirstBytes: () => {}, upstreamEnded: false };

before(async () => {
  up = await startUpstream(files, { name: 'app' });
  trickle = await startUpstream(files, {
    name: 'trickle',
    handler: (req, res) => {
      if (req.url === '/download') {
        // Sends 64 KiB, then waits for the client to have seen bytes (or gives up).
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write(Buffer.alloc(65_536, 1));
        let timer: NodeJS.Timeout | undefined;
        new Promise<void>((r) => {
          trickleState.firstSeenByClient = r;
          timer = setTimeout(r, PATIENCE_MS);
        }).then(() => {
          clearTimeout(timer);
          trickleState.upstreamEnded = true;
          res.end(Buffer.alloc(65_536, 2));
        });
        return;
      }
      if (req.url === '/untyped') {
        res.writeHead(200, { 'content-length': '4' });
        res.end(Buffer.from([0, 1, 2, 255]));
        return;
      }
      // /upload: tell the test when the first bytes arrive; answer at the end.
      let first = true;
      req.on('data', () => {
        if (first) trickleState.upstreamSawFirstBytes();
        first = false;
      });
      req.on('end', () => res.end('ok'));
    },
  });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'trickle', match: { path: '/download, /upload, /untyped' }, action: { type: 'proxy', upstream: trickle.url } },
        { id: 'peek', match: { path: '/peek/*' }, plugins: [{ plugin: 'inspector', with_body: true }], action: 'app' },
        { id: 'no-body', match: { path: '/no-body/*' }, plugins: ['inspector'], action: 'app' },
        { id: 'plain', action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: { inspector: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' } } },
    }),
  );
  await whenReady(gw);
});

describe('streaming', { concurrency: true, timeout: 60_000 }, () => {
  test('a 20 MB request body reaches the upstream intact', async () => {
    const size = 20 * MB;
    const [expected, res] = await Promise.all([
      patternFacts(size, 3),
      request(`${gw.url}/upload-big`, { method: 'POST', body: patternStream(size, 3), timeoutMs: 60_000 }),
    ]);
    assert.equal(res.status, 200);
    const seen = res.json();
    assert.equal(seen.bodyBytes, size);
    assert.equal(seen.bodySha256, expected.sha256);
  });

  test('a 20 MB response body reaches the client intact', async () => {
    const size = 20 * MB;
    const [expected, res] = await Promise.all([
      patternFacts(size, 7),
      request(`${gw.url}/download-big`, { headers: { 'x-up-size': String(size) }, hashOnly: true, timeoutMs: 60_000 }),
    ]);
    assert.equal(res.status, 200);
    assert.equal(res.bodyBytes, size);
    assert.equal(res.bodySha256, expected.sha256);
  });

  test('response bytes reach the client before the upstream has finished the body', async () => {
    const { sawFirstBytesEarly, total } = await new Promise<{ sawFirstBytesEarly: boolean; total: number }>((resolve, reject) => {
      const req = httpRequest(`${gw.url}/download`, { agent: false });
      req.setTimeout(20_000, () => req.destroy(new Error('no complete reply from /download within 20 s')));
      req.on('error', reject);
      req.on('response', (res) => {
        let total = 0;
        let early: boolean | null = null;
        res.on('data', (c: Buffer) => {
          if (early === null) {
            early = !trickleState.upstreamEnded;
            trickleState.firstSeenByClient();
          }
          total += c.length;
        });
        res.on('end', () => resolve({ sawFirstBytesEarly: early === true, total }));
        res.on('error', reject);
      });
      req.end();
    });
    assert.equal(total, 2 * 65_536);
    assert.ok(sawFirstBytesEarly, 'the client saw no byte until the upstream had ended the body: the gateway buffered it');
  });

  test('request bytes reach the upstream before the client has finished the body', async () => {
    let upstreamSawFirst = false;
    let timer: NodeJS.Timeout | undefined;
    const gate = new Promise<void>((r) => {
      trickleState.upstreamSawFirstBytes = () => {
        upstreamSawFirst = true;
        r();
      };
      timer = setTimeout(r, PATIENCE_MS);
    });
    async function* body(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(65_536, 1);
      await gate;
      clearTimeout(timer);
      yield Buffer.alloc(65_536, 2);
    }
    const res = await request(`${gw.url}/upload`, { method: 'POST', body: Readable.from(body()) });
    assert.equal(res.status, 200);
    assert.ok(upstreamSawFirst, 'the upstream saw no byte until the client had ended the body: the gateway buffered it');
  });

  test('a response without Content-Type reaches the client without one: the gateway invents no media type', async () => {
    const res = await request(`${gw.url}/untyped`);
    assert.equal(res.status, 200);
    assert.deepEqual([...res.body], [0, 1, 2, 255]);
    assert.equal(res.headers['content-length'], '4');
    assert.equal(res.headers['content-type'], undefined, `the client got content-type ${res.headers['content-type']}`);
  });

  test('with_body gives the plugin the first 64 KiB while the upstream gets the whole body', async () => {
    const size = 300 * 1024;
    const expected = await patternFacts(size, 11, 65_536);
    const res = await request(`${gw.url}/peek/big`, { method: 'POST', body: patternStream(size, 11) });
    assert.equal(res.status, 200);
    const seen = res.json();
    assert.equal(seen.headers['x-seen-body-bytes'], '65536', 'the plugin got exactly 64 KiB');
    assert.equal(seen.headers['x-seen-body-sha256'], sha256(expected.head), 'the plugin got the first 64 KiB');
    assert.equal(seen.bodyBytes, size);
    assert.equal(seen.bodySha256, expected.sha256);
  });

  test('with_body gives the plugin a small body whole', async () => {
    const body = 'name=alice&role=admin';
    const res = await request(`${gw.url}/peek/small`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const seen = res.json();
    assert.equal(seen.headers['x-seen-body-bytes'], String(body.length));
    assert.equal(seen.headers['x-seen-body-sha256'], sha256(body));
    assert.equal(seen.bodySha256, sha256(body));
  });

  test('a binding without with_body gets no body copy', async () => {
    const res = await request(`${gw.url}/no-body/x`, { method: 'POST', body: 'x'.repeat(1000) });
    const seen = res.json();
    assert.equal(seen.headers['x-plugin-name'], 'fixture', 'the plugin was asked');
    assert.equal(seen.headers['x-seen-body-bytes'], undefined);
    assert.equal(seen.bodyBytes, 1000);
  });
});
