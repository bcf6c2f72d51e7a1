/**
 * The config server's stream (docs/protocol.md §3), as runners observe it: a
 * new client gets a `put` of every item with its version; an edit of the
 * file sends `patch` / `delete` only for what changed, with versions that
 * only grow, also across a restart; unchanged and invalid edits send
 * nothing; the key is required; heartbeats keep the stream alive.
 *
 * "Nothing else was sent" is checked with a marker edit: after the edit
 * under test has been handled (its log line), a second edit changes one
 * known route, and its patch must be the very next event.
 */

import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startConfigServer, type ConfigServer } from '../../node-runner/config/config-server.ts';
import { applyDelete, applyPatch, applyPut, configInput, emptyDoc } from '../../src/core/config/config-doc.ts';
import { parseConfig } from '../../src/core/config/config.ts';
import { recordingLogger, type LogEntry } from '../../node-runner/log.ts';
import { waitFor } from '../helpers/http.ts';
import { scope, tempDir, type Scope } from '../helpers/scope.ts';

const KEY = 'config-key-0123456789abcdef';

// ---------------------------------------------------------------------------
// a small SSE client

interface SseEvent {
  event: string;
  data: any;
}

interface SseClient {
  status: number;
  headers: IncomingHttpHeaders;
  /** the body, for an answer that is not a stream */
  body(): string;
  events: SseEvent[];
  comments: string[];
  /** resolves when the server ends the response (or the connection closes) */
  ended: Promise<void>;
  close(): void;
}

/** Opens `url` with `Authorization: Bearer <key>` (none when key is null); closed with the scope. */
function connect(s: Scope, url: string, key: string | null = KEY): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (key !== null) headers.authorization = `Bearer ${key}`;
    const req = httpRequest(url, { headers }, (res) => {
      const events: SseEvent[] = [];
      const comments: string[] = [];
      let text = '';
      let buf = '';
      let event = '';
      let data: string[] = [];
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        buf += chunk;
        const lines = buf.split(/\r\n|\r|\n/);
        buf = lines.pop()!;
        for (const line of lines) {
          if (line === '') {
            if (data.length) events.push({ event: event || 'message', data: JSON.parse(data.join('\n')) });
            event = '';
            data = [];
          } else if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else {
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'event') event = value;
            else if (field === 'data') data.push(value);
          }
        }
      });
      const ended = new Promise<void>((r) => {
        res.once('end', () => r());
        res.once('close', () => r());
      });
      const client: SseClient = { status: res.statusCode!, headers: res.headers, body: () => text, events, comments, ended, close: () => req.destroy() };
      s.defer(() => client.close());
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Waits until the client holds `n` events; returns them. */
async function eventsUntil(c: SseClient, n: number, what = `${n} events`): Promise<SseEvent[]> {
  await waitFor(() => c.events.length >= n, { what }).catch((err: Error) => {
    throw new Error(`${err.message}; got ${JSON.stringify(c.events)}`);
  });
  return c.events;
}

// ---------------------------------------------------------------------------
// config files

interface Opts {
  staticBody?: string;
  apiPath?: string;
  extra?: boolean;
  bad?: boolean;
}

/** The config under test: two routes, an action, two plugins (relative paths), a key. */
function config(o: Opts = {}): Record<string, unknown> {
  return {
    gateway: { listen: '127.0.0.1:0' },
    routes: [
      { id: 'api', match: { path: o.apiPath ?? '/api/*' }, plugins: ['auth'], action: 'app' },
      { id: 'static', match: { path: '/s/*' }, action: { type: 'static', body: o.staticBody ?? 'hi' } },
    ],
    actions: { app: { type: 'proxy', upstream: 'http://127.0.0.1:1', timeout: '2s' } },
    plugins: {
      auth: { path: './plugins/auth.ts', env: { MODE: 'strict' } },
      ...(o.extra === false ? {} : { extra: { command: ['./bin/extra', '--fast'], cwd: 'work' } }),
    },
    runner: { keys: [{ id: 'edge', secret_env: 'EDGE_KEY' }] },
  };
}

/** Writes the config as an editor that replaces the file would (temp file, rename). */
function save(file: string, content: Record<string, unknown> | string): void {
  const tmp = `${file}.swp`;
  writeFileSync(tmp, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  renameSync(tmp, file);
}

interface Setup {
  dir: string;
  file: string;
  log: ReturnType<typeof recordingLogger>;
  server: ConfigServer;
}

async function start(s: Scope, o: { dir?: string; heartbeatMs?: number; log?: ReturnType<typeof recordingLogger> } = {}): Promise<Setup> {
  const dir = o.dir ?? tempDir(s, 'hookgate-config-server-');
  const file = join(dir, 'hookgate.json5');
  if (!existsSync(file)) writeFileSync(file, JSON.stringify(config(), null, 2));
  const log = o.log ?? recordingLogger();
  const server = await startConfigServer({ configFile: file, listen: '127.0.0.1:0', key: KEY, logger: log, heartbeatMs: o.heartbeatMs });
  s.defer(() => server.close());
  return { dir, file, log, server };
}

/** Waits for a log entry with message `msg` logged at index `from` or later. */
function logged(log: { entries: LogEntry[] }, msg: string, from: number): Promise<LogEntry> {
  return waitFor(() => log.entries.slice(from).find((e) => e.msg === msg), { what: `a log line "${msg}"` });
}

function versionsOf(put: Record<string, Record<string, { version: number }>>): number[] {
  return Object.values(put).flatMap((byId) => Object.values(byId).map((i) => i.version));
}

// ---------------------------------------------------------------------------

describe('config server stream', { concurrency: true, timeout: 30_000 }, () => {
  test('a new client gets a put with every item, its version, and plugin paths resolved against the config file', async (t) => {
    const s = scope(t);
    const { dir, server } = await start(s);
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/stream$/);
    const c = await connect(s, server.url);
    assert.equal(c.status, 200);
    assert.equal(c.headers['content-type'], 'text/event-stream');
    assert.equal(c.headers['cache-control'], 'no-cache');
    const [put] = await eventsUntil(c, 1);
    assert.equal(put.event, 'put');
    const d = put.data;
    assert.deepEqual(Object.keys(d).sort(), ['actions', 'keys', 'plugins', 'routes']);
    assert.deepEqual(Object.keys(d.routes), ['api', 'static']);
    assert.deepEqual(d.routes.api, { match: { path: '/api/*' }, plugins: ['auth'], action: 'app', order: 0, version: d.routes.api.version });
    assert.equal(d.routes.static.order, 1);
    assert.deepEqual(d.actions.app, { type: 'proxy', upstream: 'http://127.0.0.1:1', timeout: '2s', version: d.actions.app.version }, 'items are in config-input form, no defaults filled in');
    assert.deepEqual(d.plugins.auth, { path: join(dir, 'plugins/auth.ts'), env: { MODE: 'strict' }, cwd: dir, version: d.plugins.auth.version });
    assert.deepEqual(d.plugins.extra, { command: [join(dir, 'bin/extra'), '--fast'], cwd: join(dir, 'work'), version: d.plugins.extra.version });
    assert.deepEqual(d.keys.edge, { secret_env: 'EDGE_KEY', version: d.keys.edge.version });
    const versions = versionsOf(d);
    assert.equal(versions.length, 6);
    assert.ok(versions.every((v) => Number.isSafeInteger(v) && v > 0), `versions: ${versions}`);
    assert.equal(new Set(versions).size, 6, 'each item has its own version');
  });

  test('editing one route sends exactly one patch, with a version greater than any before', async (t) => {
    const s = scope(t);
    const { file, server } = await start(s);
    const c = await connect(s, server.url);
    const [put] = await eventsUntil(c, 1);
    const max = Math.max(...versionsOf(put.data));

    save(file, config({ apiPath: '/v2/*' }));
    const [, patch] = await eventsUntil(c, 2);
    assert.equal(patch.event, 'patch');
    assert.equal(patch.data.path, 'routes/api');
    assert.deepEqual(patch.data.data, { match: { path: '/v2/*' }, plugins: ['auth'], action: 'app', order: 0, version: max + 1 });

    save(file, config({ apiPath: '/v2/*', staticBody: 'marker' }));
    const [, , marker] = await eventsUntil(c, 3);
    assert.equal(marker.data.path, 'routes/static', 'nothing else was sent for the first edit');
    assert.equal(marker.data.data.version, max + 2);
    assert.equal(c.events.length, 3);
  });

  test('removing a plugin sends a delete with a new version; a new client no longer gets it', async (t) => {
    const s = scope(t);
    const { file, server } = await start(s);
    const c = await connect(s, server.url);
    const [put] = await eventsUntil(c, 1);
    const max = Math.max(...versionsOf(put.data));

    save(file, config({ extra: false }));
    const [, del] = await eventsUntil(c, 2);
    assert.deepEqual(del, { event: 'delete', data: { path: 'plugins/extra', version: max + 1 } });

    const late = await connect(s, server.url);
    const [put2] = await eventsUntil(late, 1);
    assert.deepEqual(Object.keys(put2.data.plugins), ['auth']);
    assert.equal(put2.data.plugins.auth.version, put.data.plugins.auth.version, 'an unchanged item keeps its version');
  });

  test('re-saving an unchanged file, even reformatted and reordered, sends nothing', async (t) => {
    const s = scope(t);
    const { file, server, log } = await start(s);
    const c = await connect(s, server.url);
    await eventsUntil(c, 1);

    const mark = log.entries.length;
    const same = config();
    const reordered = { runner: same.runner, plugins: same.plugins, actions: same.actions, routes: same.routes, gateway: { listen: '127.0.0.1:1234' } };
    save(file, `// reformatted\n${JSON.stringify(reordered)}`);
    await logged(log, 'config unchanged; nothing to send', mark);

    save(file, config({ staticBody: 'marker' }));
    const events = await eventsUntil(c, 2);
    assert.equal(events[1].data.path, 'routes/static');
    assert.equal(events.length, 2, 'the unchanged re-save sent nothing (local settings are not items)');
  });

  test('an invalid edit is logged with every problem and not sent; the previous config keeps being served', async (t) => {
    const s = scope(t);
    const { file, server, log } = await start(s);
    const c = await connect(s, server.url);
    const [put] = await eventsUntil(c, 1);

    let mark = log.entries.length;
    save(file, '{ routes: [ ');
    const notJson = await logged(log, 'config edit refused: invalid config; still serving the previous one', mark);
    assert.equal(notJson.level, 'error');
    assert.match(String((notJson.problems as string[])[0]), /not valid JSON5/);

    mark = log.entries.length;
    const bad = config({ apiPath: '/v2/*' }) as { routes: Array<Record<string, unknown>>; actions: Record<string, unknown> };
    bad.routes[0].action = 'missing';
    bad.actions.app = { type: 'proxy' };
    save(file, bad);
    const refused = await logged(log, 'config edit refused: invalid config; still serving the previous one', mark);
    const problems = refused.problems as string[];
    assert.ok(problems.some((p) => p.startsWith('routes[0].action: no action named "missing"')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('actions.app.upstream')), problems.join('\n'));

    const late = await connect(s, server.url);
    const [put2] = await eventsUntil(late, 1);
    assert.deepEqual(put2.data, put.data, 'a new client gets the previous config');

    save(file, config({ staticBody: 'marker' }));
    const events = await eventsUntil(c, 2);
    assert.equal(events[1].data.path, 'routes/static', 'the invalid edits sent nothing; the valid one is compared with the last valid config');
    assert.equal(events.length, 2);
  });

  test("one edit's events apply one at a time, each step a valid config, ending where a new client starts", async (t) => {
    const s = scope(t);
    const { file, server } = await start(s);
    const c = await connect(s, server.url);
    await eventsUntil(c, 1);

    // The route moves to a new plugin and a new action; the old ones and a route go.
    const next = config() as { routes: Array<Record<string, unknown>>; actions: Record<string, unknown>; plugins: Record<string, unknown> };
    next.routes = [{ id: 'api', match: { path: '/api/*' }, plugins: ['auth2'], action: 'app2' }, { id: 'new', action: 'app2' }];
    next.actions = { app2: { type: 'static', body: 'two' } };
    next.plugins = { auth2: { path: '/opt/auth2' } };
    save(file, next);
    await waitFor(() => c.events.length >= 8, { what: 'the events of the edit' });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      c.events.slice(1).map((e) => `${e.event} ${e.data.path}`),
      ['delete routes/static', 'patch plugins/auth2', 'patch actions/app2', 'patch routes/api', 'patch routes/new', 'delete actions/app', 'delete plugins/auth', 'delete plugins/extra'],
    );

    let doc = applyPut(emptyDoc(), c.events[0].data);
    for (const e of c.events.slice(1)) {
      const step = e.event === 'patch' ? applyPatch(doc, e.data) : applyDelete(doc, e.data);
      assert.ok(step.applied, `${e.event} ${e.data.path} applies`);
      doc = step.doc;
      assert.doesNotThrow(() => parseConfig(configInput(doc)), `the config after ${e.event} ${e.data.path} is valid`);
    }
    const late = await connect(s, server.url);
    const [put] = await eventsUntil(late, 1);
    assert.deepEqual(configInput(doc), configInput(applyPut(emptyDoc(), put.data)));
  });

  test('versions survive a restart: unchanged items keep theirs, and no version is reused', async (t) => {
    const s = scope(t);
    const dir = tempDir(s, 'hookgate-config-server-');
    const first = await start(s, { dir });
    const c1 = await connect(s, first.server.url);
    const [put1] = await eventsUntil(c1, 1);
    save(first.file, config({ staticBody: 'v2' }));
    const [, patch] = await eventsUntil(c1, 2);
    const highest = patch.data.data.version;
    await first.server.close();
    await c1.ended;

    const persisted = JSON.parse(readFileSync(`${first.file}.versions.json`, 'utf8'));
    assert.equal(persisted.counter, highest);
    assert.equal(persisted.items.routes.static.version, highest);
    assert.match(persisted.items.routes.static.sha256, /^[0-9a-f]{64}$/);

    // Edited while the server was down: one route changes, a plugin goes.
    save(first.file, config({ staticBody: 'v2', apiPath: '/v3/*', extra: false }));
    const second = await start(s, { dir });
    const c2 = await connect(s, second.server.url);
    const [put2] = await eventsUntil(c2, 1);
    assert.equal(put2.data.routes.api.version, highest + 1, 'the changed route gets a version never used before');
    assert.equal(put2.data.routes.static.version, highest);
    assert.equal(put2.data.actions.app.version, put1.data.actions.app.version);
    assert.equal(put2.data.plugins.auth.version, put1.data.plugins.auth.version);
    assert.equal(put2.data.keys.edge.version, put1.data.keys.edge.version);
    assert.equal(put2.data.plugins.extra, undefined);

    save(first.file, config({ staticBody: 'v2', apiPath: '/v3/*' }));
    const [, readded] = await eventsUntil(c2, 2);
    assert.equal(readded.data.path, 'plugins/extra');
    assert.ok(readded.data.data.version > highest + 1, `the re-added plugin's version ${readded.data.data.version} was never used`);
  });

  test('an unusable versions file is reported and replaced; versions then start from the clock, above any handed out before', async (t) => {
    const s = scope(t);
    const dir = tempDir(s, 'hookgate-config-server-');
    const file = join(dir, 'hookgate.json5');
    writeFileSync(file, JSON.stringify(config(), null, 2));
    writeFileSync(`${file}.versions.json`, '{"counter": "oops"');
    const before = Date.now();
    const { server, log } = await start(s, { dir });
    assert.ok(log.entries.some((e) => e.level === 'error' && e.msg.startsWith('the config versions file is unusable')));
    const c = await connect(s, server.url);
    const [put] = await eventsUntil(c, 1);
    assert.ok(versionsOf(put.data).every((v) => v > before), `versions: ${versionsOf(put.data)}`);
    assert.equal(JSON.parse(readFileSync(`${file}.versions.json`, 'utf8')).counter, Math.max(...versionsOf(put.data)));
  });

  test('a missing or wrong key gets 401 with no body; other paths get 404', async (t) => {
    const s = scope(t);
    const { server } = await start(s);
    for (const key of [null, 'wrong', `${KEY}x`, KEY.replace(/.$/, 'X')]) {
      const c = await connect(s, server.url, key);
      await c.ended;
      assert.equal(c.status, 401, `key ${key}`);
      assert.equal(c.body(), '');
      assert.equal(c.events.length, 0);
    }
    const other = await connect(s, server.url.replace('/v1/stream', '/v1/other'));
    await other.ended;
    assert.equal(other.status, 404);
  });

  test('every client receives the events of an edit; a client that left is dropped', async (t) => {
    const s = scope(t);
    const { file, server, log } = await start(s);
    const a = await connect(s, server.url);
    const b = await connect(s, server.url);
    const gone = await connect(s, server.url);
    await Promise.all([eventsUntil(a, 1), eventsUntil(b, 1), eventsUntil(gone, 1)]);
    gone.close();
    await waitFor(() => log.entries.some((e) => e.msg === 'config stream client left'), { what: 'the server to notice the client left' });

    const mark = log.entries.length;
    save(file, config({ staticBody: 'both' }));
    const [ea, eb] = await Promise.all([eventsUntil(a, 2), eventsUntil(b, 2)]);
    assert.deepEqual(ea[1], eb[1]);
    assert.deepEqual(ea[1].data.data.action, { type: 'static', body: 'both' });
    const updated = await logged(log, 'config updated', mark);
    assert.equal(updated.clients, 2);
  });

  test('heartbeat comments arrive every heartbeatMs; close() ends every stream', async (t) => {
    const s = scope(t);
    const { server } = await start(s, { heartbeatMs: 200 });
    const c = await connect(s, server.url);
    await waitFor(() => c.comments.length >= 2, { what: 'two heartbeats' });
    assert.deepEqual(c.comments.slice(0, 2), ['heartbeat', 'heartbeat']);
    assert.equal(c.events.length, 1, 'heartbeats are comments, not events');

    await server.close();
    await c.ended;
    await server.close(); // idempotent
  });

  test('an invalid file at start rejects with every problem; nothing is left listening', async (t) => {
    const s = scope(t);
    const dir = tempDir(s, 'hookgate-config-server-');
    const file = join(dir, 'hookgate.json5');
    writeFileSync(file, JSON.stringify({ routes: [{ id: 'x', action: 'nope' }], plugins: { p: {} } }));
    await assert.rejects(startConfigServer({ configFile: file, listen: '127.0.0.1:0', key: KEY, logger: recordingLogger() }), (err: Error & { problems?: string[] }) => {
      assert.equal(err.name === 'ConfigError' || (err as { code?: string }).code === 'BAD_CONFIG', true);
      assert.ok(err.problems!.some((p) => p.includes('routes[0].action')), err.problems!.join('\n'));
      assert.ok(err.problems!.some((p) => p.startsWith('plugins.p')), err.problems!.join('\n'));
      return true;
    });
    assert.equal(existsSync(`${file}.versions.json`), false);
  });
});
