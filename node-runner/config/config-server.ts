/**
 * @module config-server
 * `hookgate config-server`: serves a config file as the config stream of
 * docs/protocol.md §3 (`GET /v1/stream`, Server-Sent Events) to any number of
 * runners (`hookgate serve --config-url https://HOST:PORT/v1/stream`).
 *
 * What it owns:
 * - **Items.** The file is read as JSON5 and validated as a whole with
 *   `parseConfig` (every problem reported). The items sent are the file's
 *   own (config-input form, as a runner would write them in a file, no
 *   defaults filled in), taken by `itemsOf` from the raw input after plugin
 *   paths were made absolute against the file's folder: `path`, a
 *   `command`'s program when it contains a slash, and `cwd` (default: the
 *   file's folder), exactly as `loadConfigFile` resolves them. Paths are
 *   therefore resolved **on the server's machine**; runners elsewhere must
 *   have the plugins at the same absolute paths (and allow them in their
 *   `runner.plugins_allowed`). Local settings (`gateway`, `admin`,
 *   `runner.listen`) are not items and never leave the server;
 *   `runner.keys` do, as references only: a key with a literal `secret` is
 *   a config error here (runners would refuse it), `secret_env` is sent.
 * - **Transport.** HTTPS with `tls` (`--tls-cert`/`--tls-key`); the CLI
 *   serves plain HTTP only on a loopback address or with `--insecure-http`.
 *   With TLS the server reports its pin (`sha256:<hex>` of the
 *   certificate's public key) for runners' `--config-pin`.
 * - **Versions.** Every item has a version from one counter that only
 *   grows: a new or changed item (deep compare of its data, a route's
 *   `order` included) gets `++counter`, and so does the `delete` of a
 *   removed one. `<file>.versions.json` next to the config file keeps the
 *   counter and each item's version and sha256 (of its canonical JSON), so a
 *   restarted server never reuses a version and unchanged items keep
 *   theirs. It is written (temp file + rename) before any event that uses
 *   its versions is sent. Format:
 *   `{"counter":N,"items":{"routes":{"<id>":{"version":N,"sha256":"<hex>"}},"actions":{},"plugins":{},"keys":{}}}`.
 *   A versions file that cannot be parsed is reported and replaced, with
 *   the counter seeded from the clock (ms since the epoch) so it still
 *   passes any version handed out before; a missing one starts at 0.
 * - **Watching.** The file's folder is watched (editors replace files),
 *   debounced 150 ms. An invalid edit (unreadable, not JSON5, or refused
 *   by `parseConfig`) is logged with every problem and not sent; the
 *   previous state keeps being served. An edit that changes no item sends
 *   nothing.
 * - **The stream.** `Authorization: Bearer <key>` (compared in constant
 *   time; anything else: 401, no body). Events, each `event: <name>\ndata:
 *   <one-line JSON>\n\n`: first a `put` with every item (wire shapes of
 *   `config-doc.ts`), then `patch` / `delete` per changed item, and a
 *   `: heartbeat\n\n` comment every `heartbeatMs`. The events of one edit
 *   are sent in an order a runner applying them one at a time can follow:
 *   deleted routes first, then patches (plugins, actions, keys, routes),
 *   then deleted actions, plugins and keys. A client that cannot keep up
 *   (over 8 MiB unsent) is dropped; it reconnects and gets a fresh `put`.
 *
 * Left to others: applying the events (`config-doc.ts`, the runner's
 * stream client), argument wiring into the `hookgate` CLI (`cli.ts`).
 */

import { createHash, X509Certificate } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError } from '../../src/core/config/config.ts';
import { canonicalJson, itemsOf, KINDS, type Kind } from '../../src/core/config/config-doc.ts';
import type { Logger } from '../../src/core/log.ts';
import { parseWithDiscovery, readConfigInput, resolvePluginPaths } from './config-file.ts';
import { resolveServePaths } from '../gateway/serve-paths.ts';
import { spkiSha256 } from './config-tls.ts';
import { putOf as putOf_, type EtcdKv, type EtcdSettings } from './etcd.ts';
import { KeyRing } from '../hook-api/keys.ts';
import { keyProblems } from './stream-policy.ts';
import { readPersisted, writePersisted } from './versions-file.ts';
import { splitListen } from '../runner.ts';

/** The path the stream is served at. */
export const STREAM_PATH = '/v1/stream';
/** Shortest key `configServerMain` accepts. */
export const MIN_KEY_LENGTH = 16;

const DEBOUNCE_MS = 150;
const MAX_UNSENT_BYTES = 8 * 1024 * 1024;
/** Order of the patches of one edit: what routes refer to comes first. */
const PATCH_RANK: Record<Kind, number> = { plugins: 0, actions: 1, keys: 2, routes: 3 };

export interface ConfigServerOptions {
  /** the config file (JSON5) to serve and watch */
  configFile?: string;
  /** instead of a file: serve what is in etcd (versions are etcd revisions) */
  etcd?: EtcdSettings;
  /** `host:port` (`[::1]:port` for IPv6); port 0 picks a free one */
  listen: string;
  /** the bearer key clients must present */
  key: string;
  logger: Logger;
  /** interval of `: heartbeat` comments; default 15000 */
  heartbeatMs?: number;
  /** serve HTTPS with this certificate (chain) and private key, both PEM */
  tls?: { cert: string; key: string };
}

export interface ConfigServer {
  /** the stream's URL, e.g. `https://127.0.0.1:9000/v1/stream` (the real port when 0 was asked) */
  url: string;
  /** with TLS: what runners pass as `--config-pin` (`sha256:<hex>` of the certificate's public key) */
  pin?: string;
  /** Re-reads the file now (as a watched change does); resolves once handled. Never rejects. */
  reload(): Promise<void>;
  /** Ends every stream, stops watching and closes the listener. Idempotent. */
  close(): Promise<void>;
}

interface Held {
  version: number;
  sha256: string;
  data: Record<string, unknown>;
}

type State = Record<Kind, Map<string, Held>>;


type ServerEvent = { name: 'patch'; kind: Kind; id: string; version: number; data: Record<string, unknown> } | { name: 'delete'; kind: Kind; id: string; version: number };

/**
 * Starts serving `configFile` as a config stream. Rejects with
 * `ConfigError` (every problem listed) when the file is invalid at start,
 * or with the listen error; nothing is left running then.
 *
 * Contract: the returned server watches the file until `close()`, which is
 * idempotent and ends every open stream. Clients may connect and
 * disconnect at any time, concurrently with edits: a client always gets a
 * `put` of the state current when it connected, then every change after it.
 *
 * @example
 * const server = await startConfigServer({ configFile: 'hookgate.json5', listen: '127.0.0.1:9000', key, logger });
 * // runners: hookgate serve --config-url http://127.0.0.1:9000/v1/stream
 * await server.close();
 */
export async function startConfigServer(opts: ConfigServerOptions): Promise<ConfigServer> {
  const log = opts.logger.child({ component: 'config-server' });
  if (opts.etcd) return startEtcdConfigServer(opts, opts.etcd, log);
  if (!opts.configFile) throw new Error('startConfigServer: configFile or etcd is required');
  const configFile = resolve(opts.configFile);
  const versionsFile = `${configFile}.versions.json`;

  // Initial state: the file's items, versioned against what was persisted.
  const warn = (w: string) => log.warn({ file: configFile }, w);
  const items = await readItems(configFile, warn);
  const persisted = await readPersisted(versionsFile, log);
  let counter = persisted.counter;
  const state = emptyState();
  let changed = persisted.missing;
  for (const kind of KINDS) {
    for (const [id, data] of items[kind]) {
      const hash = sha256(canonicalJson(data));
      const before = persisted.items[kind].get(id);
      if (before && before.sha256 === hash) state[kind].set(id, { version: before.version, sha256: hash, data });
      else {
        state[kind].set(id, { version: ++counter, sha256: hash, data });
        changed = true;
      }
    }
    for (const id of persisted.items[kind].keys()) if (!items[kind].has(id)) changed = true;
  }
  if (changed) await writePersisted(versionsFile, counter, state);

  const stream = await listenStream(opts, log, () => putOf(state));
  const { broadcast, clients, url, pin } = stream;

  // Reloads run one at a time, in order; a client connecting while one
  // persists gets the previous state's put and then this reload's events.
  let chain: Promise<void> = Promise.resolve();
  let closed = false;
  const reloadOnce = async (): Promise<void> => {
    if (closed) return;
    let next: Record<Kind, Map<string, Record<string, unknown>>>;
    try {
      next = await readItems(configFile, warn);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [String((err as Error)?.message ?? err)];
      log.error({ file: configFile, problems }, 'config edit refused: invalid config; still serving the previous one');
      return;
    }
    if (closed) return;
    const deletes: ServerEvent[] = [];
    const patches: ServerEvent[] = [];
    const nextState = emptyState();
    let version = counter;
    for (const kind of KINDS) {
      for (const [id, data] of next[kind]) {
        const hash = sha256(canonicalJson(data));
        const held = state[kind].get(id);
        if (held && held.sha256 === hash) nextState[kind].set(id, held);
        else {
          const v = ++version;
          nextState[kind].set(id, { version: v, sha256: hash, data });
          patches.push({ name: 'patch', kind, id, version: v, data });
        }
      }
      for (const id of state[kind].keys()) if (!next[kind].has(id)) deletes.push({ name: 'delete', kind, id, version: ++version });
    }
    if (!patches.length && !deletes.length) {
      log.debug({ file: configFile }, 'config unchanged; nothing to send');
      return;
    }
    try {
      await writePersisted(versionsFile, version, nextState);
    } catch (err) {
      log.error({ file: versionsFile, err: (err as Error).message }, 'cannot persist config versions; the edit is not sent');
      return;
    }
    counter = version;
    for (const kind of KINDS) state[kind] = nextState[kind];
    // Dependencies before dependents: what routes stop using goes last.
    const rank = (e: ServerEvent) => (e.name === 'delete' ? (e.kind === 'routes' ? 0 : 5) : 1 + PATCH_RANK[e.kind]);
    const events = [...deletes, ...patches].sort((a, b) => rank(a) - rank(b) || a.version - b.version);
    for (const e of events) {
      const path = `${e.kind}/${e.id}`;
      broadcast(e.name === 'patch' ? sseEvent('patch', { path, data: { ...e.data, version: e.version } }) : sseEvent('delete', { path, version: e.version }));
    }
    log.info(
      { patched: patches.map((e) => `${e.kind}/${e.id}`), deleted: deletes.map((e) => `${e.kind}/${e.id}`), version: counter, clients: clients.size },
      'config updated',
    );
  };
  const reload = (): Promise<void> => (chain = chain.then(reloadOnce, reloadOnce));

  let pending: NodeJS.Timeout | null = null;
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(dirname(configFile), (_event, name) => {
      if (name !== null && name !== basename(configFile)) return;
      if (pending) clearTimeout(pending);
      pending = setTimeout(() => {
        pending = null;
        void reload();
      }, DEBOUNCE_MS);
    });
    watcher.on('error', (err) => log.warn({ err: err.message }, 'cannot watch the config file any more; restart the config server to pick up edits'));
  } catch (err) {
    log.warn({ err: (err as Error).message, file: configFile }, 'cannot watch the config file; edits are not picked up');
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      closed = true;
      watcher?.close();
      if (pending) clearTimeout(pending);
      await stream.close();
      await chain;
    })());

  return { url, pin, reload, close };
}

/** The HTTP side of a config server: the stream endpoint, its clients, heartbeats. */
interface StreamListener {
  url: string;
  pin?: string;
  clients: Set<ServerResponse>;
  broadcast(chunk: string): void;
  /** ends every stream and closes the listener */
  close(): Promise<void>;
}

/**
 * Listens for stream clients (`GET /v1/stream` with the key): each new
 * client gets `currentPut()` as its first event, then what is broadcast.
 * Rejects with the listen error.
 */
async function listenStream(opts: ConfigServerOptions, log: Logger, currentPut: () => unknown): Promise<StreamListener> {
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const keys = new KeyRing([{ id: 'config', secret: opts.key, expiresAt: null }]);
  const listen = splitListen(opts.listen);
  const clients = new Set<ServerResponse>();
  const send = (res: ServerResponse, chunk: string) => {
    if (res.writableEnded || res.destroyed) return;
    res.write(chunk);
    if (res.writableLength > MAX_UNSENT_BYTES) {
      log.warn({ unsent: res.writableLength }, 'config stream client does not keep up; dropping it');
      clients.delete(res);
      res.destroy();
    }
  };
  const broadcast = (chunk: string) => {
    for (const res of clients) send(res, chunk);
  };

  const server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, (req, res) => handle(req, res)) : createServer((req, res) => handle(req, res));
  const pin = opts.tls ? `sha256:${spkiSha256(new X509Certificate(opts.tls.cert))}` : undefined;
  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== STREAM_PATH) {
      res.writeHead(404, { 'content-length': '0' }).end();
      return;
    }
    if (!keys.verify(req.headers.authorization)) {
      res.writeHead(401, { 'content-length': '0', 'www-authenticate': 'Bearer' }).end();
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { 'content-length': '0', allow: 'GET' }).end();
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    clients.add(res);
    const drop = () => {
      if (clients.delete(res)) log.debug({ clients: clients.size }, 'config stream client left');
    };
    res.once('close', drop);
    log.debug({ clients: clients.size, remote: req.socket.remoteAddress }, 'config stream client connected');
    send(res, sseEvent('put', currentPut()));
  }

  const heartbeat = setInterval(() => broadcast(': heartbeat\n\n'), heartbeatMs);
  heartbeat.unref();

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(listen.port, listen.host, () => {
      server.off('error', fail);
      ok();
    });
  }).catch((err: unknown) => {
    clearInterval(heartbeat);
    throw err;
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}${STREAM_PATH}`;

  const close = async () => {
    clearInterval(heartbeat);
    for (const res of clients) res.end();
    clients.clear();
    // Ended streams leave idle connections, which close() closes; a
    // client that stopped reading would hold its socket, so after a
    // grace period every connection is cut.
    await new Promise<void>((r) => {
      const cut = setTimeout(() => server.closeAllConnections(), 1000);
      server.close(() => {
        clearTimeout(cut);
        r();
      });
    });
  };
  return { url, pin, clients, broadcast, close };
}

/**
 * A config server fed from etcd: the keys under the prefix (etcd.ts
 * layout), followed by `EtcdFollower`. Versions are etcd's: an item's is
 * its key's mod_revision, a delete's the revision that deleted it, so
 * every config server following the same cluster hands out the same
 * versions and runners can move between them. A change of one item is a
 * `patch` or `delete`; a change of several (one transaction) is one `put`
 * of everything, so a runner applies it as one version.
 */
async function startEtcdConfigServer(opts: ConfigServerOptions, settings: EtcdSettings, log: Logger): Promise<ConfigServer> {
  const { EtcdFollower } = await import('./etcd-source.ts');
  let state = emptyState();
  let revision = 0;
  const toState = (kvs: EtcdKv[], at: number): State => {
    const { put, problems } = putOf_(kvs, settings.prefix);
    for (const p of problems) log.warn({ revision: at }, p);
    const next = emptyState();
    for (const kind of KINDS) {
      for (const [id, raw] of Object.entries(put[kind])) {
        const { version, ...data } = raw as Record<string, unknown> & { version: number };
        next[kind].set(id, { version, sha256: sha256(canonicalJson(data)), data });
      }
    }
    return next;
  };
  let stream: StreamListener | null = null;
  let first: (() => void) | null = null;
  const ready = new Promise<void>((r) => (first = r));
  const follower = new EtcdFollower({
    settings,
    logger: log.child({ component: 'etcd' }),
    onRevision: async (kvs, at, how) => {
      const next = toState(kvs, at);
      const events: string[] = [];
      for (const kind of KINDS) {
        for (const [id, held] of next[kind]) {
          const before = state[kind].get(id);
          if (!before || before.sha256 !== held.sha256) events.push(sseEvent('patch', { path: `${kind}/${id}`, data: { ...held.data, version: held.version } }));
        }
        for (const id of state[kind].keys()) if (!next[kind].has(id)) events.push(sseEvent('delete', { path: `${kind}/${id}`, version: at }));
      }
      state = next;
      revision = at;
      first?.();
      first = null;
      if (!stream || !events.length) return;
      stream.broadcast(events.length === 1 && how === 'watch' ? events[0] : sseEvent('put', putOf(state)));
      log.info({ revision: at, changes: events.length, clients: stream.clients.size }, 'config updated from etcd');
    },
  });
  follower.start();
  // Serve only once the first read is in: a client's first put must be a real config.
  await ready;
  try {
    stream = await listenStream(opts, log, () => putOf(state));
  } catch (err) {
    await follower.stop();
    throw err;
  }
  log.info({ revision, endpoints: settings.hosts }, 'serving the config in etcd');
  let closing: Promise<void> | null = null;
  return {
    url: stream.url,
    pin: stream.pin,
    reload: async () => follower.reread(),
    close: () => (closing ??= (async () => {
      await follower.stop();
      await stream!.close();
    })()),
  };
}

// ---------------------------------------------------------------------------

function emptyState(): State {
  return { routes: new Map(), actions: new Map(), plugins: new Map(), keys: new Map() };
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}



function sseEvent(name: 'put' | 'patch' | 'delete', data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

function putOf(state: State): Record<Kind, Record<string, Record<string, unknown>>> {
  const put = {} as Record<Kind, Record<string, Record<string, unknown>>>;
  for (const kind of KINDS) put[kind] = Object.fromEntries([...state[kind]].map(([id, h]) => [id, { ...h.data, version: h.version }]));
  return put;
}


/**
 * The file's items: read, `plugins_dir` discovered into `plugins` (so a
 * discovered plugin is streamed like one written there; discovery warnings
 * go to `onWarning`), validated whole by `parseConfig`, plugin paths made
 * absolute against the file's folder (in the raw input, which stays what a
 * runner would write in a file). Throws `ConfigError`.
 */
export async function readItems(file: string, onWarning?: (warning: string) => void): Promise<Record<Kind, Map<string, Record<string, unknown>>>> {
  const raw = await readConfigInput(file);
  const config = await parseWithDiscovery(raw, dirname(file), onWarning);
  // Runners refuse literal secrets from a stream: say so here, before any is sent.
  const problems = keyProblems(config);
  if (problems.length) throw new ConfigError(problems);
  const input = raw as { plugins?: Record<string, Record<string, unknown>> } & Parameters<typeof itemsOf>[0];
  resolvePluginPaths(input.plugins ?? {}, dirname(file));
  resolveServePaths(input, dirname(file));
  return itemsOf(input);
}
