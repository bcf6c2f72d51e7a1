/**
 * @module hookgate/sdk
 * Write a hookgate (prox-protocol) plugin in TypeScript: register handlers,
 * call `start()`, and the SDK speaks the protocol (docs/protocol.md §1):
 * configure lines on stdin (acknowledged, then `ready`), hook frames on a
 * Unix socket in a private directory (removed on exit), pushes and logs on
 * stdout. docs/sdk.md shows an example per hook.
 *
 * Hook data and replies are the protocol's structs with their short wire
 * keys (`req.h`, `req.p`, `{ ok, h }` ...), re-exported from
 * `src/core/protocol/protocol.ts`, where every field is documented. The Python SDK
 * (sdk/python/hookgate_plugin.py) has the same shape.
 *
 * @example
 * import { createPlugin, allow, deny } from 'hookgate/sdk';
 * createPlugin()
 *   .onRequest((req) => (req.h['Authorization'] === 'Bearer s3cret' ? allow({ 'X-User': 'alice' }) : deny(401)))
 *   .start();
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeEnvelope, decodeHookData, encodeResultFrame, FrameDecoder } from '../../src/core/protocol/codec.ts';
import {
  HOOK_NAMES,
  MAGIC_COOKIE_KEY,
  MAGIC_COOKIE_VALUE,
  SOCKET_DIR_KEY,
  hookName,
  type AuthorizeResult,
  type ConnInfo,
  type DisconnectInfo,
  type HeaderMap,
  type HookName,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from '../../src/core/protocol/protocol.ts';
import { LineSplitter } from '../lines.ts';

/** The longest Unix socket path Linux takes (sun_path holds 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/** The hook structs, field by field in src/core/protocol/protocol.ts and docs/protocol.md §1.6. */
export type { AuthorizeResult, ConnInfo, DisconnectInfo, HeaderMap, RequestInfo, ResponseModResult, ResponsePair };

/** What `configure` tells a plugin about one route it is bound to (docs/protocol.md §1.2). */
export interface ConfigureParams {
  /** the route's id; empty for an `autostart` plugin that no route binds */
  route_id: string;
  /** the route's patterns as written in the config; absent when both are empty */
  match?: {
    /** the route's domain pattern(s), e.g. `"*.example.com"` */
    domain?: string;
    /** the route's path pattern(s), e.g. `"/v1/*"` */
    path?: string;
  };
}

/**
 * An on_request reply: any subset of AuthorizeResult (missing fields are
 * zero values, so `{}` is a deny with 403). Build it with the helpers below
 * rather than by hand.
 */
export type Verdict = Partial<AuthorizeResult>;

/** A handler may answer at once or with a promise. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * Who a push is for: `{ route_id: 'api' }` (one route), `{ route_id: '*' }`
 * (every route with a balancer; for set_speed every route) or
 * `{ action: 'app' }` (every route with a balancer whose action is `app`).
 */
export type PushTo =
  | {
      /** a route id, or `"*"` */
      route_id: string;
    }
  | {
      /** an action name */
      action: string;
    };

/** A pushed speed limit (docs/protocol.md §1.3 `set_speed`); a verdict's `sp` overrides it per request. */
export interface SpeedPush {
  /** response bodies, Mbps; 0 or absent: no limit */
  download_mbps?: number;
  /** request bodies, Mbps; 0 or absent: no limit */
  upload_mbps?: number;
  /** streams with the same key share one budget */
  group_key?: string;
}

// ---------------------------------------------------------------------------
// Verdict helpers

/**
 * Allow the request, optionally setting headers on the upstream request
 * (`ok`, `h`) and removing others (`rm`, a hookgate extension: later
 * plugins and the upstream see the request without them).
 *
 * @example
 * return allow({ 'X-User': 'alice' }, ['Cookie']);
 */
export function allow(headers?: HeaderMap, remove?: string[]): Verdict {
  const v: Verdict = { ok: true };
  if (headers) v.h = headers;
  if (remove?.length) v.rm = remove;
  return v;
}

/**
 * Deny the request with a status (default 403), a body and headers sent
 * to the client (`s`, `b`, `h`).
 *
 * @example
 * return deny(401, 'unauthorized\n', { 'Www-Authenticate': 'Bearer' });
 */
export function deny(status = 403, body = '', headers?: HeaderMap): Verdict {
  const v: Verdict = { ok: false, s: status };
  if (body) v.b = body;
  if (headers) v.h = headers;
  return v;
}

/** Close the client's connection without any response (`dr`). */
export function drop(): Verdict {
  return { ok: false, dr: true };
}

/** Serve the route action's fallback instead of the action (`fb`; 503 when it has none). */
export function fallback(): Verdict {
  return { ok: false, fb: true };
}

/**
 * Returns a copy of `v` with one more header (upstream on allow, to the
 * client on deny).
 *
 * @example
 * return withHeader(allow(), 'X-Tenant', 'acme');
 */
export function withHeader(v: Verdict, name: string, value: string): Verdict {
  return { ...v, h: { ...v.h, [name]: value } };
}

/** Returns a copy of an allow verdict that sends `path` upstream instead of the request's (`rp`: `/` first, no `?`, `#` or spaces). */
export function rewritePath(v: Verdict, path: string): Verdict {
  return { ...v, rp: path };
}

/** Returns a copy of an allow verdict that strips the query string before the request goes upstream (`cq`). */
export function cleanQuery(v: Verdict): Verdict {
  return { ...v, cq: true };
}

/**
 * Returns a copy of an allow verdict with a speed limit in Mbps (`sp`;
 * requests with the same `groupKey` share one budget).
 *
 * @example
 * return limitSpeed(allow(), 50, 10, 'tenant-acme');
 */
export function limitSpeed(v: Verdict, downloadMbps: number, uploadMbps = 0, groupKey = ''): Verdict {
  return { ...v, sp: { dl: downloadMbps, ul: uploadMbps, gk: groupKey } };
}

// ---------------------------------------------------------------------------

type Handlers = {
  on_request?: (req: RequestInfo) => MaybePromise<Verdict>;
  on_response?: (pair: ResponsePair) => MaybePromise<Partial<ResponseModResult> | void>;
  on_connect?: (info: ConnInfo) => MaybePromise<boolean>;
  on_disconnect?: (info: DisconnectInfo) => MaybePromise<void>;
};

const HOW_TO =
  'This program is a hookgate plugin. It is meant to be started by the hookgate runner,\n' +
  'which talks to it over stdin/stdout and a Unix socket, not run by hand.\n' +
  'To try it, run:  npx hookgate plugin-call <this file> --route api --data \'{"m":"GET","p":"/"}\'\n' +
  'or bind it to a route in a config file and run:  npx hookgate serve --config <file>\n';

/**
 * One plugin. Register handlers (each returns `this`), then `start()`.
 *
 * Contract: handlers may be sync or async; a handler that throws (or
 * rejects) makes the SDK log the error and close that connection, so the
 * runner applies the binding's `on_error` verdict rather than a made-up
 * answer. Hooks without a handler are not declared, so the runner never
 * calls them. `start()` may be called once; the plugin exits by itself when
 * the runner closes stdin or sends SIGTERM/SIGINT, removing its socket.
 */
export class Plugin {
  #handlers: Handlers = {};
  #onConfigure: ((p: ConfigureParams) => MaybePromise<void>) | null = null;
  #server: Server | null = null;
  #dir = '';
  #socket = '';
  #started = false;
  #stopping = false;
  #conns = new Set<Socket>();

  /**
   * Called for every `configure` (once per bound route, again after
   * changes and restarts); throw (or reject) to refuse it: the runner logs
   * the message and no `ready` follows.
   */
  onConfigure(fn: (params: ConfigureParams) => MaybePromise<void>): this {
    this.#onConfigure = fn;
    return this;
  }

  /**
   * Decides what happens to a request: return allow(), deny(), drop(),
   * fallback(), optionally through withHeader/rewritePath/cleanQuery/limitSpeed.
   *
   * @example
   * plugin.onRequest((req) => (req.h['Authorization'] ? allow() : deny(401)));
   */
  onRequest(fn: (req: RequestInfo) => MaybePromise<Verdict>): this {
    this.#handlers.on_request = fn;
    return this;
  }

  /**
   * Changes the upstream's response: return `{ s, h, rm }` (new status,
   * headers to set, header names to remove), or nothing to keep it.
   *
   * @example
   * plugin.onResponse((pair) => ({ h: { 'Cache-Control': 'no-store' }, rm: ['Server'] }));
   */
  onResponse(fn: (pair: ResponsePair) => MaybePromise<Partial<ResponseModResult> | void>): this {
    this.#handlers.on_response = fn;
    return this;
  }

  /** Gates a WebSocket session (after on_request allowed the upgrade): return true to allow it, false refuses it with 403. */
  onConnect(fn: (info: ConnInfo) => MaybePromise<boolean>): this {
    this.#handlers.on_connect = fn;
    return this;
  }

  /** Told when a WebSocket session ends (`rx`/`tx` bytes from/to the client, `ms` duration); no answer is sent. */
  onDisconnect(fn: (info: DisconnectInfo) => MaybePromise<void>): this {
    this.#handlers.on_disconnect = fn;
    return this;
  }

  /**
   * Replaces a balancer's targets: a list, or groups (one sub-pool per key).
   *
   * @example
   * plugin.setTargets({ route_id: '*' }, ['10.0.0.1:3000', '10.0.0.2:3000']);
   * plugin.setTargets({ action: 'api' }, { eu: ['10.0.1.1:3000'], us: ['10.0.2.1:3000'] });
   */
  setTargets(to: PushTo, targets: string[] | Record<string, string[]>): void {
    const params = Array.isArray(targets) ? { ...to, targets } : { ...to, groups: targets };
    this.#send({ method: 'set_targets', params });
  }

  /**
   * Sets the default speed limit in Mbps of the addressed routes (same group key = shared budget).
   *
   * @example
   * plugin.setSpeed({ route_id: '*' }, { download_mbps: 50, upload_mbps: 10 });
   */
  setSpeed(to: PushTo, limit: SpeedPush): void {
    this.#send({ method: 'set_speed', params: { ...to, ...limit } });
  }

  /**
   * Logs through the runner's log (tagged with the plugin's name and
   * `from: "plugin"`). `fields` become key/value `args`, logged as fields.
   *
   * @example
   * plugin.log.warn('token store unreachable', { attempt: 3 });
   */
  readonly log = {
    debug: (message: string, fields?: Record<string, unknown>) => this.#log('debug', message, fields),
    info: (message: string, fields?: Record<string, unknown>) => this.#log('info', message, fields),
    warn: (message: string, fields?: Record<string, unknown>) => this.#log('warn', message, fields),
    error: (message: string, fields?: Record<string, unknown>) => this.#log('error', message, fields),
  };

  /** The socket path, once started. */
  get socketPath(): string {
    return this.#socket;
  }

  /**
   * Starts serving. When the handshake variables are missing (the program
   * was run by hand) prints how to use it instead and exits with status 1.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
      process.stderr.write(HOW_TO);
      process.exit(1);
    }
    // The runner's folder for this process when it made one (it removes it
    // even when we are SIGKILLed); our own otherwise (an older runner).
    const given = process.env[SOCKET_DIR_KEY];
    this.#socket = given ? join(given, 'plugin.sock') : '';
    if (!given || Buffer.byteLength(this.#socket) > MAX_SOCKET_PATH) {
      this.#dir = mkdtempSync(join(tmpdir(), 'hookgate-plugin-'));
      this.#socket = join(this.#dir, 'plugin.sock');
    }
    process.on('exit', () => this.#cleanup());
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => this.stop());
    const server = createServer((c) => this.#serve(c));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#socket, () => resolve());
    });
    process.stdin.setEncoding('utf8');
    const lines = new LineSplitter((l) => void this.#onLine(l), () => this.log.warn('ignored an over-long stdin line'));
    process.stdin.on('data', (c: string) => lines.push(c));
    process.stdin.on('end', () => this.stop());
    process.stdin.on('error', () => this.stop());
  }

  /** Stops serving, removes the socket and its directory, exits 0. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#server?.close();
    for (const c of this.#conns) c.destroy();
    this.#cleanup();
    process.exit(0);
  }

  #cleanup(): void {
    // Our own folder goes; in the runner's folder only our socket (the runner removes the folder).
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
    else if (this.#socket) rmSync(this.#socket, { force: true });
    this.#dir = '';
  }

  async #onLine(line: string): Promise<void> {
    if (!line.trim()) return;
    let msg: { method?: string; params?: ConfigureParams };
    try {
      msg = JSON.parse(line);
    } catch {
      this.log.warn('ignored a stdin line that is not JSON');
      return;
    }
    if (msg.method !== 'configure') return;
    try {
      await this.#onConfigure?.(msg.params ?? { route_id: '' });
    } catch (err) {
      this.#send({ error: (err as Error).message || String(err) });
      return;
    }
    this.#send({ result: 'ok' });
    const hooks = HOOK_NAMES.filter((h) => this.#handlers[h]);
    this.#send({ method: 'ready', params: { socket: this.#socket, hooks } });
  }

  #log(level: string, message: string, fields?: Record<string, unknown>): void {
    const args: unknown[] = [];
    for (const [k, v] of Object.entries(fields ?? {})) args.push(k, v);
    this.#send({ method: 'log', params: { level, message, ...(args.length ? { args } : {}) } });
  }

  #send(msg: unknown): void {
    process.stdout.write(JSON.stringify(msg) + '\n');
  }

  #serve(c: Socket): void {
    this.#conns.add(c);
    const dec = new FrameDecoder();
    c.on('close', () => this.#conns.delete(c));
    c.on('error', () => {});
    // The runner sends one call at a time per connection (notifications
    // excepted, which get no reply), so frames are handled as they come.
    c.on('data', (chunk: Buffer) => {
      let frames: Uint8Array[];
      try {
        frames = dec.push(chunk);
      } catch (err) {
        this.log.warn('closing a connection: ' + (err as Error).message);
        c.destroy();
        return;
      }
      for (const f of frames) this.#handle(c, f);
    });
  }

  /** Handles one frame; synchronous when the handler is. */
  #handle(c: Socket, payload: Uint8Array): void {
    let hook: HookName | undefined;
    try {
      const env = decodeEnvelope(payload);
      hook = hookName(env.t);
      const handler = hook && this.#handlers[hook];
      if (!hook || !handler) return; // not ours: no reply, as the protocol says
      const out = (handler as (d: unknown) => unknown)(decodeHookData(hook, env.d));
      if (out instanceof Promise) {
        const h = hook;
        out.then(
          (v) => this.#reply(c, h, v),
          (err) => this.#failed(c, h, err),
        );
      } else this.#reply(c, hook, out);
    } catch (err) {
      this.#failed(c, hook, err);
    }
  }

  #reply(c: Socket, hook: HookName, value: unknown): void {
    if (hook === 'on_disconnect' || c.destroyed) return;
    try {
      const result = hook === 'on_connect' ? { ok: value === true } : ((value ?? {}) as Partial<AuthorizeResult>);
      c.write(encodeResultFrame(hook, result));
    } catch (err) {
      this.#failed(c, hook, err);
    }
  }

  #failed(c: Socket, hook: HookName | undefined, err: unknown): void {
    this.log.error(`${hook ?? 'hook'} failed; closing the connection so the runner applies on_error`, { error: (err as Error)?.message ?? String(err) });
    c.destroy();
  }
}

/**
 * Creates a plugin.
 *
 * @example
 * const plugin = createPlugin().onRequest(() => allow());
 * await plugin.start();
 */
export function createPlugin(): Plugin {
  return new Plugin();
}
