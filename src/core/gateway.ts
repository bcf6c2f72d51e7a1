/**
 * @module gateway
 * The request pipeline of both data planes, as a Hono app factory: check
 * the Host and normalise the path from the raw request (`routing.ts`,
 * `path.ts`), match the route, strip the client headers it strips, make one on_request call when the route's plugins declared it,
 * apply the verdict (deny, drop, fallback, headers, path rewrite, query
 * cleaning, speed limit), run the action (proxy through the balancer,
 * static, redirect), make one on_response call when declared, and apply it.
 * Bodies stream; only a plugin binding with `with_body` gets a copy of the
 * first 64 KiB.
 *
 * What differs between data planes is injected: how hooks are called (in
 * process on the runner, over HTTP/WebSocket on the edge), how upstreams are
 * fetched, who the client is, and how a connection is dropped. WebSocket
 * sessions are planned here (`Gateway.upgrade`: route, on_request,
 * on_connect, target) and carried by the data plane, which reports
 * on_disconnect.
 */

import { Hono, type Context, type Env } from 'hono';
import { LogThrottle, type Logger } from './log.ts';
import { HOP_BY_HOP, strippedByPolicy, toHeaderMap, type StripPolicy } from './headers.ts';
import { ENCODED_SLASH_REFUSAL, hasEncodedSlash, matchPathOf, normalizePath, splitTarget } from './path.ts';
import {
  HOOK_BIT,
  MAX_BODY_COPY,
  type AuthorizeResult,
  type ConnInfo,
  type ConnResult,
  type DisconnectInfo,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from './protocol.ts';
import { isHookgateError } from './errors.ts';
import { hostOf, hostProblem, type RouteMatch } from './routing.ts';
import type { Pick } from './balancer.ts';
import { groupKeyOf, type ActionPlan, type GatewayState, type RoutePlan } from './state.ts';
import { mbpsToBytes, throttle, TokenBucket } from './throttle.ts';

/** How the gateway reaches plugins. PluginManager (runner) and the runner client (edge) implement it. */
export interface HookClient {
  /** HOOK_BIT mask of the hooks a route's plugins declared; read on every request, must be cheap. */
  hooksOf(routeId: string): number;
  /** Whether a binding on the route wants the request body copy. */
  wantsBody(routeId: string): boolean;
  onRequest(routeId: string, info: RequestInfo): Promise<AuthorizeResult>;
  onResponse(routeId: string, pair: ResponsePair): Promise<ResponseModResult>;
  onConnect(routeId: string, info: ConnInfo): Promise<ConnResult>;
  onDisconnect(routeId: string, info: DisconnectInfo): void;
}

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

/** How many requests of one proxy action may be in flight to one upstream, and how long others wait. */
export interface UpstreamLimits {
  /** who shares the limit: the action's name, or `routes/<id>` for an inline action */
  key: string;
  /** requests in flight to one origin (host:port) at once */
  maxConnections: number;
  /** how long a request waits for one of them before `UPSTREAM_BUSY` */
  queueTimeoutMs: number;
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

/** Who is on the other end of a request. */
export interface ClientInfo {
  /** "ip:port", "[ipv6]:port" for IPv6 (Go's RemoteAddr form) */
  remoteAddr: string;
  /** the IP alone, for X-Forwarded-For */
  ip: string;
  /** e.g. "HTTP/1.1" */
  protocol: string;
  tls: boolean;
}

/**
 * What the client sent, before any URL parsing: the data plane passes it
 * where the platform keeps it, so the core normalises the path itself
 * (`path.ts`) and sees every Host header.
 *
 * @example
 * const raw: RawRequest = { target: incoming.url, hosts: hostHeaders(incoming.rawHeaders) };
 */
export interface RawRequest {
  /** the request target as sent: origin form (`/p?q`) or absolute form */
  target: string;
  /** every Host header value, in order (more than one is refused) */
  hosts: string[];
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
}

const DENY_BODY = 'service unavailable\n';
/** A busy upstream frees up within moments: say when to come back. */
const BUSY_HEADERS = { 'retry-after': '1' };

/** Shared speed-limit buckets by group key (the same key shares one budget). */
class Buckets {
  #shared = new Map<string, TokenBucket>();
  get(mbps: number, groupKey: string, dir: 'dl' | 'ul'): TokenBucket {
    if (!groupKey) return new TokenBucket(mbpsToBytes(mbps));
    const key = `${dir}\n${mbps}\n${groupKey}`;
    let b = this.#shared.get(key);
    if (!b) {
      if (this.#shared.size > 10_000) this.#shared.clear();
      this.#shared.set(key, (b = new TokenBucket(mbpsToBytes(mbps))));
    }
    return b;
  }
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

function text(status: number, body: string, headers?: Record<string, string>): Response {
  return new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8', ...headers } });
}

/**
 * The response for a deny verdict: the plugin's status (403 when it gave
 * none), body and headers. For a failure verdict (`e` set: a binding's
 * `on_error`, or the edge's `edge_on_error`) its status and body only,
 * never the reason.
 */
export function verdictResponse(v: AuthorizeResult): Response {
  if (v.e) return text(v.s >= 200 && v.s <= 599 ? v.s : 503, typeof v.b === 'string' && v.b ? v.b : DENY_BODY);
  const status = v.s >= 200 && v.s <= 599 ? v.s : 403;
  const headers = new Headers();
  for (const k in v.h) headers.set(k, v.h[k]);
  const body = status === 204 || status === 304 ? null : v.b;
  if (body && !headers.has('content-type')) headers.set('content-type', 'text/plain; charset=utf-8');
  return new Response(body as BodyInit | null, { status, headers });
}

/** Copies request headers for the upstream: hop-by-hop ones (and those named in Connection) and Expect removed. */
function upstreamHeaders(src: Headers): Headers {
  const out = new Headers(src);
  const conn = src.get('connection');
  if (conn) for (const name of conn.split(',')) out.delete(name.trim());
  for (const h of HOP_BY_HOP) out.delete(h);
  out.delete('expect');
  return out;
}

/** Copies response headers for the client, hop-by-hop ones removed. */
function clientHeaders(src: Headers): Headers {
  const out = new Headers(src);
  const conn = src.get('connection');
  if (conn) for (const name of conn.split(',')) out.delete(name.trim());
  for (const h of HOP_BY_HOP) out.delete(h);
  return out;
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

/** The request's facts, computed once and shared by hook data and the action. */
interface Facts {
  method: string;
  host: string;
  hostname: string;
  /** the normal path (`path.ts`): what plugins, templates and the upstream see */
  path: string;
  query: string;
  client: ClientInfo;
  m: RouteMatch;
  plan: RoutePlan;
  vars: Record<string, string>;
  /** the client's headers without those the route strips */
  headers: Headers;
}

/**
 * The client's headers without those the policy strips: the same object
 * when none is stripped (the usual case), so nothing is copied.
 */
function strippedHeaders(headers: Headers, policy: StripPolicy): Headers {
  let out: Headers | null = null;
  for (const name of headers.keys()) {
    if (!strippedByPolicy(name, policy)) continue;
    out ??= new Headers(headers);
    out.delete(name);
  }
  return out ?? headers;
}

function requestInfo(f: Facts, headers: Headers, bd: Uint8Array | null, target: string): RequestInfo {
  const cl = Number(headers.get('content-length') ?? 0);
  return {
    r: f.plan.route.id,
    m: f.method,
    p: f.path,
    q: f.query,
    d: f.hostname,
    ho: f.host,
    pr: f.client.protocol,
    a: f.client.remoteAddr,
    cl: Number.isFinite(cl) ? cl : 0,
    h: toHeaderMap(headers),
    bd,
    md: f.m.md,
    mg: f.m.mg,
    mp: f.m.mp,
    v: f.vars,
    tg: target,
  };
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
 * http.createServer(getRequestListener(app.fetch));
 */
export function createGateway<E extends Env>(deps: GatewayDeps<E>): Gateway<E> {
  const log = deps.logger;
  const logThrottle = new LogThrottle();
  const buckets = new Buckets();
  const app = new Hono<E>();

  /**
   * Checks the Host and the path, and matches the route: the facts, or the
   * answer when the request cannot be routed (400 for a bad Host or path,
   * 404 when no route matches).
   */
  function facts(req: Request, client: ClientInfo, raw: RawRequest): Facts | Response {
    const bad = hostProblem(raw.hosts);
    if (bad) return text(400, bad);
    const host = raw.hosts[0];
    const target = splitTarget(raw.target);
    if (target.authority !== null && target.authority.toLowerCase() !== host.toLowerCase()) {
      return text(400, 'bad request: the request target names another host than the Host header\n');
    }
    const path = normalizePath(target.path);
    if (typeof path !== 'string') return text(400, path.message);
    const state = deps.state();
    const m = state.router.match(req.method, host, matchPathOf(path));
    const plan = m && state.plan(m.route.id);
    if (!m || !plan) return text(404, 'no route matches this request\n');
    if (!plan.allowEncodedSlash && hasEncodedSlash(path)) return text(400, ENCODED_SLASH_REFUSAL);
    const set = plan.route.set;
    let vars = m.vars;
    for (const _ in set) {
      vars = { ...set, ...m.vars };
      break;
    }
    const headers = strippedHeaders(req.headers, plan.strip);
    return { method: req.method, host, hostname: hostOf(host), path, query: target.query, client, m, plan, vars, headers };
  }

  /** Picks a target; `pick` is null for routes without a balancer, `undefined` when the balancer has none. */
  function pickTarget(f: Facts, verdict: AuthorizeResult | null): Pick | null | undefined {
    const plan = f.plan;
    if (!plan.balancer) return null;
    if (!plan.groupBy) return plan.balancer.pick() ?? undefined;
    const client = plan.groupBy.from === 'header' ? f.headers.get(plan.groupBy.name) : null;
    const key = groupKeyOf(plan.groupBy, verdict?.h ?? null, client, f.vars);
    return plan.balancer.pick(key, plan.unknownGroup) ?? undefined;
  }

  function upstreamUrl(action: ActionPlan, f: Facts, verdict: AuthorizeResult | null, target: string): string {
    const path = verdict?.rp || f.path;
    const query = verdict?.cq ? '' : f.query;
    let url = action.template!({ ...f.vars, target, path, query, host: f.hostname });
    if (!action.placesPath) url = (url.endsWith('/') ? url.slice(0, -1) : url) + path + (query ? '?' + query : '');
    else if (query && !action.placesQuery) url += (url.includes('?') ? '&' : '?') + query;
    return url;
  }

  function forwardHeaders(f: Facts, verdict: AuthorizeResult | null): Headers {
    const headers = upstreamHeaders(f.headers);
    if (verdict) for (const name of verdict.rm) headers.delete(name);
    // The client's chain (unless stripped or removed by a plugin), never a plugin's.
    const xff = headers.get('x-forwarded-for');
    if (verdict) for (const k in verdict.h) headers.set(k, verdict.h[k]);
    headers.set('x-forwarded-for', xff ? `${xff}, ${f.client.ip}` : f.client.ip);
    headers.set('x-forwarded-proto', f.client.tls ? 'https' : 'http');
    headers.set('x-forwarded-host', f.host);
    return headers;
  }

  async function runAction(req: Request, f: Facts, action: ActionPlan, verdict: AuthorizeResult | null, info: RequestInfo | null, body: ReadableStream<Uint8Array> | null, isFallback: boolean): Promise<Response> {
    const a = action.action;
    if (a.type === 'static') {
      return new Response(a.status === 204 || a.status === 304 ? null : a.body, { status: a.status, headers: a.headers });
    }
    if (a.type === 'redirect') {
      const path = verdict?.rp || f.path;
      const query = verdict?.cq ? '' : f.query;
      let to = action.template!({ ...f.vars, path, query, host: f.hostname });
      if (query && !action.placesQuery) to += (to.includes('?') ? '&' : '?') + query;
      return new Response(null, { status: a.status, headers: { location: to } });
    }

    const plan = f.plan;
    const pick = pickTarget(f, verdict);
    if (pick === undefined) return fallbackOr(req, f, verdict, info, body, isFallback, 503, 'no upstream target available\n');
    const target = pick?.target ?? '';
    const url = upstreamUrl(action, f, verdict, target);
    const headers = forwardHeaders(f, verdict);

    const speed = verdict?.sp ?? null;
    const pushed = deps.state().speed(plan.route.id);
    const dl = speed?.dl || pushed?.download_mbps || 0;
    const ul = speed?.ul || pushed?.upload_mbps || 0;
    const gk = speed?.gk || pushed?.group_key || '';
    let upBody = body;
    if (upBody && ul > 0) upBody = upBody.pipeThrough(throttle(buckets.get(ul, gk, 'ul')));

    let res: Response;
    try {
      res = await deps.upstream({ url, method: f.method, headers, body: upBody, timeoutMs: action.timeoutMs, signal: req.signal, limits: action.limits ?? undefined });
    } catch (err) {
      pick?.release();
      if (isHookgateError(err, 'UPSTREAM_BUSY')) {
        const held = logThrottle.admit(`busy ${plan.route.id} ${target}`);
        if (held >= 0) log.warn({ route: plan.route.id, target, err: err.message, suppressed: held }, 'upstream busy');
        return fallbackOr(req, f, verdict, info, null, isFallback, 503, 'upstream busy\n', BUSY_HEADERS);
      }
      const timeout = isHookgateError(err, 'UPSTREAM_TIMEOUT');
      const reachable = timeout || isHookgateError(err, 'UPSTREAM_CONNECT');
      // The client went away: nobody is left to answer, and it is not an error.
      if (!reachable && req.signal?.aborted) return new Response(null, { status: 499 });
      const held = logThrottle.admit(`upstream ${plan.route.id} ${target}`);
      if (held >= 0) log.warn({ route: plan.route.id, target, err: (err as Error).message, suppressed: held }, timeout ? 'upstream timed out' : 'upstream unreachable');
      return fallbackOr(req, f, verdict, info, null, isFallback, timeout ? 504 : 502, timeout ? 'upstream timed out\n' : 'upstream unreachable\n');
    }

    const answered = await responsePhase(f, info, target, res);
    if (answered.failed) {
      pick?.release();
      return answered.failed;
    }
    const { status, headers: outHeaders } = answered;
    let outBody = answered.body;
    if (outBody && dl > 0) outBody = outBody.pipeThrough(throttle(buckets.get(dl, gk, 'dl')));
    if (pick) {
      // Only leastconn reads in-flight counts, and only it needs to hold the
      // pick until the body is sent; wrapping the body costs a stream stage
      // (and the Node plane's direct pipe), so the others release now.
      if (outBody && plan.route.balancer?.type === 'leastconn') outBody = onBodyEnd(outBody, () => pick.release());
      else pick.release();
    }
    if (status === 204 || status === 304 || f.method === 'HEAD') outBody = null;
    return new Response(outBody, { status, headers: outHeaders });
  }

  /**
   * What every upstream answer goes through before the client sees it
   * (proxied responses and refused upgrades alike): hop-by-hop headers
   * removed, then on_response when declared. `failed` is the answer instead
   * when on_response failed (the upstream's body is cancelled).
   */
  async function responsePhase(
    f: Facts,
    info: RequestInfo | null,
    target: string,
    res: Response,
  ): Promise<{ failed: null; status: number; headers: Headers; body: ReadableStream<Uint8Array> | null } | { failed: Response }> {
    let status = res.status;
    const headers = clientHeaders(res.headers);
    const routeId = f.plan.route.id;
    if (deps.hooks.hooksOf(routeId) & HOOK_BIT.on_response) {
      const reqInfo = info ? { ...info, tg: target } : requestInfo(f, f.headers, null, target);
      const mod = await deps.hooks.onResponse(routeId, { req: reqInfo, resp: { s: status, h: toHeaderMap(res.headers) } });
      // A status a Response cannot carry is a failure too (the runner refuses 1xx already).
      if (mod.e || (mod.s !== 0 && !(mod.s >= 200 && mod.s <= 599))) {
        await res.body?.cancel().catch(() => {});
        return { failed: text(mod.e && mod.s >= 200 && mod.s <= 599 ? mod.s : 503, (mod.e && mod.b) || DENY_BODY) };
      }
      if (mod.s) status = mod.s;
      for (const name of mod.rm) headers.delete(name);
      for (const name in mod.h) headers.set(name, mod.h[name]);
    }
    return { failed: null, status, headers, body: res.body };
  }

  function fallbackOr(req: Request, f: Facts, verdict: AuthorizeResult | null, info: RequestInfo | null, body: ReadableStream<Uint8Array> | null, isFallback: boolean, status: number, msg: string, headers?: Record<string, string>): Promise<Response> | Response {
    if (!isFallback && f.plan.fallback) return runAction(req, f, f.plan.fallback, verdict, info, body, true);
    return text(status, msg, headers);
  }

  type Authorized =
    | { kind: 'respond'; response: Response | Promise<Response> }
    | { kind: 'drop' }
    | { kind: 'go'; verdict: AuthorizeResult | null; info: RequestInfo | null; body: ReadableStream<Uint8Array> | null };

  /** on_request, when the route's plugins declared it, and what its verdict means. */
  async function authorize(req: Request, f: Facts): Promise<Authorized> {
    const routeId = f.plan.route.id;
    // GET and HEAD carry no body; not touching it spares adapters (such as
    // @hono/node-server's) from building a full Request just to say null.
    let body: ReadableStream<Uint8Array> | null = req.method === 'GET' || req.method === 'HEAD' ? null : req.body;
    if (!(deps.hooks.hooksOf(routeId) & HOOK_BIT.on_request)) return { kind: 'go', verdict: null, info: null, body };
    let bd: Uint8Array | null = null;
    if (body && deps.hooks.wantsBody(routeId)) [bd, body] = await peekBody(body, MAX_BODY_COPY);
    const info = requestInfo(f, f.headers, bd, '');
    const verdict = await deps.hooks.onRequest(routeId, info);
    if (verdict.dr) {
      await body?.cancel().catch(() => {});
      return { kind: 'drop' };
    }
    if (verdict.fb) {
      if (f.plan.fallback) return { kind: 'respond', response: runAction(req, f, f.plan.fallback, verdict, info, body, true) };
      return { kind: 'respond', response: text(503, DENY_BODY) };
    }
    if (!verdict.ok) return { kind: 'respond', response: verdictResponse(verdict) };
    return { kind: 'go', verdict, info, body };
  }

  const rawOf = deps.raw ?? ((c: Context<E>) => rawOfUrl(c.req.raw));

  app.all('*', async (c) => {
    const req = c.req.raw;
    const f = facts(req, deps.client(c), rawOf(c));
    if (f instanceof Response) return f;
    const a = await authorize(req, f);
    if (a.kind === 'drop') return deps.drop(c);
    if (a.kind === 'respond') return a.response;
    return runAction(req, f, f.plan.action, a.verdict, a.info, a.body, false);
  });

  app.onError((err, c) => {
    log.error({ err: err.message, stack: err.stack, url: c.req.url }, 'request failed');
    return text(500, 'internal error\n');
  });

  async function upgrade(req: Request, client: ClientInfo, raw?: RawRequest): Promise<UpgradePlan> {
    const f = facts(req, client, raw ?? rawOfUrl(req));
    if (f instanceof Response) return { kind: 'respond', response: f };
    const a = await authorize(req, f);
    if (a.kind !== 'go') return a.kind === 'drop' ? a : { kind: 'respond', response: await a.response };
    if (f.plan.action.action.type !== 'proxy') {
      return { kind: 'respond', response: await runAction(req, f, f.plan.action, a.verdict, a.info, null, false) };
    }
    const routeId = f.plan.route.id;
    if (deps.hooks.hooksOf(routeId) & HOOK_BIT.on_connect) {
      const conn = await deps.hooks.onConnect(routeId, { r: routeId, d: f.hostname, a: client.remoteAddr, md: f.m.md, mg: f.m.mg });
      if (!conn.ok) {
        const failed = conn.e ? text(conn.s >= 200 && conn.s <= 599 ? conn.s : 503, conn.b || DENY_BODY) : text(403, 'forbidden\n');
        return { kind: 'respond', response: failed };
      }
    }
    const pick = pickTarget(f, a.verdict);
    if (pick === undefined) return { kind: 'respond', response: text(503, 'no upstream target available\n') };
    const headers = forwardHeaders(f, a.verdict);
    headers.set('connection', 'upgrade');
    headers.set('upgrade', 'websocket');
    const target = pick?.target ?? '';
    const info = a.info;
    return {
      kind: 'proxy',
      routeId,
      url: upstreamUrl(f.plan.action, f, a.verdict, target),
      headers,
      target,
      release: pick ? () => pick.release() : () => {},
      refused: async (res) => {
        const answered = await responsePhase(f, info, target, res);
        if (answered.failed) return answered.failed;
        return new Response(answered.status === 204 || answered.status === 304 ? null : answered.body, { status: answered.status, headers: answered.headers });
      },
    };
  }

  return { app, upgrade };
}
