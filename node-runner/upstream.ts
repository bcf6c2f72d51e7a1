/**
 * @module upstream
 * The self-hosted gateway's upstream client: undici's `request` over a
 * keep-alive connection pool per origin. Unlike `fetch` it neither follows
 * redirects nor decodes bodies, so responses pass through byte for byte
 * (Content-Encoding included) and request bodies stream. How many requests
 * of an action may be in flight to an origin, and how long others wait, is
 * `upstream-slots.ts`'s rule: a slot is held from dispatch until the
 * response body is done, and undici itself never queues.
 */

import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { HookgateError, isHookgateError } from '../src/core/errors.ts';
import { upstreamDeadline, type UpstreamFetch, type UpstreamRequest } from '../src/core/gateway.ts';
import type { Clock } from './clock.ts';
import { originOf, UpstreamSlots, type Slot } from './upstream-slots.ts';

export interface UpstreamOptions {
  /**
   * undici's cap on connections per origin (default none: the actions'
   * `max_connections` bound them, and a request over undici's cap would
   * wait in its unbounded queue)
   */
  connections?: number;
  /** time to establish a connection (default 5 s) */
  connectTimeoutMs?: number;
  /** how long an idle keep-alive connection is kept (default 30 s) */
  keepAliveTimeoutMs?: number;
  /** for the queue_timeout timers */
  clock?: Clock;
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
  const slots = new UpstreamSlots(opts.clock);
  const agent = new Agent({
    connections: opts.connections ?? null,
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
    let slot: Slot | null = null;
    let res: Awaited<ReturnType<typeof request>>;
    try {
      if (r.limits) {
        const at = originOf(r.url);
        slot = slots.take(r.limits, at) ?? (await slots.wait(r.limits, at, deadline.signal));
      }
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
      if (slot) slots.release(slot);
      if (isHookgateError(err, 'UPSTREAM_BUSY')) throw err;
      if (deadline.timedOut) throw new HookgateError('UPSTREAM_TIMEOUT', `no response from ${origin(r.url)} within ${r.timeoutMs} ms`, { cause: err });
      const e = err as NodeJS.ErrnoException;
      const code = e.code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code ?? '';
      if (CONNECT_CODES.has(code) || e.name === 'SocketError' || e.name === 'ConnectTimeoutError') {
        throw new HookgateError('UPSTREAM_CONNECT', `cannot reach ${origin(r.url)} (${code || e.message})`, { cause: err });
      }
      throw err;
    }
    deadline.headersArrived();
    // Until the body is done, the client's abort still ends it, and the
    // connection (the slot) is still in use.
    res.body.once('close', () => {
      deadline.release();
      if (slot) slots.release(slot);
    });
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
