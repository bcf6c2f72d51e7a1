/**
 * @module upstream
 * The self-hosted gateway's upstream client: undici's `request` over a
 * keep-alive connection pool per origin. Unlike `fetch` it neither follows
 * redirects nor decodes bodies, so responses pass through byte for byte
 * (Content-Encoding included) and request bodies stream.
 */

import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { HookgateError } from '../src/core/errors.ts';
import { upstreamDeadline, type UpstreamFetch, type UpstreamRequest } from '../src/core/gateway.ts';

export interface UpstreamOptions {
  /** keep-alive connections per origin (default 128) */
  connections?: number;
  /** time to establish a connection (default 5 s) */
  connectTimeoutMs?: number;
  /** how long an idle keep-alive connection is kept (default 30 s) */
  keepAliveTimeoutMs?: number;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/**
 * Creates the upstream client. `close()` ends every pooled connection.
 *
 * @example
 * const up = createUpstream();
 * const res = await up.fetch({ url: 'http://127.0.0.1:3000/x', method: 'GET', headers: new Headers(), body: null, timeoutMs: 30000, signal: undefined });
 */
export function createUpstream(opts: UpstreamOptions = {}): { fetch: UpstreamFetch; close(): Promise<void> } {
  const agent = new Agent({
    connections: opts.connections ?? 128,
    connect: { timeout: opts.connectTimeoutMs ?? 5000 },
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 30_000,
    pipelining: 1,
  });

  async function fetchUpstream(r: UpstreamRequest): Promise<Response> {
    const headers: string[] = [];
    r.headers.forEach((value, name) => headers.push(name, value));
    // Our own deadline for the response headers: undici's headersTimeout
    // ticks about once a second, too coarse for "300ms".
    const deadline = upstreamDeadline(r);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(r.url, {
        method: r.method as 'GET',
        headers,
        body: r.body ? Readable.fromWeb(r.body as import('node:stream/web').ReadableStream<Uint8Array>) : null,
        dispatcher: agent,
        headersTimeout: 0,
        bodyTimeout: 0,
        signal: deadline.signal,
      });
    } catch (err) {
      deadline.release();
      if (deadline.timedOut) throw new HookgateError('UPSTREAM_TIMEOUT', `no response from ${origin(r.url)} within ${r.timeoutMs} ms`, { cause: err });
      const e = err as NodeJS.ErrnoException;
      const code = e.code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code ?? '';
      if (CONNECT_CODES.has(code) || e.name === 'SocketError' || e.name === 'ConnectTimeoutError') {
        throw new HookgateError('UPSTREAM_CONNECT', `cannot reach ${origin(r.url)} (${code || e.message})`, { cause: err });
      }
      throw err;
    }
    deadline.headersArrived();
    // Until the body is done, the client's abort still ends it.
    res.body.once('close', () => deadline.release());
    const out = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) out.append(name, v);
      else out.append(name, value);
    }
    const status = res.statusCode;
    const noBody = status === 204 || status === 304 || r.method === 'HEAD';
    if (noBody) res.body.resume();
    const body = noBody ? null : lazyWebStream(res.body);
    return new Response(body, { status: status < 200 ? 502 : status, headers: out });
  }

  return { fetch: fetchUpstream, close: () => agent.close() };
}

/**
 * The Node stream behind each upstream body handed to the core, so the
 * Node data plane can pipe it straight to the client when the core passed
 * the body through untouched (see `runner.ts`), skipping web streams.
 */
export const nodeBodies = new WeakMap<ReadableStream<Uint8Array>, Readable>();

/**
 * A web ReadableStream over a Node Readable that does nothing until it is
 * first read: when nobody reads it (the body is piped natively), it costs
 * one object.
 */
function lazyWebStream(node: Readable): ReadableStream<Uint8Array> {
  // Destroying an unread body (a cancelled response) emits an AbortError;
  // readers see errors through the stream they read, so this one is noise.
  node.on('error', () => {});
  let it: AsyncIterator<Buffer> | null = null;
  const web = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      it ??= node[Symbol.asyncIterator]();
      const { value, done } = await it.next();
      if (done) ctrl.close();
      else ctrl.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    },
    cancel() {
      node.destroy();
    },
  }, { highWaterMark: 0 }); // pull only when read: a default stream would pull (and swallow) the first chunk at once
  nodeBodies.set(web, node);
  return web;
}

function origin(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
