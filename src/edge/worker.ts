/**
 * @module worker
 * The edge data plane: the core gateway on Cloudflare Workers. A Worker
 * cannot run plugins, so hooks are called on runners (RUNNER_URL) over
 * HTTP or, with HOOK_TRANSPORT=ws, through the RunnerLink Durable Object's
 * WebSocket. The routing state comes from the runners' `/v1/state`, cached
 * per isolate and in the Cache API. Routes whose bindings all cache their
 * verdicts (the runner says so in the state) get a per-isolate verdict
 * cache in front of the runner calls (`core/verdict-cache.ts`), so a hit
 * costs no network hop.
 *
 * Settings (wrangler vars and secrets):
 * - RUNNER_URL: one or more runner base URLs, comma-separated
 * - RUNNER_KEY: the runner API key (a secret)
 * - HOOK_TRANSPORT: `http` (default) or `ws`
 * - STATE_TTL_MS: how old the state may get before a background check (default 2000)
 * - HOOK_TIMEOUT_MS: deadline of one hook call through a runner (default 10000)
 * - RUNNER_DOWN_MS: how long a failing runner is skipped (default 10000)
 * - LOG_LEVEL: debug | info | warn | error (default info)
 * - ACCESS_LOG: "1" logs one `access` line per request (info level; the
 *   fields of `core/gateway/access-log.ts`); ACCESS_LOG_QUERY: "1" adds the query
 */

import { accessFields, type AccessFacts } from '../core/gateway/access-log.ts';
import { HookgateError } from '../core/errors.ts';
import { createGateway, upstreamDeadline, type ClientInfo, type Gateway, type UpstreamFetch } from '../core/gateway/gateway.ts';
import { isWebSocketUpgrade } from '../core/protocol/headers.ts';
import { DENY_BODY } from '../core/protocol/verdict.ts';
import type { Logger, LogLevel } from '../core/log.ts';
import { EdgeHooks } from './hooks.ts';
import { consoleLogger } from './log.ts';
import { RunnerPool, type LinkNamespace } from './runners.ts';
import { EdgeStateCache, type StateStore } from './state-cache.ts';
import { proxyWebSocket } from './websocket.ts';
import { CachedHooks } from '../core/gateway/verdict-cache.ts';

export { RunnerLink } from './link.ts';

export interface Env {
  RUNNER_URL?: string;
  RUNNER_KEY?: string;
  HOOK_TRANSPORT?: string;
  STATE_TTL_MS?: string;
  HOOK_TIMEOUT_MS?: string;
  RUNNER_DOWN_MS?: string;
  LOG_LEVEL?: string;
  ACCESS_LOG?: string;
  ACCESS_LOG_QUERY?: string;
  RUNNER_LINK?: LinkNamespace;
}

interface Edge {
  key: string;
  log: Logger;
  cache: EdgeStateCache;
  hooks: EdgeHooks;
  verdicts: CachedHooks;
  /** the state version whose routes `verdicts` was last pruned to */
  pruned: string;
  gateway: Gateway<never>;
}

let edge: Edge | null = null;

function num(v: string | undefined, dflt: number, name: string): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HookgateError('BAD_CONFIG', `${name}: expected a number of milliseconds, got "${v}"`);
  return n;
}

function clientOf(req: Request): ClientInfo {
  const ip = req.headers.get('cf-connecting-ip') ?? '';
  const cf = (req as Request & { cf?: { httpProtocol?: string } }).cf;
  return {
    ip,
    remoteAddr: ip ? (ip.includes(':') ? `[${ip}]:0` : `${ip}:0`) : '',
    protocol: cf?.httpProtocol ?? 'HTTP/1.1',
    tls: req.url.startsWith('https:'),
  };
}

/** Upstream fetch: no redirects followed; the timeout covers the wait for response headers only. */
const upstream: UpstreamFetch = async (r) => {
  const deadline = upstreamDeadline(r);
  try {
    const res = await fetch(r.url, { method: r.method, headers: r.headers, body: r.body, redirect: 'manual', signal: deadline.signal });
    deadline.headersArrived();
    return res;
  } catch (err) {
    deadline.release();
    if (deadline.timedOut) throw new HookgateError('UPSTREAM_TIMEOUT', `no response within ${r.timeoutMs} ms`, { cause: err });
    if (r.signal?.aborted) throw err;
    throw new HookgateError('UPSTREAM_CONNECT', `cannot reach the upstream (${(err as Error).message})`, { cause: err });
  }
};

function edgeOf(env: Env): Edge {
  const key = JSON.stringify([env.RUNNER_URL, env.RUNNER_KEY, env.HOOK_TRANSPORT, env.STATE_TTL_MS, env.HOOK_TIMEOUT_MS, env.RUNNER_DOWN_MS, env.LOG_LEVEL, env.ACCESS_LOG, env.ACCESS_LOG_QUERY]);
  if (edge?.key === key) return edge;
  const level = (['debug', 'info', 'warn', 'error'].includes(env.LOG_LEVEL ?? '') ? env.LOG_LEVEL : 'info') as LogLevel;
  const log = consoleLogger(level, { component: 'hookgate-edge' });
  const urls = (env.RUNNER_URL ?? '')
    .split(',')
    .map((u) => u.trim().replace(/\/+$/, ''))
    .filter(Boolean);
  if (!urls.length) throw new HookgateError('BAD_CONFIG', 'RUNNER_URL is not set: set it to one or more runner base URLs, comma-separated');
  if (!env.RUNNER_KEY) throw new HookgateError('BAD_CONFIG', 'RUNNER_KEY is not set: `wrangler secret put RUNNER_KEY`');
  const transport = env.HOOK_TRANSPORT ?? 'http';
  if (transport !== 'http' && transport !== 'ws') throw new HookgateError('BAD_CONFIG', `HOOK_TRANSPORT: expected "http" or "ws", got "${transport}"`);
  if (transport === 'ws' && !env.RUNNER_LINK) throw new HookgateError('BAD_CONFIG', 'HOOK_TRANSPORT=ws needs the RUNNER_LINK Durable Object binding (see wrangler.toml)');
  const runners = new RunnerPool(
    {
      urls,
      key: env.RUNNER_KEY,
      transport,
      downMs: num(env.RUNNER_DOWN_MS, 10_000, 'RUNNER_DOWN_MS'),
      hookTimeoutMs: num(env.HOOK_TIMEOUT_MS, 10_000, 'HOOK_TIMEOUT_MS'),
    },
    env.RUNNER_LINK ?? null,
  );
  const store: StateStore | null =
    typeof caches !== 'undefined'
      ? {
          match: (k) => (caches as unknown as { default: Cache }).default.match(k),
          put: (k, res) => (caches as unknown as { default: Cache }).default.put(k, res),
        }
      : null;
  const cache = new EdgeStateCache(runners, num(env.STATE_TTL_MS, 2000, 'STATE_TTL_MS'), log, store);
  const hooks = new EdgeHooks(cache, runners, log);
  const verdicts = new CachedHooks(
    hooks,
    (routeId) => {
      const current = cache.current;
      const settings = current?.cache.get(routeId);
      return settings ? { settings, generation: settings.generation, withBody: current!.body.has(routeId) } : null;
    },
    Date.now,
  );
  const gateway = createGateway<never>({
    state: () => cache.current!.state,
    hooks: verdicts,
    upstream,
    logger: log,
    client: (c) => clientOf(c.req.raw),
    // A Worker cannot close a connection without answering: a dropped
    // request gets an empty 403 and Connection: close.
    drop: () => new Response(null, { status: 403, headers: { connection: 'close' } }),
    access: env.ACCESS_LOG === '1' ? accessLine(log, env.ACCESS_LOG_QUERY === '1') : undefined,
  });
  return (edge = { key, log, cache, hooks, verdicts, pruned: '', gateway });
}

/** Writes access lines (Workers Logs) through the worker's logger. */
function accessLine(log: Logger, withQuery: boolean): (a: AccessFacts) => void {
  return (a) => log.info(accessFields(a, withQuery) as unknown as Record<string, unknown>, 'access');
}

function unavailable(): Response {
  return new Response(DENY_BODY, { status: 503, headers: { 'content-type': 'text/plain; charset=utf-8' } });
}

export default {
  async fetch(req: Request, env: Env, ctx: { waitUntil(p: Promise<unknown>): void }): Promise<Response> {
    let e: Edge;
    try {
      e = edgeOf(env);
    } catch (err) {
      console.error(JSON.stringify({ level: 'error', component: 'hookgate-edge', msg: (err as Error).message }));
      return unavailable();
    }
    const state = await e.cache.get();
    if (!state) {
      e.log.error('no routing state: no runner answered and none is cached');
      return unavailable();
    }
    if (e.pruned !== state.version) {
      e.pruned = state.version;
      e.verdicts.retain(new Set(state.cache.keys()));
    }
    let res: Response;
    // Only WebSocket upgrades on GET are tunnelled; any other Upgrade is a
    // plain request, whose Upgrade and Connection headers are hop-by-hop.
    if (isWebSocketUpgrade(req.method, req.headers.get('upgrade'))) {
      const ws = await proxyWebSocket(e.gateway, e.hooks, req, clientOf(req), e.log);
      if (ws.done) ctx.waitUntil(ws.done.then(() => Promise.all(e.hooks.pending)));
      res = ws.response;
    } else {
      res = await e.gateway.app.fetch(req, {}, ctx as never);
    }
    if (e.cache.pending) ctx.waitUntil(e.cache.pending);
    for (const p of e.hooks.pending) ctx.waitUntil(p);
    return res;
  },
};
