/**
 * @module test/hook-api/harness
 * What the runner hook API tests (and the edge tests, which call hooks on
 * a runner) share: real parts, started and always stopped.
 *
 * * `Scope`: owns what a test or a file starts (temp dirs, servers,
 *   processes, clients) and tears it down in reverse order, passed or not.
 * * `startRunner`: writes a config into a temp dir and runs
 *   `node node-runner/cli.ts serve --config FILE`, as users do; resolves
 *   once the gateway, admin and runner listeners have logged their URLs and
 *   `/readyz` says every plugin is ready (or fails with the stderr).
 * * Hook API clients: `postFrames` (POST /v1/hooks), `getState`
 *   (GET /v1/state) and `openLink` (the /v1/hooks/ws WebSocket, with the
 *   `ws` package because it can send an Authorization header).
 * * `startUpstream`: a real HTTP (and WebSocket echo) server on 127.0.0.1
 *   that records what reached it.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { WebSocket as WsClient, WebSocketServer, type RawData } from 'ws';
import { decodeFrames, unpackValue } from '../../src/core/codec.ts';
import type { RequestInfo } from '../../src/core/protocol.ts';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

export const ROOT = here('../../');
export const CLI = here('../../node-runner/cli.ts');
export const AUTH_PLUGIN = here('../../examples/plugins/auth.ts');
/** The configurable SDK plugin (see its header for what each path does). */
export const EDGE_PLUGIN = here('../fixtures/edge/edge-plugin.ts');

/** The runner API key every test config carries (id "edge"). */
export const KEY = 'edge-key-0123456789abcdef';
export const FRAMES_TYPE = 'application/vnd.hookgate.frames';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// scope: cleanup that always runs

/**
 * Owns cleanups and runs them in reverse order on `close()`, each once,
 * every one even when an earlier one fails (the first error is rethrown
 * after all have run).
 */
export class Scope {
  #cleanups: Array<() => unknown> = [];
  #closed = false;

  /** Registers a cleanup; it runs on close (at once if already closed). */
  defer(fn: () => unknown): void {
    if (this.#closed) void Promise.resolve().then(fn);
    else this.#cleanups.push(fn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    let first: unknown = null;
    for (const fn of this.#cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        first ??= err;
      }
    }
    if (first) throw first;
  }
}

/** A scope closed when the test ends (passed or failed). */
export function scope(t: TestContext): Scope {
  const s = new Scope();
  t.after(() => s.close());
  return s;
}

/** A temp dir removed when the scope closes. */
export function tempDir(s: Scope, prefix = 'hookgate-hookapi-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  s.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What a truthy check leaves of `T`. */
export type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

/**
 * Polls `cond` until it returns a truthy value (returned); throws after
 * `timeoutMs` naming `what` and the last value seen.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<Truthy<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as Truthy<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}`);
    await sleep(opts.intervalMs ?? 25);
  }
}

/** The JSON lines of a file a fixture appends to ([] while it does not exist). */
export function readJsonLines<T = Record<string, unknown>>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

/** Rejects with `what` when `p` has not settled within `ms` (so a hang fails the test instead of stalling it). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A port on 127.0.0.1 that was free a moment ago (nothing listens on it now). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------
// the runner process

/** A runner config on loopback, ephemeral ports, with the test key; `rest` adds or overrides. */
export function runnerConfig(rest: Record<string, unknown>, opts: { runnerListen?: string; keys?: unknown[] } = {}): Record<string, unknown> {
  return {
    gateway: { listen: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    runner: { listen: opts.runnerListen ?? '127.0.0.1:0', keys: opts.keys ?? [{ id: 'edge', secret: KEY }] },
    ...rest,
  };
}

/** A pino line from the runner's stderr (or `{ msg: line }` for a line that is not JSON). */
export interface LogLine {
  msg: string;
  [k: string]: unknown;
}

export interface RunnerProcess {
  /** base URL of the hook API ("http://127.0.0.1:PORT") */
  url: string;
  /** base URL of the self-hosted gateway */
  gateway: string;
  admin: string;
  port: number;
  pid: number;
  dir: string;
  configFile: string;
  logs: LogLine[];
  stderr(): string;
  /** Resolves with the first log line (seen or to come, from index `from`) matching `pred`. */
  waitForLog(pred: string | ((l: LogLine) => boolean), opts?: { timeoutMs?: number; from?: number }): Promise<LogLine>;
  /** Rewrites the config file (the runner watches it and reloads). */
  rewrite(config: Record<string, unknown>): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (SIGKILL after `graceMs`); resolves once exited. Idempotent. */
  stop(graceMs?: number): Promise<unknown>;
  /** SIGKILL: a crash; resolves once exited. */
  kill(): Promise<unknown>;
}

export interface RunnerOptions {
  /** write the config under this dir (default: a new temp dir) */
  dir?: string;
  env?: Record<string, string>;
  /** wait for `/readyz` 200 too (default true) */
  ready?: boolean;
  timeoutMs?: number;
}

/**
 * Runs `hookgate serve` on `config` and resolves when its listeners are up
 * and its plugins ready. Stopped (SIGTERM, SIGKILL fallback) when the
 * scope closes; the runner's reaper stops its plugins however it exits.
 *
 * @example
 * const runner = await startRunner(s, runnerConfig({ routes: [...], plugins: {...} }));
 * const res = await postFrames(runner.url, KEY, encodeHookFrame('on_request', { r: 'api' }));
 */
export async function startRunner(s: Scope, config: Record<string, unknown>, opts: RunnerOptions = {}): Promise<RunnerProcess> {
  const dir = opts.dir ?? tempDir(s);
  const configFile = join(dir, 'hookgate.json5');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
    cwd: ROOT,
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal })));
  });
  let stderr = '';
  let partial = '';
  const logs: LogLine[] = [];
  const listeners = new Set<() => void>();
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr += c;
    partial += c;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.trim()) continue;
      try {
        const entry = JSON.parse(line) as LogLine;
        logs.push(typeof entry === 'object' && entry !== null ? entry : { msg: line });
      } catch {
        logs.push({ msg: line });
      }
    }
    for (const l of listeners) l();
  });

  let stopping: Promise<unknown> | null = null;
  const stop = (graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<unknown> =>
    (stopping ??= (async () => {
      if (exitInfo) return exitInfo;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const e = await exited;
      clearTimeout(timer);
      // The reaper inherits this pipe and may hold it a moment; we never wait for its end.
      child.stderr!.destroy();
      return e;
    })());
  s.defer(() => stop());

  const waitForLog = (pred: string | ((l: LogLine) => boolean), o: { timeoutMs?: number; from?: number } = {}): Promise<LogLine> => {
    const test = typeof pred === 'string' ? (l: LogLine) => typeof l.msg === 'string' && l.msg.includes(pred) : pred;
    return new Promise<LogLine>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        for (let i = o.from ?? 0; i < logs.length; i++) {
          if (test(logs[i])) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(logs[i]);
            return;
          }
        }
      };
      timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`no runner log line matching ${typeof pred === 'string' ? JSON.stringify(pred) : 'the predicate'} within ${o.timeoutMs ?? 5000} ms; stderr:\n${stderr.slice(-4000)}`));
      }, o.timeoutMs ?? 5000);
      listeners.add(check);
      check();
    });
  };

  const timeoutMs = opts.timeoutMs ?? 20_000;
  const urlOf = (what: string) => waitForLog(`${what} listening`, { timeoutMs }).then((l) => String(l.url));
  const died = exited.then((e) => {
    throw new Error(`hookgate serve exited (${e.signal ?? `code ${e.code}`}) before it was ready; stderr:\n${stderr}`);
  });
  died.catch(() => {});
  try {
    const [url, gateway, admin] = await Promise.race([Promise.all([urlOf('runner'), urlOf('gateway'), urlOf('admin')]), died]);
    if (opts.ready ?? true) {
      let last = '';
      await Promise.race([
        waitFor(
          async () => {
            const res = await fetch(`${admin}/readyz`);
            last = await res.text();
            return res.status === 200;
          },
          { timeoutMs, what: `${admin}/readyz to answer 200` },
        ).catch((err: Error) => {
          throw new Error(`${err.message}; last /readyz: ${last}`);
        }),
        died,
      ]);
    }
    return {
      url,
      gateway,
      admin,
      port: Number(new URL(url).port),
      pid: child.pid!,
      dir,
      configFile,
      logs,
      stderr: () => stderr,
      waitForLog,
      rewrite: (next) => writeFileSync(configFile, JSON.stringify(next, null, 2)),
      exited,
      stop: (graceMs) => stop(graceMs),
      kill: () => stop(0, 'SIGKILL'),
    };
  } catch (err) {
    await stop(2000);
    throw err;
  }
}

// ---------------------------------------------------------------------------
// hook API clients

/** A complete RequestInfo (zero values for what `info` leaves out), e.g. for `req` in on_response data. */
export function requestInfo(info: Partial<RequestInfo>): RequestInfo {
  return { r: '', m: '', p: '', q: '', d: '', ho: '', pr: '', a: '', cl: 0, h: {}, bd: null, md: '', mg: '', mp: '', v: {}, tg: '', ...info };
}

export interface ApiReply {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text(): string;
  json<T = { error: string }>(): T;
}

async function reply(res: Response): Promise<ApiReply> {
  const body = new Uint8Array(await res.arrayBuffer());
  const text = () => new TextDecoder().decode(body);
  return { status: res.status, headers: res.headers, body, text, json: <T>() => JSON.parse(text()) as T };
}

/** Concatenates frames (or any byte chunks) into one body. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * `POST /v1/hooks` with `body` (frames, already encoded). `key` null sends
 * no Authorization header.
 */
export async function postFrames(url: string, key: string | null, body: Uint8Array | Uint8Array[], opts: { contentType?: string; authorization?: string } = {}): Promise<ApiReply> {
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? FRAMES_TYPE };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (key !== null) headers.authorization = `Bearer ${key}`;
  const bytes = Array.isArray(body) ? concat(body) : body;
  return reply(await fetch(`${url}/v1/hooks`, { method: 'POST', headers, body: bytes as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(15_000) }));
}

/** `GET /v1/state`, conditionally with `ifNoneMatch`. */
export async function getState(url: string, key: string | null, ifNoneMatch?: string): Promise<ApiReply> {
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (ifNoneMatch) headers['if-none-match'] = ifNoneMatch;
  return reply(await fetch(`${url}/v1/state`, { headers, signal: AbortSignal.timeout(15_000) }));
}

/** One message from the runner on a hook link: the call id and its frame's payload. */
export interface LinkMessage {
  id: number;
  payload: Uint8Array;
  /** the payload decoded as msgpack (notices on id 0 are plain maps) */
  value: unknown;
}

export interface Link {
  ws: WsClient;
  /** every message received, in order */
  received: LinkMessage[];
  /** Sends `[u32 id][frame]`. */
  call(id: number, frame: Uint8Array): void;
  /** Resolves with the first message (received or to come) matching `pred`. */
  next(pred: (m: LinkMessage) => boolean, timeoutMs?: number): Promise<LinkMessage>;
  closed: Promise<{ code: number; reason: string; at: number }>;
}

/**
 * Opens `GET /v1/hooks/ws` with `key` (null: no Authorization header, or
 * `opts.authorization` as given); resolves once open. Rejects with
 * the HTTP status (`err.status`) when the upgrade is refused. Closed with
 * the scope.
 */
export function openLink(s: Scope, url: string, key: string | null, opts: { authorization?: string } = {}): Promise<Link> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.authorization !== undefined) headers.authorization = opts.authorization;
    else if (key !== null) headers.authorization = `Bearer ${key}`;
    const ws = new WsClient(`${url.replace(/^http/, 'ws')}/v1/hooks/ws`, { headers });
    s.defer(() => {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
    });
    const received: LinkMessage[] = [];
    const waiters = new Set<() => void>();
    const closed = new Promise<{ code: number; reason: string; at: number }>((r) =>
      ws.on('close', (code, reason) => r({ code, reason: reason.toString(), at: Date.now() })),
    );
    ws.on('unexpected-response', (_req, res) => {
      const err = Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode ?? 0, headers: res.headers });
      res.resume();
      reject(err);
    });
    ws.on('error', reject);
    ws.on('message', (data: RawData) => {
      const buf = new Uint8Array(data as Buffer);
      const id = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0);
      const [payload] = decodeFrames(buf.subarray(4));
      let value: unknown;
      try {
        value = unpackValue(payload);
      } catch {
        value = undefined;
      }
      received.push({ id, payload, value });
      for (const w of waiters) w();
    });
    ws.on('open', () =>
      resolve({
        ws,
        received,
        closed,
        call(id, frame) {
          const msg = new Uint8Array(4 + frame.length);
          new DataView(msg.buffer).setUint32(0, id);
          msg.set(frame, 4);
          ws.send(msg);
        },
        next(pred, timeoutMs = 5000) {
          return new Promise<LinkMessage>((res, rej) => {
            const check = () => {
              const m = received.find(pred);
              if (!m) return;
              waiters.delete(check);
              clearTimeout(timer);
              res(m);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              rej(new Error(`no matching link message within ${timeoutMs} ms; got ${JSON.stringify(received.map((m) => ({ id: m.id, value: m.value })))}`));
            }, timeoutMs);
            waiters.add(check);
            check();
          });
        },
      }),
    );
  });
}

// ---------------------------------------------------------------------------
// upstreams

/** One request (or WebSocket session) that reached an upstream. */
export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** One WebSocket message an upstream received. */
export interface WsMessage {
  binary: boolean;
  data: Buffer;
}

export interface Upstream {
  name: string;
  url: string;
  /** "127.0.0.1:PORT", for balancer targets */
  target: string;
  received: Received[];
  wsMessages: WsMessage[];
  close(): Promise<void>;
}

/** What the upstream answers to a plain request. */
export interface EchoBody {
  upstream: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * Starts an upstream on 127.0.0.1 (a free port), closed with the scope. It
 * answers every request with a JSON echo (`EchoBody`), the headers
 * `X-Served-By: NAME` and `X-Upstream-Secret: s3cret` (which on_response
 * fixtures remove). With `websocket`, it accepts upgrades, greets with the
 * text "welcome from NAME" and echoes every message as it came (text as
 * text, binary as binary), except the text "close please", which it
 * answers by closing the session with code 4000, "closed by upstream".
 */
export async function startUpstream(s: Scope, opts: { name?: string; websocket?: boolean } = {}): Promise<Upstream> {
  const name = opts.name ?? 'upstream';
  const sockets = new Set<Duplex>();
  const up: Upstream = { name, url: '', target: '', received: [], wsMessages: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      up.received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const body: EchoBody = { upstream: name, method: req.method ?? '', url: req.url ?? '', headers: req.headers };
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name, 'x-upstream-secret': 's3cret' });
      res.end(JSON.stringify(body));
    });
  });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  let wss: WebSocketServer | null = null;
  if (opts.websocket) {
    const w = (wss = new WebSocketServer({ noServer: true }));
    server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      up.received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      w.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => {});
        ws.send(`welcome from ${name}`);
        ws.on('message', (data: RawData, isBinary: boolean) => {
          const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
          up.wsMessages.push({ binary: isBinary, data: buf });
          if (!isBinary && buf.toString() === 'close please') ws.close(4000, 'closed by upstream');
          else ws.send(buf, { binary: isBinary });
        });
      });
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  up.url = `http://127.0.0.1:${port}`;
  up.target = `127.0.0.1:${port}`;
  let closing: Promise<void> | null = null;
  up.close = () =>
    (closing ??= new Promise<void>((resolve) => {
      for (const c of wss?.clients ?? []) c.terminate();
      wss?.close();
      server.close(() => resolve());
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
    }));
  s.defer(up.close);
  return up;
}
