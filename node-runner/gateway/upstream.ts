/**
 * @module upstream
 * The self-hosted gateway's upstream client over one undici Agent (a
 * keep-alive connection pool per origin): `exchange`, the data plane's,
 * on undici's dispatch layer (raw header arrays, body chunks handed on with
 * undici's backpressure), and `fetch`, a Web Response over undici's
 * `request` for the Web gateway. Unlike Web `fetch` neither follows
 * redirects nor decodes bodies, so responses pass through byte for byte
 * (Content-Encoding included) and request bodies stream. How many requests
 * of an action may be in flight to an origin, and how long others wait, is
 * `upstream-slots.ts`'s rule: a slot is held from dispatch until the
 * response body is done, and undici itself never queues.
 */

import { Readable } from 'node:stream';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { HookgateError, isHookgateError } from '../../src/core/errors.ts';
import { upstreamDeadline, type UpstreamFetch, type UpstreamRequest } from '../../src/core/gateway/gateway.ts';
import type { HeaderList, UpstreamLimits } from '../../src/core/gateway/pipeline.ts';
import type { Clock } from '../../src/core/clock.ts';
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
export function createUpstream(opts: UpstreamOptions = {}): Upstream {
  const slots = new UpstreamSlots(opts.clock);
  const agent = new Agent({
    connections: opts.connections ?? null,
    connect: { timeout: opts.connectTimeoutMs ?? 5000 },
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 30_000,
    pipelining: 1,
  });
  // `proto: "h2"` upstreams: HTTP/2 with prior knowledge on http:// (h2c), by ALPN on https://; made on first use.
  let h2Agent: Agent | null = null;
  const h2 = () =>
    (h2Agent ??= new Agent({
      connections: opts.connections ?? null,
      // A connector of our own: undici's Pool builds one without `useH2c` (only its H2CClient passes it on).
      connect: buildConnector({ timeout: opts.connectTimeoutMs ?? 5000, allowH2: true, ...{ useH2c: true } } as buildConnector.BuildOptions),
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 30_000,
      allowH2: true,
    }));

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
      throw upstreamError(err, r.url, r.timeoutMs, deadline.timedOut);
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

  return {
    fetch: fetchUpstream,
    exchange: (call, sink) => new Exchange(call.h2 ? h2() : agent, slots, call, sink).start(),
    close: async () => {
      await Promise.all([agent.close(), h2Agent?.close()]);
    },
  };
}

/** The upstream client of the self-hosted gateway. */
export interface Upstream {
  /** A Web Response for a Web request (the Hono app's `UpstreamFetch`). */
  fetch: UpstreamFetch;
  /**
   * One exchange on undici's dispatcher, without Web objects: the answer
   * goes to `sink` as it arrives. Returns the exchange, to abort it.
   */
  exchange(call: UpstreamCall, sink: UpstreamSink): UpstreamExchange;
  /** Ends every pooled connection. */
  close(): Promise<void>;
}

/** One request to an upstream, as the Node data plane sends it. */
export interface UpstreamCall {
  url: string;
  method: string;
  headers: HeaderList;
  body: Readable | null;
  /** time allowed until the response headers arrive */
  timeoutMs: number;
  limits: UpstreamLimits | null;
  /** speak HTTP/2 (`proto: "h2"`) */
  h2?: boolean;
}

/**
 * Where an exchange's answer goes. Exactly one of `end` and `error` is
 * called, once, after `head` for `end`.
 */
export interface UpstreamSink {
  /**
   * The status (a 1xx becomes 502) and raw headers are in. Return false to
   * hold the body back until `resume` is called.
   */
  head(status: number, headers: HeaderList, resume: () => void): boolean;
  /** A piece of the body; return false to hold the rest back until `resume`. */
  data(chunk: Buffer): boolean;
  end(): void;
  /**
   * The exchange failed: before `head`, with HookgateError
   * `UPSTREAM_CONNECT`, `UPSTREAM_TIMEOUT` or `UPSTREAM_BUSY` (or the
   * reason given to `abort`); after it, with whatever ended the body.
   */
  error(err: Error, afterHead: boolean): void;
}

/** A running exchange. */
export interface UpstreamExchange {
  /** Gives the exchange up (the client went away): the sink's `error` gets `reason`. Idempotent. */
  abort(reason: Error): void;
}

/** Turns what undici rejected with into our error codes (before the response headers). */
function upstreamError(err: unknown, url: string, timeoutMs: number, timedOut: boolean): unknown {
  if (isHookgateError(err, 'UPSTREAM_BUSY')) return err;
  if (timedOut) return new HookgateError('UPSTREAM_TIMEOUT', `no response from ${origin(url)} within ${timeoutMs} ms`, { cause: err });
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (CONNECT_CODES.has(code) || e.name === 'SocketError' || e.name === 'ConnectTimeoutError') {
    return new HookgateError('UPSTREAM_CONNECT', `cannot reach ${origin(url)} (${code || e.message})`, { cause: err });
  }
  return err;
}

/**
 * One exchange through undici's dispatch API (the layer under `request`):
 * the raw header arrays go straight through, the body is handed chunk by
 * chunk to the sink with undici's own backpressure, and no stream, promise
 * or AbortController is made unless a connection slot must be waited for.
 * The slot (when the action has limits) is held until the body is done.
 */
class Exchange implements Dispatcher.DispatchHandler, UpstreamExchange {
  #agent: Agent;
  #slots: UpstreamSlots;
  #call: UpstreamCall;
  #sink: UpstreamSink;
  #slot: Slot | null = null;
  #abortUndici: ((err: Error) => void) | null = null;
  #aborted: Error | null = null;
  #waiting: AbortController | null = null;
  #timer: NodeJS.Timeout | null = null;
  #timedOut = false;
  #afterHead = false;
  #done = false;

  constructor(agent: Agent, slots: UpstreamSlots, call: UpstreamCall, sink: UpstreamSink) {
    this.#agent = agent;
    this.#slots = slots;
    this.#call = call;
    this.#sink = sink;
  }

  start(): this {
    const limits = this.#call.limits;
    if (limits) {
      const at = originOf(this.#call.url);
      this.#slot = this.#slots.take(limits, at);
      if (!this.#slot) {
        const ctl = (this.#waiting = new AbortController());
        this.#slots.wait(limits, at, ctl.signal).then(
          (slot) => {
            this.#waiting = null;
            this.#slot = slot;
            if (this.#aborted) this.#finish(this.#aborted);
            else this.#dispatch();
          },
          (err: Error) => {
            this.#waiting = null;
            this.#finish(err);
          },
        );
        return this;
      }
    }
    this.#dispatch();
    return this;
  }

  abort(reason: Error): void {
    if (this.#done || this.#aborted) return;
    this.#aborted = reason;
    if (this.#waiting) return this.#waiting.abort(reason);
    this.#abortUndici?.(reason);
  }

  #dispatch(): void {
    const url = this.#call.url;
    const o = originOf(url);
    this.#timer = setTimeout(this.#onTimeout, this.#call.timeoutMs);
    try {
      this.#agent.dispatch(
        {
          origin: o,
          path: url.length > o.length ? url.slice(o.length) : '/',
          method: this.#call.method as Dispatcher.HttpMethod,
          headers: this.#call.headers,
          body: this.#call.body,
          headersTimeout: 0,
          bodyTimeout: 0,
        },
        this,
      );
    } catch (err) {
      this.onError(err as Error);
    }
  }

  #onTimeout = (): void => {
    this.#timer = null;
    this.#timedOut = true;
    const err = new Error('upstream response timeout');
    if (this.#abortUndici) return this.#abortUndici(err);
    // Not on a connection yet (still connecting): give up now, and abort once undici hands it over.
    this.#aborted = err;
    this.#finish(err);
  };

  #finish(err: Error | null): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#slot) this.#slots.release(this.#slot);
    if (err === null) return this.#sink.end();
    const e = this.#afterHead ? err : (upstreamError(this.#timedOut ? err : (this.#aborted ?? err), this.#call.url, this.#call.timeoutMs, this.#timedOut) as Error);
    this.#sink.error(e, this.#afterHead);
  }

  // undici's handler (the dispatch layer's callbacks)

  onConnect(abort: (err?: Error) => void): void {
    this.#abortUndici = abort as (err: Error) => void;
    if (this.#aborted) abort(this.#aborted);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#afterHead = true;
    const headers: HeaderList = new Array(raw.length);
    for (let i = 0; i < raw.length; i++) headers[i] = raw[i].toString('latin1');
    return this.#sink.head(status < 200 ? 502 : status, headers, resume);
  }

  onData(chunk: Buffer): boolean {
    return this.#sink.data(chunk);
  }

  onComplete(): void {
    this.#finish(null);
  }

  onError(err: Error): void {
    this.#finish(err);
  }
}

/**
 * A web ReadableStream over a Node Readable that does nothing until it is
 * first read.
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
  return web;
}

function origin(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
