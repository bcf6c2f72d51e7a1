/**
 * @module test/config-stream/harness
 * The parts config stream tests drive, always cleaned up with their scope:
 *
 * * `startSource`: a scripted SSE config source (node:http on 127.0.0.1,
 *   or node:https with `tls`) at `/v1/stream`. Every accepted connection is handed to `onConnect`,
 *   which sends events through it; `status` makes it refuse (401, ...);
 *   `requests` records every request (and its Authorization).
 * * `startStreamRunner`: `node node-runner/cli/cli.ts serve --config-url ...`
 *   as users start it, with a bootstrap file for its listeners (ephemeral
 *   ports on loopback) and short backoff / read timeout knobs; resolves
 *   once its gateway and admin listeners have logged their URLs.
 * * `startConfigServer`: the real `hookgate config-server` process on a
 *   file, resolving with the URL (and TLS pin) it logs.
 * * Item helpers (`staticRoute`, `put`) in the wire shapes of `config-doc.ts`.
 */

import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { LineSplitter } from '../../node-runner/lines.ts';
import { CLI, ROOT } from '../helpers/paths.ts';
import { writeConfig, type Exit, type LogLine } from '../helpers/processes.ts';
import { tempDir, type Scope } from '../helpers/scope.ts';

/** The key runners present and the test source expects. */
export const SOURCE_KEY = 'stream-key-0123456789abcdef';

/** One accepted stream connection. */
export interface SourceConn {
  /** sends `event: <name>` with `data` as one line of JSON (a string is sent as it is) */
  send(event: string, data: unknown): void;
  /** writes raw bytes of the stream (comments, broken events) */
  raw(text: string): void;
  /** ends the response */
  close(): void;
  closed: boolean;
}

export interface Source {
  url: string;
  port: number;
  /** every request to the stream, in order */
  requests: Array<{ authorization: string | undefined }>;
  /** answered connections, in order */
  conns: SourceConn[];
  /** answer every request with this status instead of a stream (e.g. 401) */
  status: number;
  /** called for each accepted connection with its index (0 for the first) */
  onConnect: (conn: SourceConn, index: number) => void;
  /** stops listening and drops every connection */
  close(): Promise<void>;
}

/**
 * Starts a scripted config source, closed with the scope.
 *
 * @example
 * const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } })));
 */
export async function startSource(s: Scope, onConnect: Source['onConnect'] = () => {}, port = 0, opts: { tls?: { cert: string; key: string } } = {}): Promise<Source> {
  const responses = new Set<ServerResponse>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    src.requests.push({ authorization: req.headers.authorization });
    if (req.url !== '/v1/stream') return void res.writeHead(404).end();
    if (src.status !== 200 || req.headers.authorization !== `Bearer ${SOURCE_KEY}`) return void res.writeHead(src.status !== 200 ? src.status : 401).end();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    responses.add(res);
    const conn: SourceConn = {
      closed: false,
      send: (event, data) => void (conn.closed || res.write(`event: ${event}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)),
      raw: (text) => void (conn.closed || res.write(text)),
      close: () => {
        conn.closed = true;
        res.end();
      },
    };
    res.on('close', () => {
      conn.closed = true;
      responses.delete(res);
    });
    src.conns.push(conn);
    src.onConnect(conn, src.conns.length - 1);
  };
  const server = opts.tls ? createHttpsServer(opts.tls, handler) : createServer(handler);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  const actual = (server.address() as AddressInfo).port;
  let closing: Promise<void> | null = null;
  const src: Source = {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${actual}/v1/stream`,
    port: actual,
    requests: [],
    conns: [],
    status: 200,
    onConnect,
    close: () =>
      (closing ??= new Promise<void>((r) => {
        for (const res of responses) res.destroy();
        server.closeAllConnections();
        server.close(() => r());
      })),
  };
  s.defer(() => src.close());
  return src;
}

/** A route item: `path` answered by a static `body`. */
export function staticRoute(path: string, body: string, version: number, order = 0): Record<string, unknown> {
  return { match: { path }, action: { type: 'static', body }, version, order };
}

/** A `put` with the given kinds (the others empty). */
export function put(items: { routes?: Record<string, unknown>; actions?: Record<string, unknown>; plugins?: Record<string, unknown>; keys?: Record<string, unknown> }): Record<string, unknown> {
  return { routes: {}, actions: {}, plugins: {}, keys: {}, ...items };
}

/** A running `hookgate serve --config-url`. */
export interface StreamRunner {
  pid: number;
  gateway: string;
  admin: string;
  stateDir: string;
  logs: LogLine[];
  stderr(): string;
  /** the first log line from index `from` whose msg includes `msg` (and that passes `pred`) */
  waitForLog(msg: string, opts?: { from?: number; timeoutMs?: number; pred?: (l: LogLine) => boolean }): Promise<LogLine>;
  /** SIGTERM (SIGKILL after 10 s); resolves with the exit. Idempotent. */
  stop(): Promise<Exit>;
}

export interface StreamRunnerOptions {
  /** the state dir (default: a fresh temp dir) */
  stateDir?: string;
  /** bootstrap file content besides the listeners (routes, ...) */
  bootstrap?: Record<string, unknown>;
  /** the key to present (default SOURCE_KEY) */
  key?: string;
  env?: Record<string, string>;
  /** more `serve` arguments (`--config-pin ...`) */
  args?: string[];
}

/**
 * Runs `hookgate serve --config-url <url>` as users do; resolves when its
 * gateway and admin listen. Stopped with the scope.
 */
export async function startStreamRunner(s: Scope, url: string, opts: StreamRunnerOptions = {}): Promise<StreamRunner> {
  const dir = tempDir(s, 'hookgate-stream-');
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const bootstrap = writeConfig(dir, { gateway: { listen: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' }, ...opts.bootstrap }, 'bootstrap.json5');
  const tmp = tempDir(s, 'hookgate-stream-tmp-');
  const child = spawn(process.execPath, [CLI, 'serve', '--config-url', url, '--config-key-env', 'HG_TEST_CONFIG_KEY', '--config', bootstrap, '--state-dir', stateDir, ...(opts.args ?? [])], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOOKGATE_LOG_LEVEL: 'info',
      TMPDIR: tmp,
      HOOKGATE_KEEPER_GRACE_MS: '5000',
      HG_TEST_CONFIG_KEY: opts.key ?? SOURCE_KEY,
      HOOKGATE_STREAM_BACKOFF_MS: '50',
      HOOKGATE_STREAM_BACKOFF_MAX_MS: '200',
      HOOKGATE_STREAM_AUTH_RETRY_MS: '200',
      // Far above any quiet spell of a test on a loaded machine (a drop would add a reconnect
      // the test did not ask for); the tests of the read timeout set their own.
      HOOKGATE_STREAM_READ_TIMEOUT_MS: '60000',
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exit: Exit | null = null;
  const exited = new Promise<Exit>((r) => child.once('exit', (code, signal) => r((exit = { code, signal }))));
  let stderr = '';
  const logs: LogLine[] = [];
  const lines = new LineSplitter((line) => {
    if (!line.trim()) return;
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ msg: line });
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    lines.push(c);
  });
  let stopping: Promise<Exit> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      if (exit) return exit;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const e = await exited;
      clearTimeout(timer);
      child.stderr!.destroy();
      return e;
    })());
  s.defer(stop);
  const waitForLog: StreamRunner['waitForLog'] = async (msg, o = {}) => {
    // 60 s only bounds a hang (a start-up on a loaded machine can take many seconds).
    const deadline = performance.now() + (o.timeoutMs ?? 60_000);
    for (;;) {
      for (let i = o.from ?? 0; i < logs.length; i++) {
        const l = logs[i];
        if (typeof l.msg === 'string' && l.msg.includes(msg) && (!o.pred || o.pred(l))) return l;
      }
      if (exit) throw new Error(`hookgate serve exited (${exit.signal ?? `code ${exit.code}`}) before logging "${msg}"; stderr:\n${stderr.slice(-4000)}`);
      if (performance.now() > deadline) throw new Error(`no log line "${msg}" within ${o.timeoutMs ?? 60_000} ms; stderr:\n${stderr.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  // Start-up is waited for, not timed: on a loaded machine a process may take long to start.
  const gateway = String((await waitForLog('gateway listening', { timeoutMs: 30_000 })).url);
  const admin = String((await waitForLog('admin listening', { timeoutMs: 30_000 })).url);
  return { pid: child.pid!, gateway, admin, stateDir, logs, stderr: () => stderr, waitForLog, stop };
}

/** A running `hookgate config-server`. */
export interface ConfigServerProcess {
  /** the stream URL it logged */
  url: string;
  /** with TLS, the pin it logged (`sha256:<hex>`) */
  pin?: string;
  /** SIGKILL; resolves once it exited. Idempotent. */
  kill(): Promise<void>;
}

/**
 * Runs `hookgate config-server` on `file` (or `{ etcd: endpoints }`) at `listen` (more arguments in
 * `args`, e.g. `--tls-cert`), presenting SOURCE_KEY; resolves once it
 * listens. Killed with the scope.
 */
export async function startConfigServer(s: Scope, file: string | { etcd: string }, listen: string, args: string[] = []): Promise<ConfigServerProcess> {
  const source = typeof file === 'string' ? ['--config', file] : ['--etcd', file.etcd];
  const child = spawn(process.execPath, [CLI, 'config-server', ...source, '--listen', listen, '--key-env', 'HG_TEST_SERVER_KEY', ...args], {
    cwd: ROOT,
    env: { ...process.env, HG_TEST_SERVER_KEY: SOURCE_KEY, HOOKGATE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stderr = '';
  const up = new Promise<LogLine>((resolve, reject) => {
    const seen = new LineSplitter((line) => {
      try {
        const l = JSON.parse(line) as LogLine;
        if (l.msg === 'config server listening') resolve(l);
      } catch {
        // not a log line
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      seen.push(c);
    });
    void exited.then(() => reject(new Error(`config-server exited before listening:\n${stderr}`)));
  });
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  s.defer(kill);
  const l = await up;
  return { url: String(l.url), pin: typeof l.pin === 'string' ? l.pin : undefined, kill };
}
