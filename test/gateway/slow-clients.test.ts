/**
 * Slow and greedy clients must not starve a route (the self-hosted
 * gateway): many slow POSTs from one client leave room for another
 * client's GET; a head that never completes is answered 408 after
 * `gateway.header_timeout`; a body that stalls longer than
 * `gateway.body_timeout` is answered 408 (or cut off once the response
 * began) and its upstream request aborted; a request that finds every
 * upstream connection of its action busy past `queue_timeout` gets
 * `503 upstream busy`; a client over `max_connections_per_client` is
 * refused while others still connect.
 *
 * Slow clients are raw sockets. Each test speaks from its own loopback
 * address (127.0.0.x), so per-client counts of concurrent tests never mix.
 * Timeouts are small, and the tests wait for the answer, never for a time.
 */

import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { before, describe, test } from 'node:test';
import { parseRaw, waitFor } from '../helpers/http.ts';
import { baseConfig, runCli, startGateway, writeConfig, type Gateway } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir, type Scope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

// ---------------------------------------------------------------------------
// clients

/** A raw TCP client: what it received, and whether the server closed it. */
interface RawClient {
  socket: Socket;
  /** everything received so far (latin1) */
  data(): string;
  open(): boolean;
  /** resolves with everything received once the connection is closed */
  closed: Promise<string>;
}

/** Connects from `from` (a loopback address), writes `send`; destroyed with the scope. */
function rawClient(s: Scope, url: string, from: string, send = ''): Promise<RawClient> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(u.port), host: u.hostname, localAddress: from });
    s.defer(() => socket.destroy());
    let data = '';
    let open = true;
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (data += c));
    const closed = new Promise<string>((r) => socket.once('close', () => r(data)));
    void closed.then(() => (open = false));
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      if (send) socket.write(send);
      resolve({ socket, data: () => data, open: () => open, closed });
    });
    socket.once('error', reject);
  });
}

/** A POST whose body (Content-Length 100000) has begun with one byte. */
const SLOW_POST = (path: string) => `POST ${path} HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 100000\r\n\r\nx`;

/**
 * Opens `n` slow POSTs from `from`, and keeps each open one trickling a
 * byte every second (far within any body_timeout here) until the scope
 * closes.
 */
async function slowPosts(s: Scope, url: string, from: string, path: string, n: number): Promise<RawClient[]> {
  const clients = await Promise.all(Array.from({ length: n }, () => rawClient(s, url, from, SLOW_POST(path))));
  const timer = setInterval(() => {
    for (const c of clients) if (c.open()) c.socket.write('x');
  }, 1000);
  s.defer(() => clearInterval(timer));
  return clients;
}

/** One GET (node:http, its own connection) from a loopback address. */
function getFrom(url: string, from: string, timeoutMs = 15_000): Promise<{ status: number; text: string; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { localAddress: from, agent: false, headers: { host: 'fast.test' } });
    const timer = setTimeout(() => req.destroy(new Error(`no answer to GET ${url} from ${from} within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text, headers: res.headers });
      });
    });
    req.end();
  });
}

// ---------------------------------------------------------------------------
// the upstream

/** One request as the upstream saw it. */
interface Seen {
  method: string;
  url: string;
  /** the client address the gateway forwarded (X-Forwarded-For) */
  from: string;
  ended: boolean;
  /** the connection went away before the request's body ended */
  aborted: boolean;
}

/**
 * An upstream that records every request as it starts. It answers when the
 * request's body ends, except `/hold` paths (answered when the test calls
 * `release(prefix)` for them) and `/early` paths (a 200 and a first chunk at once, before
 * the body is read, and never an end).
 */
async function startRecordingUpstream(s: Scope): Promise<{ up: Upstream; seen: Seen[]; release(prefix?: string): void }> {
  const seen: Seen[] = [];
  const held: Array<{ url: string; answer: () => void }> = [];
  const up = await startUpstream(s, {
    name: 'recording',
    handler: (req, res) => {
      const rec: Seen = { method: req.method ?? '', url: req.url ?? '', from: String(req.headers['x-forwarded-for'] ?? ''), ended: false, aborted: false };
      seen.push(rec);
      req.on('close', () => (rec.aborted = !req.complete));
      const answer = () => {
        if (!res.destroyed && !res.headersSent) res.end(`${rec.method} ${rec.url}\n`);
      };
      if (rec.url.includes('/early')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('started\n');
        return;
      }
      req.on('end', () => {
        rec.ended = true;
        if (rec.url.includes('/hold')) held.push({ url: rec.url, answer });
        else answer();
      });
    },
  });
  const release = (prefix = '/') => {
    for (const h of [...held]) {
      if (!h.url.startsWith(prefix)) continue;
      held.splice(held.indexOf(h), 1);
      h.answer();
    }
  };
  s.defer(release);
  return { up, seen, release };
}

const from = (seen: Seen[], ip: string, path: string) => seen.filter((r) => r.from === ip && r.url.startsWith(path));

// ---------------------------------------------------------------------------

describe('slow clients: the reported attack, with the default settings', { timeout: 90_000 }, () => {
  test("130 slow POSTs from one client do not delay another client's GET on the same route: it is answered while they are all still open", async (t) => {
    const s = scope(t);
    const { up, seen } = await startRecordingUpstream(s);
    const gw = await startGateway(s, baseConfig({ routes: [{ id: 'api', match: { path: '/api/*' }, action: { type: 'proxy', upstream: up.url } }] }));
    const posts = await slowPosts(s, gw.url, '127.0.0.1', '/api/upload', 130);
    // Undici's old pool held 128 connections per origin; these hold more than that.
    await waitFor(() => from(seen, '127.0.0.1', '/api/upload').length >= 128, { timeoutMs: 30_000, what: 'the slow POSTs to hold 128 upstream connections' });

    const res = await getFrom(`${gw.url}/api/items`, '127.0.0.2');

    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'GET /api/items\n');
    assert.equal(posts.filter((p) => p.open()).length, 130, 'every slow POST is still open when the GET is answered');
    assert.deepEqual(posts.filter((p) => p.data() !== ''), [], 'and none was answered');
  });
});

describe('slow clients: connection limits', { concurrency: true, timeout: 90_000 }, () => {
  const files = suiteScope();
  let gw: Gateway;
  let rec: Awaited<ReturnType<typeof startRecordingUpstream>>;

  before(async () => {
    rec = await startRecordingUpstream(files);
    const upstream = rec.up.url;
    gw = await startGateway(
      files,
      baseConfig({
        gateway: { listen: '127.0.0.1:0', max_connections_per_client: 4 },
        routes: [
          { id: 'pool', match: { path: '/pool/*' }, action: { type: 'proxy', upstream, max_connections: 6 } },
          { id: 'busy', match: { path: '/busy/*' }, action: { type: 'proxy', upstream, max_connections: 1, queue_timeout: '300ms' } },
          { id: 'queue', match: { path: '/queue/*' }, action: { type: 'proxy', upstream, max_connections: 1, queue_timeout: '60s' } },
          { id: 'busy-fb', match: { path: '/busy-fb/*' }, action: { type: 'proxy', upstream, max_connections: 1, queue_timeout: 0, fallback: 'sorry' } },
          { id: 'one', match: { path: '/one/*' }, action: { type: 'proxy', upstream, max_connections: 1, queue_timeout: 0 } },
          { id: 'any', action: { type: 'proxy', upstream } },
        ],
        actions: { sorry: { type: 'static', status: 503, body: 'come back later\n' } },
      }),
    );
  });

  test("10 slow POSTs from one client, over its limit of 4 and the route's 6 upstream connections: 4 hold a connection, 6 are refused, and another client's GET is answered while the 4 are open", async (t) => {
    const s = scope(t);
    const posts = await slowPosts(s, gw.url, '127.0.0.3', '/pool/upload', 10);
    await waitFor(() => posts.filter((p) => !p.open()).length === 6, { what: '6 of the 10 connections to be refused' });
    await waitFor(() => from(rec.seen, '127.0.0.3', '/pool/upload').length === 4, { what: 'the 4 admitted POSTs to reach the upstream' });

    const res = await getFrom(`${gw.url}/pool/items`, '127.0.0.4');

    assert.equal(res.status, 200, res.text);
    assert.equal(posts.filter((p) => p.open()).length, 4, 'the 4 admitted POSTs are still open');
    assert.deepEqual(posts.filter((p) => !p.open()).map((p) => p.data()), ['', '', '', '', '', ''], 'the refused connections were closed unanswered');
    assert.equal(from(rec.seen, '127.0.0.3', '/pool/upload').length, 4, 'no refused POST reached the upstream');
    await gw.waitForLog('connection refused: this client already has max_connections_per_client open');
  });

  test('a client at max_connections_per_client is refused one more connection, another client still connects, and a closed connection frees a place', async (t) => {
    const s = scope(t);
    const posts = await slowPosts(s, gw.url, '127.0.0.5', '/any/held', 4);
    await waitFor(() => from(rec.seen, '127.0.0.5', '/any/held').length === 4, { what: 'the 4 POSTs to reach the upstream' });

    const extra = await rawClient(s, gw.url, '127.0.0.5', 'GET /any/extra HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(await extra.closed, '', 'the fifth connection is closed unanswered');
    assert.equal((await getFrom(`${gw.url}/any/other`, '127.0.0.6')).status, 200, 'another client still connects');

    posts[0].socket.destroy();
    const again = await waitFor(async () => (await getFrom(`${gw.url}/any/again`, '127.0.0.5').catch(() => null))?.status, {
      what: 'the client to get a place again once one of its connections closed',
    });
    assert.equal(again, 200);
  });

  test('pipelined requests on one connection are served one at a time, so a connection holds at most one upstream connection', async (t) => {
    const pipelined = 'GET /one/hold HTTP/1.1\r\nHost: x\r\n\r\nGET /one/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const c = await rawClient(scope(t), gw.url, '127.0.0.14', pipelined);
    await waitFor(() => from(rec.seen, '127.0.0.14', '/one/hold').length === 1, { what: 'the first request to hold the route\'s only connection' });
    rec.release('/one/');
    const raw = await c.closed;
    // Run side by side, the second would find the only connection busy (queue_timeout 0: 503 at once).
    assert.deepEqual([...raw.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])), [200, 200], raw);
    assert.match(raw, /GET \/one\/hold\n[\s\S]*GET \/one\/next\n/);
  });

  test('a request still waiting for an upstream connection of its action after queue_timeout gets 503 upstream busy', async (t) => {
    scope(t);
    const holding = getFrom(`${gw.url}/busy/hold`, '127.0.0.7');
    await waitFor(() => from(rec.seen, '127.0.0.7', '/busy/hold').length === 1, { what: 'the first request to hold the only connection' });

    const res = await getFrom(`${gw.url}/busy/next`, '127.0.0.8');

    assert.equal(res.status, 503);
    assert.equal(res.text, 'upstream busy\n');
    assert.equal(res.headers['retry-after'], '1');
    assert.equal(from(rec.seen, '127.0.0.8', '/busy').length, 0, 'the refused request never reached the upstream');
    rec.release('/busy/');
    assert.equal((await holding).status, 200, 'the request holding the connection is served normally');
  });

  test('at most max_connections requests wait for a connection: of two more, one is refused at once while the other waits, and is served when the connection frees up', async (t) => {
    scope(t);
    const holding = getFrom(`${gw.url}/queue/hold`, '127.0.0.9');
    await waitFor(() => from(rec.seen, '127.0.0.9', '/queue/hold').length === 1, { what: 'the first request to hold the only connection' });
    const settled: string[] = [];
    const two = ['127.0.0.10', '127.0.0.11'].map((ip) =>
      getFrom(`${gw.url}/queue/more`, ip).then((r) => {
        settled.push(ip);
        return { ip, ...r };
      }),
    );

    const refused = await Promise.race(two);

    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.text, 'upstream busy\n');
    assert.deepEqual(settled, [refused.ip], 'the other one is still waiting');
    rec.release('/queue/');
    assert.equal((await holding).status, 200);
    const [waiter] = (await Promise.all(two)).filter((r) => r.ip !== refused.ip);
    assert.equal(waiter.status, 200, 'the waiter got the connection');
    assert.equal(waiter.text, 'GET /queue/more\n');
  });

  test("a busy upstream serves the action's fallback when it has one", async (t) => {
    scope(t);
    const holding = getFrom(`${gw.url}/busy-fb/hold`, '127.0.0.12');
    await waitFor(() => from(rec.seen, '127.0.0.12', '/busy-fb/hold').length === 1, { what: 'the first request to hold the only connection' });
    const res = await getFrom(`${gw.url}/busy-fb/next`, '127.0.0.13');
    assert.equal(res.status, 503);
    assert.equal(res.text, 'come back later\n');
    rec.release('/busy-fb/');
    assert.equal((await holding).status, 200);
  });
});

describe('slow clients: header and body timeouts', { concurrency: true, timeout: 60_000 }, () => {
  const files = suiteScope();
  let gw: Gateway;
  let rec: Awaited<ReturnType<typeof startRecordingUpstream>>;

  before(async () => {
    rec = await startRecordingUpstream(files);
    gw = await startGateway(
      files,
      baseConfig({
        gateway: { listen: '127.0.0.1:0', header_timeout: '300ms', body_timeout: '300ms' },
        routes: [{ id: 'up', action: { type: 'proxy', upstream: rec.up.url } }],
      }),
    );
  });

  test('a request head that never completes is answered 408 and closed after header_timeout', async (t) => {
    const c = await rawClient(scope(t), gw.url, '127.0.1.1', 'GET /never HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const raw = await c.closed;
    assert.equal(parseRaw(raw).status, 408, raw);
    assert.equal(from(rec.seen, '127.0.1.1', '/').length, 0, 'nothing reached the upstream');
  });

  test('a connection that never sends a byte is answered 408 and closed after header_timeout', async (t) => {
    const c = await rawClient(scope(t), gw.url, '127.0.1.2');
    assert.equal(parseRaw(await c.closed).status, 408);
  });

  test('a request body that stalls is answered 408 and closed, and its upstream request is aborted', async (t) => {
    const c = await rawClient(scope(t), gw.url, '127.0.1.3', 'POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b');
    const raw = await c.closed;
    const res = parseRaw(raw);
    assert.equal(res.status, 408, raw);
    assert.equal(res.body, 'request body timed out\n');
    assert.ok(res.headers.some(([k, v]) => k === 'connection' && v === 'close'), raw);
    const seen = await waitFor(() => from(rec.seen, '127.0.1.3', '/stall').find((r) => r.aborted), { what: 'the upstream to see its request aborted' });
    assert.equal(seen.ended, false);
    assert.deepEqual(gw.logs.filter((l) => (l.level ?? 0) >= 40 && l.msg.startsWith('upstream')), [], 'a client that stalled is not an upstream failure');
  });

  test('a request body that stalls after the response began is cut off: the connection closes before the response ends', async (t) => {
    const c = await rawClient(scope(t), gw.url, '127.0.1.4', 'POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b');
    const raw = await c.closed;
    const res = parseRaw(raw);
    assert.equal(res.status, 200, raw);
    assert.ok(res.body.includes('started'), raw);
    assert.ok(!res.body.endsWith('0\r\n\r\n'), `the chunked response must not end cleanly: ${JSON.stringify(raw)}`);
    await waitFor(() => from(rec.seen, '127.0.1.4', '/early').find((r) => r.aborted), { what: 'the upstream to see its request aborted' });
  });

  test('a request whose body arrives in time is served as usual', async (t) => {
    const c = await rawClient(scope(t), gw.url, '127.0.1.5', 'POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    const res = parseRaw(await c.closed);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'POST /whole\n');
  });
});

test('validate accepts the client and upstream connection limits without a warning (the edge worker ignores them)', async (t) => {
  const file = writeConfig(
    tempDir(scope(t)),
    {
      gateway: { listen: '127.0.0.1:8080', header_timeout: '10s', body_timeout: '30s', max_connections_per_client: 512 },
      routes: [{ action: 'api' }],
      actions: { api: { type: 'proxy', upstream: 'http://127.0.0.1:3000', max_connections: 1024, queue_timeout: '5s' } },
    },
  );
  const res = await runCli(['validate', file]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stderr, '');
  assert.match(res.stdout, /: ok \(1 routes, 0 plugins\)/);
});
