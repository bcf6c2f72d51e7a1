/**
 * @module gateway
 * The request pipeline (`pipeline.ts`) on Web Request/Response, as a Hono
 * app factory: the edge worker's data plane (and the planner of WebSocket
 * upgrades on both planes). Every decision is the pipeline's; this module
 * carries its plans out with Web objects: bodies stream as ReadableStreams
 * (only a plugin binding with `with_body` gets a copy of the first 64 KiB),
 * upstreams are fetched through the injected `UpstreamFetch`, answers become
 * Responses. The Node data plane runs the same pipeline on `node:http` and
 * undici directly (`node-runner/http-plane.ts`).
 *
 * What differs between data planes is injected: how hooks are called (in
 * process on the runner, over HTTP/WebSocket on the edge), how upstreams are
 * fetched, who the client is, and how a connection is dropped. WebSocket
 * sessions are planned here (`Gateway.upgrade`: route, on_request,
 * on_connect, target) and carried by the data plane, which reports
 * on_disconnect.
 */

import { Hono, type Context, type Env } from 'hono';
import { accessFactsOf, verdictName, whenSent, type AccessFacts } from './access-log.ts';
import { admitConnection } from './connect.ts';
import type { Logger } from '../log.ts';
import { HOOK_BIT, MAX_BODY_COPY, type AuthorizeResult, type RequestInfo } from '../protocol/protocol.ts';
import type { GatewayState, ActionPlan } from '../state/state.ts';
import { throttle } from './throttle.ts';
import { edgeUnsupportedBody } from '../serve/serve.ts';
import {
  Pipeline,
  textAnswer,
  verdictAnswer,
  type Answer,
  type ClientInfo,
  type Facts,
  type HeaderList,
  type HookClient,
  type RawRequest,
  type UpstreamLimits,
  forwardHeaderList,
} from './pipeline.ts';

export type { ClientInfo, HookClient, RawRequest, UpstreamLimits } from './pipeline.ts';

/** One request to an upstream. */
export interface UpstreamRequest {
  url: string;
  method: string;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
  /** time allowed until the response headers arrive */
  timeoutMs: number;
  signal: AbortSignal | undefined;
  /** the action's share of upstream connections (the Node data plane enforces it; the edge has its own limits) */
  limits?: UpstreamLimits;
}

/**
 * Fetches from an upstream without following redirects or decoding bodies.
 * Rejects with HookgateError `UPSTREAM_CONNECT`, `UPSTREAM_TIMEOUT` or
 * `UPSTREAM_BUSY`.
 */
export type UpstreamFetch = (req: UpstreamRequest) => Promise<Response>;

/**
 * The deadline of one upstream request, for `UpstreamFetch`
 * implementations: `signal` aborts when `timeoutMs` passes before
 * `headersArrived()`, or when the client goes away (until `release()`).
 * `timedOut` tells the two apart.
 *
 * @example
 * const d = upstreamDeadline(r);
 * try { const res = await fetch(r.url, { signal: d.signal }); d.headersArrived(); return res; }
 * catch (err) { d.release(); throw d.timedOut ? timeoutError : err; }
 */
export function upstreamDeadline(r: { timeoutMs: number; signal: AbortSignal | undefined }) {
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, r.timeoutMs);
  const onClientAbort = () => ctl.abort();
  r.signal?.addEventListener('abort', onClientAbort, { once: true });
  return {
    signal: ctl.signal,
    get timedOut(): boolean {
      return timedOut;
    },
    /** The response headers are in: the timeout no longer applies (the client's abort still does). */
    headersArrived(): void {
      clearTimeout(timer);
    },
    /** The exchange is over: stop following the client. */
    release(): void {
      clearTimeout(timer);
      r.signal?.removeEventListener('abort', onClientAbort);
    },
  };
}


/**
 * The Host values of a raw header list (`[name, value, name, value, ...]`,
 * Node's `rawHeaders`), duplicates kept.
 *
 * @example
 * hostHeaders(['Host', 'a.example', 'host', 'b.example']) // ['a.example', 'b.example']
 */
export function hostHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === 4 && n.toLowerCase() === 'host') out.push(raw[i + 1]);
  }
  return out;
}

/** The raw request of a Web Request whose URL the platform built (the edge): origin form, one Host. */
function rawOfUrl(req: Request): RawRequest {
  const { path, query } = splitUrl(req.url);
  const host = req.headers.get('host');
  return { target: query ? `${path}?${query}` : path, hosts: host === null ? [] : [host] };
}

export interface GatewayDeps<E extends Env> {
  /** The current routing state; read once per request. */
  state: () => GatewayState;
  hooks: HookClient;
  upstream: UpstreamFetch;
  logger: Logger;
  client: (c: Context<E>) => ClientInfo;
  /** Closes the client's connection without a response (where the platform can). */
  drop: (c: Context<E>) => Response;
  /** The request as sent (target and Host headers); default: from the Request's URL and its Host. */
  raw?: (c: Context<E>) => RawRequest;
  now?: () => number;
  /** The pipeline to run (default: one over `state`, `hooks` and `logger`). */
  pipeline?: Pipeline;
  /**
   * Told what was measured of each plain request once its answer is done
   * (its body sent or abandoned), for an access log (`access-log.ts`). Unset:
   * nothing is measured.
   */
  access?: (a: AccessFacts) => void;
}

/** Splits an absolute URL into its raw (still encoded) path and query. */
export function splitUrl(url: string): { path: string; query: string } {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  if (start < 0) return { path: '/', query: '' };
  const q = url.indexOf('?', start);
  const hash = url.indexOf('#', start);
  const end = hash < 0 ? url.length : hash;
  if (q < 0 || q > end) return { path: url.slice(start, end), query: '' };
  return { path: url.slice(start, q), query: url.slice(q + 1, end) };
}

/** A Headers object of a header list. */
function headersOf(list: HeaderList): Headers {
  const h = new Headers();
  for (let i = 0; i < list.length; i += 2) h.append(list[i], list[i + 1]);
  return h;
}

/** The header list of a Headers object (Set-Cookie values stay separate). */
function listOf(headers: Headers): HeaderList {
  const out: HeaderList = [];
  headers.forEach((value, name) => {
    if (name !== 'set-cookie') out.push(name, value);
  });
  for (const c of headers.getSetCookie()) out.push('set-cookie', c);
  return out;
}

/** The Response of a pipeline answer. */
export function answerResponse(a: Answer): Response {
  return new Response(a.body as BodyInit | null, { status: a.status, headers: headersOf(a.headers) });
}

/**
 * The response for a deny verdict (see `verdictAnswer`).
 *
 * @example
 * verdictResponse({ ...verdict, ok: false, s: 401 }).status // 401
 */
export function verdictResponse(v: AuthorizeResult): Response {
  return answerResponse(verdictAnswer(v));
}

/**
 * Reads up to `limit` bytes of a body for a plugin, and returns them with a
 * stream that replays them followed by the rest: nothing is lost and only
 * the copy is buffered.
 */
async function peekBody(body: ReadableStream<Uint8Array>, limit: number): Promise<[Uint8Array, ReadableStream<Uint8Array>]> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  let done = false;
  while (n < limit) {
    const r = await reader.read();
    if (r.done) {
      done = true;
      break;
    }
    chunks.push(r.value);
    n += r.value.length;
  }
  const copy = new Uint8Array(Math.min(n, limit));
  let off = 0;
  for (const c of chunks) {
    if (off >= copy.length) break;
    const part = c.subarray(0, copy.length - off);
    copy.set(part, off);
    off += part.length;
  }
  const rest = new ReadableStream<Uint8Array>({
    start(ctrl) {
      for (const c of chunks) ctrl.enqueue(c);
      if (done) ctrl.close();
    },
    async pull(ctrl) {
      const r = await reader.read();
      if (r.done) ctrl.close();
      else ctrl.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return [copy, rest];
}

/** Calls `release` once when a body has been fully sent or abandoned. */
function onBodyEnd(body: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  let released = false;
  const once = () => {
    if (!released) {
      released = true;
      release();
    }
  };
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      flush: once,
      cancel: once,
    } as Transformer<Uint8Array, Uint8Array>),
  );
}

/** What the data plane does with a WebSocket upgrade request. */
export type UpgradePlan =
  | { kind: 'respond'; response: Response }
  | { kind: 'drop' }
  | {
      kind: 'proxy';
      routeId: string;
      /** the upstream URL (http/https; the data plane asks it to upgrade) */
      url: string;
      /** request headers for the upstream, Upgrade and Connection included */
      headers: Headers;
      target: string;
      /** call once when the session ends */
      release: () => void;
      /**
       * The client's answer when the upstream does not switch protocols
       * (any status but 101): its response through hop-by-hop stripping and
       * on_response, like any proxied response.
       */
      refused: (res: Response) => Promise<Response>;
    };

/** The gateway: the HTTP app, and the planner for WebSocket upgrades (whose transport is the data plane's). */
export interface Gateway<E extends Env> {
  app: Hono<E>;
  /**
   * Decides a WebSocket upgrade: route match, on_request (an upgrade is an
   * HTTP request too, so auth plugins see its headers), on_connect, target.
   * The data plane connects, pipes, and reports `hooks.onDisconnect` when
   * the session ends. Only `isWebSocketUpgrade` requests come here; `raw`
   * is the request as sent (default: from the Request's URL and Host).
   */
  upgrade(req: Request, client: ClientInfo, raw?: RawRequest): Promise<UpgradePlan>;
}

/**
 * Creates the gateway.
 *
 * @example
 * const { app, upgrade } = createGateway({ state: () => current, hooks: manager, upstream, logger, client, drop });
 * export default { fetch: app.fetch };
 */
export function createGateway<E extends Env>(deps: GatewayDeps<E>): Gateway<E> {
  const log = deps.logger;
  const pipeline = deps.pipeline ?? new Pipeline({ state: deps.state, hooks: deps.hooks, logger: deps.logger });
  const app = new Hono<E>();
  const now = deps.now ?? (() => performance.now());

  async function runAction(req: Request, f: Facts, action: ActionPlan, verdict: AuthorizeResult | null, info: RequestInfo | null, body: ReadableStream<Uint8Array> | null, isFallback: boolean, rec: AccessFacts | null = null): Promise<Response> {
    const s = pipeline.step(f, action, verdict, isFallback);
    if (s.kind === 'answer') return answerResponse(s);
    if (s.kind === 'fallback') return runAction(req, f, s.action, verdict, info, body, true, rec);
    // Web Request/Response cannot serve files; a drop route was dropped by `authorize` already.
    if (s.kind === 'serve' || s.kind === 'drop') return answerResponse(textAnswer(501, edgeUnsupportedBody(action.action.type)));
    let upBody = body;
    if (upBody && s.upload) upBody = upBody.pipeThrough(throttle(s.upload));
    let res: Response;
    const sentAt = rec ? now() : 0;
    if (rec) rec.upstream = s.target || s.url;
    try {
      res = await deps.upstream({ url: s.url, method: f.method, headers: headersOf(s.headers), body: upBody, timeoutMs: s.timeoutMs, signal: req.signal, limits: s.limits ?? undefined });
    } catch (err) {
      if (rec) rec.upstreamMs = now() - sentAt;
      const next = pipeline.upstreamFailed(f, s, err, isFallback, req.signal?.aborted ?? false);
      if (next === null) return new Response(null, { status: 499 });
      if (next.kind === 'fallback') return runAction(req, f, next.action, verdict, info, null, true, rec);
      return answerResponse(next as Answer);
    }
    if (rec) rec.upstreamMs = now() - sentAt;
    const asked = rec ? now() : 0;
    const r = await pipeline.respond(f, info, s.target, res.status, listOf(res.headers));
    if (rec && deps.hooks.hooksOf(f.plan.route.id) & HOOK_BIT.on_response) {
      rec.onResponseMs = now() - asked;
      rec.onResponseVerdict = r.kind === 'answer' ? 'error' : 'ok';
    }
    if (r.kind === 'answer') {
      await res.body?.cancel().catch(() => {});
      s.pick?.release();
      return answerResponse(r);
    }
    let outBody: ReadableStream<Uint8Array> | null = pipeline.bodiless(f, r.status) ? null : res.body;
    if (outBody === null) await res.body?.cancel().catch(() => {});
    if (outBody && s.download) outBody = outBody.pipeThrough(throttle(s.download));
    const pick = s.pick;
    if (pick) {
      // Only leastconn reads in-flight counts, and only it needs to hold the
      // pick until the body is sent; wrapping the body costs a stream stage.
      if (outBody && s.holdPick) outBody = onBodyEnd(outBody, () => pick.release());
      else pick.release();
    }
    return new Response(outBody, { status: r.status, headers: headersOf(r.headers) });
  }

  const rawOf = deps.raw ?? ((c: Context<E>) => rawOfUrl(c.req.raw));

  app.all('*', async (c) => {
    const req = c.req.raw;
    const raw = rawOf(c);
    const client = deps.client(c);
    const startedAt = deps.access ? now() : 0;
    const rec = deps.access ? accessFactsOf(req, raw, client) : null;
    const f = pipeline.route(req.method, raw, listOf(req.headers), client);
    if (f.kind === 'answer') return done(rec, startedAt, answerResponse(f));
    if (rec) {
      rec.requestId = f.requestId;
      rec.route = f.plan.route.id;
    }
    const res = await serveRouted(c, req, f, rec);
    // Our own Responses are mutable; one that is not (a drop) keeps its headers.
    try {
      res.headers.set('x-request-id', f.requestId);
    } catch {
      // immutable
    }
    return done(rec, startedAt, res);
  });

  /** Reports `rec` once `res` is sent: now when it has no body, else when its body ends or is abandoned. */
  function done(rec: AccessFacts | null, startedAt: number, res: Response): Response {
    if (!rec || !deps.access) return res;
    const report = deps.access;
    rec.status = res.status;
    return whenSent(res, (bytes) => {
      rec.bytesOut = bytes;
      rec.durationMs = now() - startedAt;
      report(rec);
    });
  }

  async function serveRouted(c: Context<E>, req: Request, f: Facts, rec: AccessFacts | null): Promise<Response> {
    // GET and HEAD carry no body; not touching it spares adapters from building one just to say null.
    let body: ReadableStream<Uint8Array> | null = req.method === 'GET' || req.method === 'HEAD' ? null : req.body;
    let bd: Uint8Array | null = null;
    if (body && pipeline.wantsBody(f)) [bd, body] = await peekBody(body, MAX_BODY_COPY);
    let a: Awaited<ReturnType<Pipeline['authorize']>>;
    if (rec && pipeline.callsOnRequest(f)) {
      // pipeline.authorize's steps, timed for the access log.
      const info = pipeline.requestInfo(f, bd, '');
      const asked = now();
      const verdict = await deps.hooks.onRequest(f.plan.route.id, info);
      rec.onRequestMs = now() - asked;
      rec.onRequestVerdict = verdictName(verdict);
      a = pipeline.verdict(f, verdict, info);
    } else a = await pipeline.authorize(f, bd);
    if (a.kind === 'drop') {
      await body?.cancel().catch(() => {});
      return deps.drop(c);
    }
    if (a.kind === 'answer') return answerResponse(a);
    return runAction(req, f, a.action, a.verdict, a.info, body, a.isFallback, rec);
  }

  app.onError((err, c) => {
    log.error({ err: err.message, stack: err.stack, url: c.req.url }, 'request failed');
    return answerResponse(textAnswer(500, 'internal error\n'));
  });

  async function upgrade(req: Request, client: ClientInfo, raw?: RawRequest): Promise<UpgradePlan> {
    const f = pipeline.route(req.method, raw ?? rawOfUrl(req), listOf(req.headers), client);
    if (f.kind === 'answer') return { kind: 'respond', response: answerResponse(f) };
    const a = await pipeline.authorize(f, null);
    if (a.kind === 'drop') return a;
    if (a.kind === 'answer') return { kind: 'respond', response: answerResponse(a) };
    if (a.action.action.type === 'serve') return { kind: 'respond', response: answerResponse(textAnswer(501, 'not implemented: this route serves files; it takes no WebSocket upgrade\n')) };
    if (a.isFallback || a.action.action.type !== 'proxy') {
      return { kind: 'respond', response: await runAction(req, f, a.action, a.verdict, a.info, null, a.isFallback) };
    }
    const routeId = f.plan.route.id;
    const refused = await admitConnection(deps.hooks, routeId, { r: routeId, d: f.hostname, a: client.remoteAddr, md: f.m.md, mg: f.m.mg });
    if (refused) return { kind: 'respond', response: answerResponse(refused) };
    const pick = pipeline.pickTarget(f, a.verdict);
    if (pick === undefined) return { kind: 'respond', response: answerResponse(textAnswer(503, 'no upstream target available\n')) };
    const target = pick?.target ?? '';
    const headers = headersOf(forwardHeaderList(f.headers, a.verdict, f.client, f.host));
    headers.set('connection', 'upgrade');
    headers.set('upgrade', 'websocket');
    const info = a.info;
    return {
      kind: 'proxy',
      routeId,
      url: pipeline.upstreamUrl(f.plan.action, f, a.verdict, target),
      headers,
      target,
      release: pick ? () => pick.release() : () => {},
      refused: async (res) => {
        const r = await pipeline.respond(f, info, target, res.status, listOf(res.headers));
        if (r.kind === 'answer') {
          await res.body?.cancel().catch(() => {});
          return answerResponse(r);
        }
        return new Response(r.status === 204 || r.status === 304 ? null : res.body, { status: r.status, headers: headersOf(r.headers) });
      },
    };
  }

  return { app, upgrade };
}
