/**
 * @module test/helpers/upstream
 * Real upstream servers on 127.0.0.1 that record what reached them, and the
 * deterministic bodies they (and tests) send.
 *
 * * `startUpstream`: an HTTP server that records every request (method,
 *   URL, headers, body length and sha256) and answers as the request's
 *   `X-Up-*` headers ask (delay, status, size, headers) or with a JSON echo,
 *   or with a handler of the test's own; optionally a WebSocket echo server
 *   (the `ws` package) that records every message.
 * * `patternStream` / `patternFacts`: large pseudo-random bodies that are
 *   never held in memory, and their sha256.
 */

import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { WebSocketServer, type RawData } from 'ws';
import type { Scope } from './scope.ts';

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * `size` deterministic pseudo-random bytes, as a stream of 64 KiB chunks
 * (nothing large is held in memory); `patternFacts(size)` has their sha256.
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

/** One request (or WebSocket session) that reached an upstream. */
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

/** One WebSocket message an upstream received. */
export interface WsMessage {
  binary: boolean;
  data: Buffer;
}

/** What the default upstream answers to a plain request. */
export interface EchoBody {
  upstream: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
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
  /** every WebSocket message it received, in order */
  wsMessages: WsMessage[];
  close(): Promise<void>;
}

export interface UpstreamOptions {
  /** reported in `X-Served-By` and the echo (default "upstream") */
  name?: string;
  /** headers added to every default answer */
  headers?: Record<string, string>;
  /** replaces the default answer (the request is still recorded once its body ends) */
  handler?: UpstreamHandler;
  /**
   * Accept WebSocket upgrades and echo every message as it came (text as
   * text, binary as binary), except the text "close please", answered by
   * closing with 4000 "closed by upstream". With `greet`, every session
   * starts with the text "welcome from NAME".
   */
  websocket?: boolean | { greet?: boolean };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The default answer: after the body is read, wait `X-Up-Delay` ms, answer
 * `X-Up-Status` (200) with `X-Served-By: NAME`, the upstream's `headers`
 * and those in `X-Up-Headers` (a JSON object), and either `X-Up-Size`
 * bytes of `patternStream(size, 7)` (without a Content-Type when
 * `X-Up-Untyped` is present) or the JSON echo (`EchoBody`).
 */
function echo(req: IncomingMessage, res: ServerResponse, up: Upstream, rec: Received, headers: Record<string, string>): void {
  const delay = Number(header(req, 'x-up-delay') ?? 0);
  const reply = () => {
    if (res.destroyed) return;
    const status = Number(header(req, 'x-up-status') ?? 200);
    const extra = JSON.parse(header(req, 'x-up-headers') ?? '{}') as Record<string, string>;
    res.setHeader('x-served-by', up.name);
    for (const [k, v] of Object.entries({ ...headers, ...extra })) res.setHeader(k, v);
    const size = header(req, 'x-up-size');
    if (size !== undefined) {
      const untyped = header(req, 'x-up-untyped') !== undefined;
      res.writeHead(status, { ...(untyped ? {} : { 'content-type': 'application/octet-stream' }), 'content-length': String(Number(size)) });
      patternStream(Number(size), 7).pipe(res);
      return;
    }
    const body: EchoBody = { upstream: up.name, method: rec.method, url: rec.url, headers: rec.headers, bodyBytes: rec.bodyBytes, bodySha256: rec.bodySha256 };
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
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
    wsMessages: [],
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
      if (!opts.handler) echo(req, res, up, rec, opts.headers ?? {});
    });
    req.on('error', () => {});
    if (opts.handler) opts.handler(req, res, up);
  });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  let wss: WebSocketServer | null = null;
  if (opts.websocket) {
    const greet = typeof opts.websocket === 'object' && opts.websocket.greet === true;
    const w = (wss = new WebSocketServer({ noServer: true }));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      up.wsSessions++;
      up.received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha256: '', endedAt: performance.now() });
      w.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => {});
        if (greet) ws.send(`welcome from ${up.name}`);
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
  up.port = port;
  up.target = `127.0.0.1:${port}`;
  up.url = `http://127.0.0.1:${port}`;
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
