/**
 * @module pipeline
 * The request pipeline's decisions, as plain functions over plain data:
 * both data planes run the same steps and neither re-decides.
 *
 * 1. `route`: check the Host and normalise the path from the raw request
 *    (`routing.ts`, `path.ts`), match the route, strip the client headers
 *    it strips. Gives the request's facts, or the answer (400, 404).
 * 2. `authorize`: one on_request call when the route's plugins declared it,
 *    and what its verdict means (deny, drop, fallback, go on).
 * 3. `step`: what an action does: an answer (static, redirect), or a proxy
 *    plan (the upstream URL, the headers to send, the target picked by the
 *    balancer, speed limits, deadline, connection limits).
 * 4. `upstreamFailed`: what a failed upstream exchange gets (the fallback,
 *    or 502/503/504).
 * 5. `respond`: hop-by-hop headers removed from the upstream's answer, then
 *    one on_response call when declared, and its changes applied.
 *
 * Headers are flat lists (`[name, value, name, value, ...]`, the form of
 * Node's `rawHeaders`), names in any case, compared case-insensitively.
 * Answers carry a status, a header list and a string body. What the data
 * plane does with these (Web Request/Response in Hono on the edge,
 * `node:http` and undici on Node) is its own business: this module does no
 * I/O, builds no Web objects and starts no timers.
 */

import { LogThrottle, type Logger } from '../log.ts';
import { headerMapOfList, listGet, stripList } from '../protocol/headers.ts';
import { ENCODED_SLASH_REFUSAL, hasEncodedSlash, matchPathOf, normalizePath, splitTarget } from '../routing/path.ts';
import { HOOK_BIT, type AuthorizeResult, type ConnInfo, type ConnResult, type DisconnectInfo, type RequestInfo, type ResponseModResult, type ResponsePair } from '../protocol/protocol.ts';
import { DENY_BODY, failureStatus } from '../protocol/verdict.ts';
import { isHookgateError } from '../errors.ts';
import { hostOf, hostProblem, type RouteMatch } from '../routing/routing.ts';
import type { Pick } from '../routing/balancer.ts';
import { groupKeyOf, type ActionPlan, type GatewayState, type RoutePlan } from '../state/state.ts';
import { mbpsToBytes, TokenBucket } from './throttle.ts';
import { clientHeaderList, forwardHeaderList, requestIdOf } from './forward-headers.ts';

export { clientHeaderList, forwardHeaderList, requestIdOf } from './forward-headers.ts';
import type { ServeStep } from '../serve/serve.ts';

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

/** How many requests of one proxy action may be in flight to one upstream, and how long others wait. */
export interface UpstreamLimits {
  /** who shares the limit: the action's name, or `routes/<id>` for an inline action */
  key: string;
  /** requests in flight to one origin (host:port) at once */
  maxConnections: number;
  /** how long a request waits for one of them before `UPSTREAM_BUSY` */
  queueTimeoutMs: number;
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

/** A header list: `[name, value, name, value, ...]`, names in any case. */
export type HeaderList = string[];

/** A complete answer for the client, decided by the core. */
export interface Answer {
  kind: 'answer';
  status: number;
  headers: HeaderList;
  /** null: no body (204, 304, a redirect) */
  body: string | Uint8Array | null;
}

/** The request's facts, computed once by `route` and shared by every later step. */
export interface Facts {
  kind: 'facts';
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
  /** the client's headers without those the route strips, with the request id */
  headers: HeaderList;
  /** X-Request-Id: the client's when it sent one valid id, else a new one (`requestIdOf`) */
  requestId: string;
}

/** What `authorize` decided. */
export type Authorized =
  | Answer
  | { kind: 'drop' }
  /** run `action` (the route's, or its fallback when `isFallback`) */
  | { kind: 'action'; action: ActionPlan; isFallback: boolean; verdict: AuthorizeResult | null; info: RequestInfo | null };

/** A request to an upstream, as planned by `step`. */
export interface ProxyStep {
  kind: 'proxy';
  url: string;
  /** the request headers for the upstream (hop-by-hop removed, verdict applied, X-Forwarded-* set) */
  headers: HeaderList;
  /** the balancer's pick (release it once), null for routes without a balancer */
  pick: Pick | null;
  /** the picked target, '' without a balancer */
  target: string;
  /** hold `pick` until the response body is sent (leastconn counts in-flight requests), else release it when the headers are in */
  holdPick: boolean;
  /** time allowed until the response headers arrive */
  timeoutMs: number;
  limits: UpstreamLimits | null;
  /** speak HTTP/2 to the upstream (`proto: "h2"`) */
  h2: boolean;
  /** the speed limits, in bytes per second (0: none), and their shared buckets */
  download: TokenBucket | null;
  upload: TokenBucket | null;
}

/** What an action does: answer, proxy, serve files, drop, or fall back (the answer when there is no fallback). */
export type Step = Answer | ProxyStep | ServeStep | { kind: 'drop' } | { kind: 'fallback'; action: ActionPlan };

/** What `respond` decided about an upstream's answer. */
export type Responded = Answer | { kind: 'respond'; status: number; headers: HeaderList };

const TEXT = 'text/plain; charset=utf-8';
/** A busy upstream frees up within moments: say when to come back. */
const BUSY_HEADERS = ['retry-after', '1'];

/**
 * A plain-text answer.
 *
 * @example
 * textAnswer(404, 'no route matches this request\n')
 */
export function textAnswer(status: number, body: string, headers?: HeaderList): Answer {
  const h = ['content-type', TEXT];
  if (headers) h.push(...headers);
  return { kind: 'answer', status, headers: h, body };
}

/**
 * The answer for a deny verdict: the plugin's status (403 when it gave
 * none), body and headers. For a failure verdict (`e` set: a binding's
 * `on_error`, or the edge's `edge_on_error`) its status and body only,
 * never the reason.
 *
 * @example
 * verdictAnswer({ ...verdict, ok: false, s: 401, b: 'who are you?\n' })
 */
export function verdictAnswer(v: AuthorizeResult): Answer {
  if (v.e) return textAnswer(failureStatus(v.s), typeof v.b === 'string' && v.b ? v.b : DENY_BODY);
  const status = v.s >= 200 && v.s <= 599 ? v.s : 403;
  const headers: HeaderList = [];
  let typed = false;
  for (const k in v.h) {
    // One value per name, the last one set wins (as Headers.set would).
    const lower = k.toLowerCase();
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i].toLowerCase() === lower) {
        headers.splice(i, 2);
        break;
      }
    }
    headers.push(lower, v.h[k]);
    if (lower === 'content-type') typed = true;
  }
  const body = status === 204 || status === 304 ? null : (v.b ?? '');
  if (body && !typed) headers.push('content-type', TEXT);
  return { kind: 'answer', status, headers, body };
}

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

export interface PipelineDeps {
  /** The current routing state; read once per request. */
  state: () => GatewayState;
  hooks: HookClient;
  logger: Logger;
}

/**
 * The pipeline of one data plane: its state, hooks and logger, and the
 * speed-limit buckets and log throttle its requests share.
 *
 * Contract: every method is safe to call concurrently; none throws for bad
 * client input (that is an answer). `authorize` and `respond` never throw
 * either (a HookClient never does).
 *
 * @example
 * const p = new Pipeline({ state: () => current, hooks: manager, logger });
 * const f = p.route('GET', { target: '/v1/x', hosts: ['api.example'] }, ['Host', 'api.example'], client);
 * if (f.kind === 'answer') send(f);
 */
export class Pipeline {
  readonly hooks: HookClient;
  readonly log: Logger;
  #state: () => GatewayState;
  #buckets = new Buckets();
  #logThrottle = new LogThrottle();

  constructor(deps: PipelineDeps) {
    this.#state = deps.state;
    this.hooks = deps.hooks;
    this.log = deps.logger;
  }

  /**
   * Checks the Host and the path, and matches the route: the facts, or the
   * answer when the request cannot be routed (400 for a bad Host or path,
   * 404 when no route matches). `headers` is the client's header list.
   */
  route(method: string, raw: RawRequest, headers: HeaderList, client: ClientInfo): Facts | Answer {
    const bad = hostProblem(raw.hosts);
    if (bad) return textAnswer(400, bad);
    const host = raw.hosts[0];
    const target = splitTarget(raw.target);
    if (target.authority !== null && target.authority.toLowerCase() !== host.toLowerCase()) {
      return textAnswer(400, 'bad request: the request target names another host than the Host header\n');
    }
    const path = normalizePath(target.path);
    if (typeof path !== 'string') return textAnswer(400, path.message);
    const state = this.#state();
    const m = state.router.match(method, host, matchPathOf(path));
    const plan = m && state.plan(m.route.id);
    if (!m || !plan) return textAnswer(404, 'no route matches this request\n');
    if (!plan.allowEncodedSlash && hasEncodedSlash(path)) return textAnswer(400, ENCODED_SLASH_REFUSAL);
    const set = plan.route.set;
    let vars = m.vars;
    for (const _ in set) {
      vars = { ...set, ...m.vars };
      break;
    }
    const { id, headers: withId } = requestIdOf(stripList(headers, plan.strip));
    return { kind: 'facts', method, host, hostname: hostOf(host), path, query: target.query, client, m, plan, vars, headers: withId, requestId: id };
  }

  /** Whether the route's plugins declared on_request (then `authorize` makes a call). */
  callsOnRequest(f: Facts): boolean {
    return (this.hooks.hooksOf(f.plan.route.id) & HOOK_BIT.on_request) !== 0;
  }

  /** Whether `authorize` wants the first 64 KiB of the request body (`with_body`); GET and HEAD carry none. */
  wantsBody(f: Facts): boolean {
    return f.method !== 'GET' && f.method !== 'HEAD' && this.callsOnRequest(f) && this.hooks.wantsBody(f.plan.route.id);
  }

  /** The on_request data of a request (`bd`: the body copy, `target`: the picked target). */
  requestInfo(f: Facts, bd: Uint8Array | null, target: string): RequestInfo {
    const cl = Number(listGet(f.headers, 'content-length') ?? 0);
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
      h: headerMapOfList(f.headers),
      bd,
      md: f.m.md,
      mg: f.m.mg,
      mp: f.m.mp,
      v: f.vars,
      tg: target,
    };
  }

  /**
   * on_request, when the route's plugins declared it, and what its verdict
   * means: an answer (deny; a fallback verdict without a fallback), drop,
   * or the action to run. `bd` is the body copy when `wantsBody`.
   */
  async authorize(f: Facts, bd: Uint8Array | null): Promise<Authorized> {
    // A drop route closes at once (its routes bind no plugins: config-actions.ts).
    if (f.plan.action.action.type === 'drop') return { kind: 'drop' };
    if (!this.callsOnRequest(f)) return { kind: 'action', action: f.plan.action, isFallback: false, verdict: null, info: null };
    const info = this.requestInfo(f, bd, '');
    const verdict = await this.hooks.onRequest(f.plan.route.id, info);
    return this.verdict(f, verdict, info);
  }

  /** What an on_request verdict means for the request (see `authorize`). */
  verdict(f: Facts, verdict: AuthorizeResult, info: RequestInfo): Authorized {
    if (verdict.dr) return { kind: 'drop' };
    if (verdict.fb) {
      if (f.plan.fallback) return { kind: 'action', action: f.plan.fallback, isFallback: true, verdict, info };
      return textAnswer(503, DENY_BODY);
    }
    if (!verdict.ok) return verdictAnswer(verdict);
    return { kind: 'action', action: f.plan.action, isFallback: false, verdict, info };
  }

  /**
   * What `action` does for the request: an answer (static, redirect), the
   * proxy plan (a target is picked: release `pick` once), or the fallback
   * when the balancer has no target (503 when there is none).
   */
  step(f: Facts, action: ActionPlan, verdict: AuthorizeResult | null, isFallback: boolean): Step {
    const a = action.action;
    if (a.type === 'static') {
      const headers: HeaderList = [];
      for (const k in a.headers) headers.push(k, a.headers[k]);
      const body = a.status === 204 || a.status === 304 ? null : a.body;
      if (body !== null && !headers.some((n, i) => i % 2 === 0 && n.toLowerCase() === 'content-type')) headers.push('content-type', TEXT);
      return { kind: 'answer', status: a.status, headers, body };
    }
    // A pass route's connections are relayed before any request (L4); a request that reaches it anyway
    // (plain HTTP, or a TLS client whose SNI named another host) is not this listener's to answer.
    if (a.type === 'pass') return textAnswer(421, 'misdirected request: this host is relayed as TLS by its SNI name\n');
    if (a.type === 'redirect') {
      const path = verdict?.rp || f.path;
      const query = verdict?.cq ? '' : f.query;
      let to = action.template!({ ...f.vars, path, query, host: f.hostname });
      if (query && !action.placesQuery) to += (to.includes('?') ? '&' : '?') + query;
      return { kind: 'answer', status: a.status, headers: ['location', to], body: null };
    }
    if (a.type === 'drop') return { kind: 'drop' };
    if (a.type === 'serve') {
      const rp = verdict?.rp ? normalizePath(verdict.rp) : null;
      const path = rp === null ? f.path : typeof rp === 'string' ? rp : null;
      return { kind: 'serve', action: a, path, prefixed: rp === null, download: this.#speed(f, verdict, 'dl') };
    }
    const pick = this.#pickTarget(f, verdict);
    if (pick === undefined) return this.fallbackOr(f, isFallback, textAnswer(503, 'no upstream target available\n'));
    const target = pick?.target ?? '';
    return {
      kind: 'proxy',
      url: this.upstreamUrl(action, f, verdict, target),
      headers: forwardHeaderList(f.headers, verdict, f.client, f.host),
      pick,
      target,
      holdPick: f.plan.route.balancer?.type === 'leastconn',
      timeoutMs: action.timeoutMs,
      limits: action.limits,
      h2: a.proto === 'h2',
      download: this.#speed(f, verdict, 'dl'),
      upload: this.#speed(f, verdict, 'ul'),
    };
  }

  /** The speed limit of one direction: the verdict's `sp`, else the route's pushed one; null for none. */
  #speed(f: Facts, verdict: AuthorizeResult | null, dir: 'dl' | 'ul'): TokenBucket | null {
    const speed = verdict?.sp ?? null;
    const pushed = this.#state().speed(f.plan.route.id);
    const mbps = (dir === 'dl' ? speed?.dl || pushed?.download_mbps : speed?.ul || pushed?.upload_mbps) || 0;
    return mbps > 0 ? this.#buckets.get(mbps, speed?.gk || pushed?.group_key || '', dir) : null;
  }

  /** The route's fallback action when there is one and this is not already it, else `answer`. */
  fallbackOr(f: Facts, isFallback: boolean, answer: Answer): Step {
    if (!isFallback && f.plan.fallback) return { kind: 'fallback', action: f.plan.fallback };
    return answer;
  }

  /**
   * What a failed upstream exchange gets (the request's pick is released
   * here): 503 `upstream busy` (`UPSTREAM_BUSY`), 504 (`UPSTREAM_TIMEOUT`)
   * or 502, or the fallback; null when the client went away first
   * (`clientGone`: nobody is left to answer, and it is not an error).
   * Logged at most once a second per route and target.
   */
  upstreamFailed(f: Facts, step: ProxyStep, err: unknown, isFallback: boolean, clientGone: boolean): Step | null {
    step.pick?.release();
    const route = f.plan.route.id;
    const target = step.target;
    if (isHookgateError(err, 'UPSTREAM_BUSY')) {
      const held = this.#logThrottle.admit(`busy ${route} ${target}`);
      if (held >= 0) this.log.warn({ route, target, err: err.message, suppressed: held }, 'upstream busy');
      return this.fallbackOr(f, isFallback, textAnswer(503, 'upstream busy\n', BUSY_HEADERS));
    }
    const timeout = isHookgateError(err, 'UPSTREAM_TIMEOUT');
    const reachable = timeout || isHookgateError(err, 'UPSTREAM_CONNECT');
    if (!reachable && clientGone) return null;
    const held = this.#logThrottle.admit(`upstream ${route} ${target}`);
    if (held >= 0) this.log.warn({ route, target, err: (err as Error).message, suppressed: held }, timeout ? 'upstream timed out' : 'upstream unreachable');
    return this.fallbackOr(f, isFallback, timeout ? textAnswer(504, 'upstream timed out\n') : textAnswer(502, 'upstream unreachable\n'));
  }

  /**
   * What every upstream answer goes through before the client sees it
   * (proxied responses and refused upgrades alike): hop-by-hop headers
   * removed, then on_response when declared. An answer instead when
   * on_response failed (the data plane discards the upstream's body).
   */
  respond(f: Facts, info: RequestInfo | null, target: string, status: number, upstreamHeaders: HeaderList): Responded | Promise<Responded> {
    const headers = clientHeaderList(upstreamHeaders);
    // Synchronous when no plugin declared on_response: the Node plane writes the head at once.
    if (!(this.hooks.hooksOf(f.plan.route.id) & HOOK_BIT.on_response)) return { kind: 'respond', status, headers };
    return this.#onResponse(f, info, target, status, upstreamHeaders, headers);
  }

  async #onResponse(f: Facts, info: RequestInfo | null, target: string, status: number, upstreamHeaders: HeaderList, headers: HeaderList): Promise<Responded> {
    const reqInfo = info ? { ...info, tg: target } : this.requestInfo(f, null, target);
    const mod = await this.hooks.onResponse(f.plan.route.id, { req: reqInfo, resp: { s: status, h: headerMapOfList(upstreamHeaders) } });
    // A status a response cannot carry is a failure too (the runner refuses 1xx already).
    if (mod.e || (mod.s !== 0 && !(mod.s >= 200 && mod.s <= 599))) {
      return textAnswer(mod.e ? failureStatus(mod.s) : 503, (mod.e && mod.b) || DENY_BODY);
    }
    let out = headers;
    if (mod.rm.length || Object.keys(mod.h).length) {
      const drop = new Set<string>();
      for (const name of mod.rm) drop.add(name.toLowerCase());
      for (const name in mod.h) drop.add(name.toLowerCase());
      out = [];
      for (let i = 0; i < headers.length; i += 2) if (!drop.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1]);
      for (const name in mod.h) out.push(name, mod.h[name]);
    }
    return { kind: 'respond', status: mod.s || status, headers: out };
  }

  /** Whether a response to this request carries no body (HEAD, 204, 304). */
  bodiless(f: Facts, status: number): boolean {
    return status === 204 || status === 304 || f.method === 'HEAD';
  }

  /** Picks a target; null for routes without a balancer, `undefined` when the balancer has none. */
  #pickTarget(f: Facts, verdict: AuthorizeResult | null): Pick | null | undefined {
    const plan = f.plan;
    if (!plan.balancer) return null;
    if (!plan.groupBy) return plan.balancer.pick() ?? undefined;
    const client = plan.groupBy.from === 'header' ? listGet(f.headers, plan.groupBy.name.toLowerCase()) : null;
    const key = groupKeyOf(plan.groupBy, verdict?.h ?? null, client, f.vars);
    return plan.balancer.pick(key, plan.unknownGroup) ?? undefined;
  }

  /** The upstream URL of a proxy action (or of a WebSocket upgrade) for the request. */
  upstreamUrl(action: ActionPlan, f: Facts, verdict: AuthorizeResult | null, target: string): string {
    const path = verdict?.rp || f.path;
    const query = verdict?.cq ? '' : f.query;
    let url = action.template!({ ...f.vars, target, path, query, host: f.hostname });
    if (!action.placesPath) url = (url.endsWith('/') ? url.slice(0, -1) : url) + path + (query ? '?' + query : '');
    else if (query && !action.placesQuery) url += (url.includes('?') ? '&' : '?') + query;
    return url;
  }

  /** A target for a WebSocket session (see `step` for the rules). */
  pickTarget(f: Facts, verdict: AuthorizeResult | null): Pick | null | undefined {
    return this.#pickTarget(f, verdict);
  }
}
