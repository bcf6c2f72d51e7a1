/**
 * @module test/gateway/harness
 * What the end-to-end gateway tests share: real parts, started and always
 * stopped. A `Scope` owns everything a test (or a file) starts — temp
 * dirs, upstream servers, `hookgate serve` processes — and tears it down
 * in reverse order whether the test passed or not. On top of it:
 *
 * * `startUpstream`: a real HTTP server that records what it received
 *   (method, URL, headers, body length and sha256) and answers as the
 *   request's `X-Up-*` headers ask (delay, status, size, headers), or with
 *   a handler of the test's own; optionally a WebSocket echo server.
 * * `startGateway`: writes a config to a temp dir, runs
 *   `node node-runner/cli.ts serve --config FILE`, and resolves once both
 *   listeners have logged their URLs (or fails with the process's stderr).
 *   `stop()` sends SIGTERM, waits, and falls back to SIGKILL; a gateway
 *   that the scope stops must exit 0, or the test that started it fails.
 *   The gateway and its plugins get a TMPDIR of their own, so even a
 *   plugin killed with SIGKILL leaves no socket folder behind.
 * * `request` (node:http, one connection per request, any header allowed,
 *   Host included) and `rawRequest` (node:net, bytes as written), for what
 *   a client would observe.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

export const ROOT = here('../../');
export const CLI = here('../../node-runner/cli.ts');
/** The configurable SDK plugin (verdict chosen per request by `X-Test-Verdict`). */
export const VERDICT_PLUGIN = here('../fixtures/gateway/verdict-plugin.ts');
export const AUTH_TS = here('../../examples/plugins/auth.ts');
export const AUTH_PY = here('../../examples/plugins/auth.py');
export const PUSH_TARGETS_SH = here('../../examples/plugins/push-targets.sh');

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

  /** Registers a cleanup; it runs on close (immediately if already closed). */
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

/**
 * A scope closed when the test ends (passed or failed).
 *
 * @example
 * test('...', async (t) => { const s = scope(t); const up = await startUpstream(s); ... });
 */
export function scope(t: TestContext): Scope {
  const s = new Scope();
  t.after(() => s.close());
  return s;
}

/** A temp dir removed when the scope closes. */
export function tempDir(s: Scope, prefix = 'hookgate-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  s.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------
// polling and processes

/**
 * Polls `cond` until it returns a truthy value (returned); throws after
 * `timeoutMs` naming `what`.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}`);
    await sleep(opts.intervalMs ?? 25);
  }
}

/** True while a process with this pid runs (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * `size` deterministic pseudo-random bytes, as a stream of 64 KiB chunks
 * (nothing large is held in memory); `hashOf(size)` is their sha256.
 */
export function patternStream(size: number, seed = 1): Readable {
  let sent = 0;
  let x = seed >>> 0 || 1;
  return new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const n = Math.min(65_536, size - sent);
      const chunk = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        chunk[i] = x & 0xff;
      }
      sent += n;
      this.push(chunk);
    },
  });
}

/** The sha256 and first `prefix` bytes of `patternStream(size, seed)`. */
export async function patternFacts(size: number, seed = 1, prefix = 0): Promise<{ sha256: string; head: Buffer }> {
  const h = createHash('sha256');
  const head: Buffer[] = [];
  let kept = 0;
  for await (const c of patternStream(size, seed) as AsyncIterable<Buffer>) {
    h.update(c);
    if (kept < prefix) {
      head.push(c.subarray(0, prefix - kept));
      kept += Math.min(c.length, prefix - kept);
    }
  }
  return { sha256: h.digest('hex'), head: Buffer.concat(head) };
}

// ---------------------------------------------------------------------------
// upstreams

/** One request an upstream received. */
export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
  bodySha256: string;
  /** performance.now() when the whole body had arrived */
  endedAt: number;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, up: Upstream) => void;

export interface Upstream {
  name: string;
  url: string;
  /** "127.0.0.1:PORT", for balancer targets */
  target: string;
  port: number;
  received: Received[];
  /** WebSocket sessions that reached this upstream */
  wsSessions: number;
  close(): Promise<void>;
}

export interface UpstreamOptions {
  name?: string;
  /** replaces the default echo behaviour (the request is still recorded once its body ends) */
  handler?: UpstreamHandler;
  /** accept WebSocket upgrades and echo every text/binary message */
  websocket?: boolean;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The default answer: after the body is read, wait `X-Up-Delay` ms, answer
 * `X-Up-Status` (200) with the headers in `X-Up-Headers` (a JSON object)
 * and either `X-Up-Size` bytes of `patternStream(size, 7)` (without a
 * Content-Type when `X-Up-Untyped` is present) or a JSON echo
 * `{ upstream, method, url, headers, bodyBytes, bodySha256 }`.
 */
function echo(req: IncomingMessage, res: ServerResponse, up: Upstream, rec: Received): void {
  const delay = Number(header(req, 'x-up-delay') ?? 0);
  const reply = () => {
    if (res.destroyed) return;
    const status = Number(header(req, 'x-up-status') ?? 200);
    const extra = JSON.parse(header(req, 'x-up-headers') ?? '{}') as Record<string, string>;
    res.setHeader('x-served-by', up.name);
    for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
    const size = header(req, 'x-up-size');
    if (size !== undefined) {
      const untyped = header(req, 'x-up-untyped') !== undefined;
      res.writeHead(status, { ...(untyped ? {} : { 'content-type': 'application/octet-stream' }), 'content-length': String(Number(size)) });
      patternStream(Number(size), 7).pipe(res);
      return;
    }
    const body = JSON.stringify({ upstream: up.name, method: rec.method, url: rec.url, headers: rec.headers, bodyBytes: rec.bodyBytes, bodySha256: rec.bodySha256 });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  };
  if (delay > 0) {
    const timer = setTimeout(reply, delay);
    res.on('close', () => clearTimeout(timer));
  } else reply();
}

/**
 * Starts an upstream on 127.0.0.1 (a free port), closed with the scope.
 *
 * @example
 * const up = await startUpstream(s, { name: 'a' });
 * // config: { type: 'proxy', upstream: up.url }
 */
export async function startUpstream(s: Scope, opts: UpstreamOptions = {}): Promise<Upstream> {
  const sockets = new Set<Duplex>();
  const up: Upstream = {
    name: opts.name ?? 'upstream',
    url: '',
    target: '',
    port: 0,
    received: [],
    wsSessions: 0,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const rec: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha256: '', endedAt: 0 };
    req.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    req.on('end', () => {
      rec.bodyBytes = bytes;
      rec.bodySha256 = hash.digest('hex');
      rec.endedAt = performance.now();
      up.received.push(rec);
      if (!opts.handler) echo(req, res, up, rec);
    });
    req.on('error', () => {});
    if (opts.handler) opts.handler(req, res, up);
  });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  if (opts.websocket) {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      up.wsSessions++;
      up.received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha256: '', endedAt: performance.now() });
      wsEcho(req, socket, head);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  up.port = port;
  up.target = `127.0.0.1:${port}`;
  up.url = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | null = null;
  up.close = () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
    }));
  s.defer(up.close);
  return up;
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------
// a WebSocket echo server (RFC 6455, just enough: unfragmented messages)

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

function wsFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : len < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126) {
    head[0] = 0x80 | opcode;
    if (len < 65_536) {
      head[1] = 126;
      head.writeUInt16BE(len, 2);
    } else {
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
  }
  return Buffer.concat([head, payload]);
}

function wsEcho(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const key = header(req, 'sec-websocket-key') ?? '';
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf: Buffer = Buffer.from(head);
  socket.on('error', () => {});
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      const maskAt = off;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskAt + (i % 4)];
      buf = buf.subarray(off + len);
      if (opcode === 0x1 || opcode === 0x2) socket.write(wsFrame(opcode, payload));
      else if (opcode === 0x9) socket.write(wsFrame(0xa, payload));
      else if (opcode === 0x8) {
        socket.end(wsFrame(0x8, payload.subarray(0, 2)));
        return;
      }
    }
  };
  socket.on('data', onData);
}

// ---------------------------------------------------------------------------
// configs and the gateway process

/** Writes `config` (as JSON, which is JSON5) to `dir/name`; returns the path. */
export function writeConfig(dir: string, config: unknown, name = 'hookgate.json5'): string {
  const file = join(dir, name);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

/** A pino line from the gateway's stderr (or `{ msg: line }` for a line that is not JSON). */
export interface LogLine {
  msg: string;
  level?: number;
  [k: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Gateway {
  /** "http://127.0.0.1:PORT" of the gateway listener */
  url: string;
  /** "http://127.0.0.1:PORT" of the admin listener */
  admin: string;
  pid: number;
  dir: string;
  configFile: string;
  logs: LogLine[];
  /** the stderr text so far */
  stderr(): string;
  /** Resolves with the first log line (already seen or to come) matching `pred` after `from` lines. */
  waitForLog(pred: string | ((l: LogLine) => boolean), opts?: { timeoutMs?: number; from?: number }): Promise<LogLine>;
  /** Resolves when the process has exited. */
  exited: Promise<Exit>;
  /** True until the process has exited. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 15 s); resolves with the exit. Idempotent. */
  stop(graceMs?: number): Promise<Exit>;
}

export interface GatewayOptions {
  /** extra environment for the gateway process */
  env?: Record<string, string>;
  /** how long to wait for both listeners (default 20 s) */
  timeoutMs?: number;
  /** the config file's name inside its temp dir */
  fileName?: string;
}

/** The config every test starts from: ephemeral ports on loopback. */
export function baseConfig(rest: Record<string, unknown>): Record<string, unknown> {
  return { gateway: { listen: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' }, ...rest };
}

/**
 * Runs `hookgate serve` on `config` (an object written into a fresh temp
 * dir, or the path of a file already written) and resolves when both
 * listeners are up. Stopped (SIGTERM, SIGKILL fallback) when the scope
 * closes. Rejects with the process's stderr when it exits or does not come
 * up in time.
 *
 * @example
 * const gw = await startGateway(s, baseConfig({ routes: [...] }));
 * const res = await request(`${gw.url}/x`);
 */
export async function startGateway(s: Scope, config: Record<string, unknown> | string, opts: GatewayOptions = {}): Promise<Gateway> {
  let configFile: string;
  let dir: string;
  if (typeof config === 'string') {
    configFile = config;
    dir = join(config, '..');
  } else {
    dir = tempDir(s);
    configFile = writeConfig(dir, config, opts.fileName);
  }
  // TMPDIR for the gateway and (inherited) its plugins: plugin sockets land
  // in a folder the scope removes, even when a test kills a plugin with
  // SIGKILL and it cannot clean up after itself.
  const tmp = tempDir(s, 'hookgate-e2e-tmp-');
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
    cwd: ROOT,
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info', TMPDIR: tmp, ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exitInfo: Exit | null = null;
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal })));
  });
  let stderr = '';
  const logs: LogLine[] = [];
  const listeners = new Set<() => void>();
  let partial = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr += c;
    partial += c;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.trim()) continue;
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
        if (typeof entry !== 'object' || entry === null) throw new Error();
      } catch {
        entry = { msg: line };
      }
      logs.push(entry);
    }
    for (const l of listeners) l();
  });
  // The runner's reaper inherits this pipe and keeps it open a moment after
  // the runner exits; we never wait for its end, only for the exit.

  let stopping: Promise<Exit> | null = null;
  const stop = (graceMs = 15_000): Promise<Exit> =>
    (stopping ??= (async () => {
      if (exitInfo) return exitInfo;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((r) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, graceMs);
      });
      await Promise.race([exited, killed]);
      clearTimeout(timer);
      const e = await exited;
      child.stderr!.destroy();
      return e;
    })());
  // Every gateway a test starts must stop cleanly on SIGTERM: that is part
  // of every test, so a failure to do so fails the test that started it.
  s.defer(async () => {
    const stoppedBefore = stopping !== null || exitInfo !== null;
    const e = await stop();
    if (!stoppedBefore && e.code !== 0) throw new Error(`hookgate serve did not exit 0 on SIGTERM (${e.signal ?? `code ${e.code}`}); stderr:\n${stderr.slice(-4000)}`);
  });

  const waitForLog = (pred: string | ((l: LogLine) => boolean), o: { timeoutMs?: number; from?: number } = {}): Promise<LogLine> => {
    const test = typeof pred === 'string' ? (l: LogLine) => typeof l.msg === 'string' && l.msg.includes(pred) : pred;
    const from = o.from ?? 0;
    return new Promise<LogLine>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        for (let i = from; i < logs.length; i++) {
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
        reject(new Error(`no log line matching ${typeof pred === 'string' ? JSON.stringify(pred) : 'the predicate'} within ${o.timeoutMs ?? 5000} ms; stderr:\n${stderr}`));
      }, o.timeoutMs ?? 5000);
      listeners.add(check);
      check();
    });
  };

  const timeoutMs = opts.timeoutMs ?? 20_000;
  const urlOf = (what: string) => waitForLog(`${what} listening`, { timeoutMs }).then((l) => String(l.url));
  const died = exited.then((e) => {
    throw new Error(`hookgate serve exited (${e.signal ?? `code ${e.code}`}) before listening; stderr:\n${stderr}`);
  });
  died.catch(() => {});
  try {
    const [url, admin] = await Promise.race([Promise.all([urlOf('gateway'), urlOf('admin')]), died]);
    return {
      url,
      admin,
      pid: child.pid!,
      dir,
      configFile,
      logs,
      stderr: () => stderr,
      waitForLog,
      exited,
      running: () => exitInfo === null,
      stop,
    };
  } catch (err) {
    await stop(2000);
    throw err;
  }
}

/** Runs the CLI to completion (e.g. `validate FILE`); kills it after `timeoutMs`. */
export function runCli(args: string[], opts: { timeoutMs?: number } = {}): Promise<Exit & { stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hookgate ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 15_000} ms; stderr:\n${stderr}`));
    }, opts.timeoutMs ?? 15_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      // Give the pipes a moment to drain what was written before exit.
      setImmediate(() => resolve({ code, signal, stdout, stderr }));
    });
  });
}

// ---------------------------------------------------------------------------
// clients

export interface Reply {
  status: number;
  /** length and sha256 of the body (also when `hashOnly` kept none of it) */
  bodyBytes: number;
  bodySha256: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  /** the body parsed as JSON (throws when it is not) */
  json<T = EchoBody>(): T;
  /** performance.now() when the headers arrived, and when the body ended */
  headersAt: number;
  endedAt: number;
}

/** What the default upstream answers. */
export interface EchoBody {
  upstream: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
  /** give up (the promise rejects) after this long; default 20 s */
  timeoutMs?: number;
  /** hash the body instead of keeping it (`text` and `body` stay empty) */
  hashOnly?: boolean;
}

/**
 * One HTTP/1.1 request on its own connection (closed afterwards). Any
 * header may be set, Host included.
 *
 * @example
 * const res = await request(`${gw.url}/api`, { headers: { host: 'api.example.com' } });
 */
export function request(url: string, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`no complete reply from ${url} within ${opts.timeoutMs ?? 20_000} ms`)), opts.timeoutMs ?? 20_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const headersAt = performance.now();
      const chunks: Buffer[] = [];
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (opts.hashOnly) hash.update(c);
        else chunks.push(c);
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body,
          text,
          json: <T>() => JSON.parse(text) as T,
          headersAt,
          endedAt: performance.now(),
          bodyBytes: bytes,
          bodySha256: opts.hashOnly ? hash.digest('hex') : sha256(body),
        });
      });
    });
    const body = opts.body;
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

/**
 * Writes `raw` bytes to the gateway and reads until the server closes the
 * connection (send `Connection: close`); resolves with everything read.
 */
export function rawRequest(url: string, raw: string, timeoutMs = 10_000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    sock.write(raw);
  });
}

/** Splits a raw HTTP response into status, header lines (names lower-cased) and body. */
export function parseRaw(raw: string): { status: number; headers: Array<[string, string]>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, end < 0 ? raw.length : end).split('\r\n');
  const status = Number(head[0]?.split(' ')[1] ?? 0);
  const headers = head.slice(1).map((l): [string, string] => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  });
  return { status, headers, body: end < 0 ? '' : raw.slice(end + 4) };
}

/** GET admin `/readyz`: status and the JSON body. */
export async function readyz(gw: Gateway): Promise<{ status: number; body: { ready: boolean; config: boolean; plugins: Array<{ name: string; ready: boolean; state: string; hooks: string[]; error?: string }> } }> {
  const res = await request(`${gw.admin}/readyz`);
  return { status: res.status, body: res.json() };
}

/** Waits until `/readyz` says 200. */
export function whenReady(gw: Gateway, timeoutMs = 15_000): Promise<unknown> {
  return waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs, what: `${gw.admin}/readyz to answer 200` });
}

/**
 * A WebSocket client (Node's global WebSocket) opened through `url`;
 * resolves once open, rejects on error. Closed with the scope.
 */
export function openWebSocket(s: Scope, url: string): Promise<{ ws: WebSocket; next(): Promise<string | ArrayBuffer>; closed: Promise<CloseEvent> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    s.defer(() => ws.close());
    const inbox: Array<string | ArrayBuffer> = [];
    const waiting: Array<(m: string | ArrayBuffer) => void> = [];
    ws.addEventListener('message', (e) => {
      const w = waiting.shift();
      if (w) w(e.data as string | ArrayBuffer);
      else inbox.push(e.data as string | ArrayBuffer);
    });
    const closed = new Promise<CloseEvent>((r) => ws.addEventListener('close', (e) => r(e)));
    ws.addEventListener('error', () => reject(new Error(`WebSocket ${url} failed`)), { once: true });
    ws.addEventListener('open', () =>
      resolve({
        ws,
        closed,
        next: () => (inbox.length ? Promise.resolve(inbox.shift()!) : new Promise((r) => waiting.push(r))),
      }),
    );
  });
}
