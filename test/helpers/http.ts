/**
 * @module test/helpers/http
 * What a client observes, and waiting for it:
 *
 * * `sleep`, `waitFor` (bounded polling) and `freePort`.
 * * `request` (node:http, one connection per request, any header allowed,
 *   Host included), `rawRequest` (node:net, bytes as written) and
 *   `parseRaw`.
 * * `upgradeAnswer` (how a WebSocket upgrade is answered, without keeping
 *   the session) and `openWebSocket` (Node's global WebSocket with an
 *   inbox, closed with its scope).
 */

import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Scope } from './scope.ts';
import type { EchoBody } from './upstream.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What a truthy check leaves of `T`. */
export type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

/**
 * Polls `cond` every `intervalMs` (25) until it returns a truthy value,
 * which is returned; throws after `timeoutMs` naming `what`. The default
 * (15 s) only bounds a hang: on a loaded machine an event can take seconds.
 *
 * @example
 * await waitFor(() => up.received.length === 2, { what: 'both requests to reach the upstream' });
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<Truthy<T>> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as Truthy<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'}`);
    await sleep(opts.intervalMs ?? 25);
  }
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// ---------------------------------------------------------------------------
// node:http requests

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
          bodySha256: (opts.hashOnly ? hash : createHash('sha256').update(body)).digest('hex'),
        });
      });
    });
    const body = opts.body;
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

/**
 * Writes `raw` bytes to `url`'s host and port and reads until the server
 * closes the connection (send `Connection: close`); resolves with
 * everything read.
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

/** What `rawExchange` read: `parseRaw`'s parts, the body de-chunked. */
export interface RawReply {
  status: number;
  headers: Array<[string, string]>;
  body: string;
  /** every value of a header (name in lower case) */
  header(name: string): string[];
  /** the body as JSON (the upstream's echo) */
  echo(): EchoBody;
}

/**
 * One request written byte for byte (no URL parsing on the client side,
 * so attack paths arrive as written) with `headers` lines and
 * `Connection: close`; Host is `host` unless a header line gives one.
 *
 * @example
 * const res = await rawExchange(gw.url, '/%61dmin/users', { headers: ['X-User: admin'] });
 */
export async function rawExchange(url: string, target: string, opts: { host?: string; headers?: string[]; method?: string; body?: string } = {}): Promise<RawReply> {
  const headers = opts.headers ?? [];
  const hasHost = headers.some((h) => /^host:/i.test(h));
  const lines = [`${opts.method ?? 'GET'} ${target} HTTP/1.1`, ...(hasHost ? [] : [`Host: ${opts.host ?? new URL(url).host}`]), ...headers, 'Connection: close'];
  if (opts.body) lines.push(`Content-Length: ${Buffer.byteLength(opts.body)}`);
  const res = parseRaw(await rawRequest(url, lines.join('\r\n') + '\r\n\r\n' + (opts.body ?? '')));
  const header = (name: string) => res.headers.filter(([n]) => n === name).map(([, v]) => v);
  const body = header('transfer-encoding').includes('chunked') ? dechunk(res.body) : res.body;
  return { ...res, body, header, echo: () => JSON.parse(body) as EchoBody };
}

/**
 * The payload of a chunked body read to its end (as `parseRaw` returns it).
 *
 * @example
 * const text = res.headers.some(([n, v]) => n === 'transfer-encoding' && v === 'chunked') ? dechunk(res.body) : res.body;
 */
export function dechunk(body: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', i);
    const size = parseInt(body.slice(i, eol), 16);
    if (!(size > 0)) return out;
    out += body.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
}

// ---------------------------------------------------------------------------
// WebSocket

/**
 * Asks `url` to upgrade to a WebSocket (node:http, as a client would, with
 * `headers` added) and reports the answer without keeping the session:
 * `status` 101 when it was accepted, else the refusal's status and body.
 */
export function upgradeAnswer(url: string, opts: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ status: number; body: string }> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.from('0123456789abcdef').toString('base64'),
        ...opts.headers,
      },
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer to the upgrade of ${url} within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('upgrade', (res, socket) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.end();
  });
}

/** A client WebSocket (Node's global WebSocket) with an inbox; closed with its scope. */
export interface WebSocketClient {
  ws: WebSocket;
  /** Resolves with the next message (already received or to come); rejects after `timeoutMs` (5 s). */
  next(timeoutMs?: number): Promise<string | ArrayBuffer>;
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * Opens a WebSocket to `url` (binary messages as ArrayBuffer); resolves
 * once open, rejects on error. Closed when the scope closes.
 *
 * @example
 * const { ws, next } = await openWebSocket(s, gw.url.replace(/^http/, 'ws') + '/ws');
 * ws.send('hi');
 * assert.equal(await next(), 'hi');
 */
export function openWebSocket(s: Scope, url: string): Promise<WebSocketClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    s.defer(() => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
    });
    const inbox: Array<string | ArrayBuffer> = [];
    const waiting: Array<(m: string | ArrayBuffer) => void> = [];
    ws.addEventListener('message', (e) => {
      const w = waiting.shift();
      if (w) w(e.data as string | ArrayBuffer);
      else inbox.push(e.data as string | ArrayBuffer);
    });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.addEventListener('close', (e) => r({ code: e.code, reason: e.reason })));
    ws.addEventListener('error', () => reject(new Error(`WebSocket ${url} failed`)), { once: true });
    ws.addEventListener('open', () =>
      resolve({
        ws,
        closed,
        next: (timeoutMs = 5000) => {
          if (inbox.length) return Promise.resolve(inbox.shift()!);
          return new Promise((res, rej) => {
            const timer = setTimeout(() => {
              waiting.splice(waiting.indexOf(take), 1);
              rej(new Error(`no WebSocket message within ${timeoutMs} ms`));
            }, timeoutMs);
            const take = (m: string | ArrayBuffer) => {
              clearTimeout(timer);
              res(m);
            };
            waiting.push(take);
          });
        },
      }),
    );
  });
}
