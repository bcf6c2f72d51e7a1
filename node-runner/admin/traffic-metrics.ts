/**
 * @module traffic-metrics
 * The metrics recorded on the request path, defined once for every
 * process that serves traffic (the runner, and each gateway worker, whose
 * registries the runner aggregates on scrape): requests by route, method
 * and status with their durations, bytes in and out, the upstream's time
 * to answer, hook calls by plugin, hook and outcome with theirs, and
 * verdict-cache lookups. Label values are route ids, plugin names and
 * fixed sets (methods, outcomes), never raw paths.
 *
 * Recording costs a map lookup and a few additions (`metric-series.ts`):
 * the series of a route or a plugin are made once and kept.
 */

import { Gauge, type Registry } from 'prom-client';
import type { HookName } from '../../src/core/protocol/protocol.ts';
import { CounterFamily, HistogramFamily, observe, type CounterSeries, type HistogramSeries } from './metric-series.ts';

/** What a data plane reports; every method is cheap and never throws. */
export interface TrafficRecorder {
  /**
   * One request answered (or cut off: code 0); `route` '' when no route
   * matched. `bytesIn`/`bytesOut`: what the client's connection carried
   * for it each way (head and body).
   */
  request(route: string, method: string, code: number, seconds: number, bytesIn: number, bytesOut: number): void;
  /** One upstream exchange: from sending the request to the upstream's response head (or its failure). */
  upstream(route: string, seconds: number): void;
  /** one call to a plugin; outcome allow / deny / drop / fallback / ok / error / timeout / on_error_allowed */
  hook(plugin: string, hook: HookName, outcome: HookOutcome, seconds: number): void;
  /** one verdict-cache lookup of a caching binding */
  cache(plugin: string, result: 'hit' | 'miss' | 'stale'): void;
}

export type HookOutcome = 'allow' | 'deny' | 'drop' | 'fallback' | 'ok' | 'error' | 'timeout' | 'on_error_allowed';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE'];
const OTHER = METHODS.length;
const HOOKS: HookName[] = ['on_request', 'on_response', 'on_connect', 'on_disconnect'];
const OUTCOMES: HookOutcome[] = ['allow', 'deny', 'drop', 'fallback', 'ok', 'error', 'timeout', 'on_error_allowed'];

/** Request durations: sub-millisecond up to 30 s. */
export const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Hook call durations: from 100 µs. */
export const HOOK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

function methodIndex(m: string): number {
  switch (m) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    default: {
      const i = METHODS.indexOf(m);
      return i < 0 ? OTHER : i;
    }
  }
}

/** One route's series, made on its first request. */
interface RouteSeries {
  duration: HistogramSeries;
  upstream: HistogramSeries | null;
  bytesIn: CounterSeries;
  bytesOut: CounterSeries;
  /** by method index * 1000 + status code */
  codes: Map<number, CounterSeries>;
}

/** One plugin's series: per hook, its duration and its calls by outcome. */
interface PluginSeries {
  duration: Array<HistogramSeries | undefined>;
  calls: Array<Array<CounterSeries | undefined> | undefined>;
  cache: Map<string, CounterSeries>;
}

/** Defines the traffic metrics on `registry`; returns the recorder that feeds them. */
export function trafficMetrics(registry: Registry): TrafficRecorder {
  const requests = new CounterFamily(registry, 'hookgate_http_requests_total', 'Requests answered by the gateway, by route id (none: no route matched), method and status (0: cut off before a status was sent)', ['route', 'method', 'code']);
  const duration = new HistogramFamily(registry, 'hookgate_http_request_duration_seconds', 'From the request head to the end of the answer, by route id', ['route'], REQUEST_BUCKETS);
  const upstream = new HistogramFamily(registry, 'hookgate_upstream_duration_seconds', 'From sending a request to the upstream to its response head (or its failure), by route id', ['route'], REQUEST_BUCKETS);
  const bandwidth = new CounterFamily(registry, 'hookgate_bandwidth_bytes_total', 'Bytes on client connections by route id and direction (in: from the client, out: to it), heads and bodies', ['route', 'direction']);
  const calls = new CounterFamily(registry, 'hookgate_hook_calls_total', 'Calls to plugins, by plugin, hook and outcome', ['plugin', 'hook', 'outcome']);
  const hookDuration = new HistogramFamily(registry, 'hookgate_hook_duration_seconds', 'Time of one call to a plugin (sending the frame to its reply)', ['plugin', 'hook'], HOOK_BUCKETS);
  const lookups = new CounterFamily(registry, 'hookgate_hook_cache_lookups_total', 'Verdict-cache lookups of caching bindings, by plugin and result', ['plugin', 'result']);

  const routes = new Map<string, RouteSeries>();
  const routeOf = (id: string): RouteSeries => {
    let r = routes.get(id);
    if (!r) {
      const route = id || 'none';
      routes.set(id, (r = { duration: duration.series(route), upstream: null, bytesIn: bandwidth.series(route, 'in'), bytesOut: bandwidth.series(route, 'out'), codes: new Map() }));
    }
    return r;
  };
  const plugins = new Map<string, PluginSeries>();
  const pluginOf = (name: string): PluginSeries => {
    let p = plugins.get(name);
    if (!p) plugins.set(name, (p = { duration: [], calls: [], cache: new Map() }));
    return p;
  };

  return {
    request(route, method, code, seconds, bytesIn, bytesOut) {
      const r = routeOf(route);
      const m = methodIndex(method);
      const key = m * 1000 + code;
      let c = r.codes.get(key);
      if (!c) r.codes.set(key, (c = requests.series(route || 'none', m === OTHER ? 'other' : METHODS[m], String(code))));
      c.value++;
      observe(r.duration, seconds);
      r.bytesIn.value += bytesIn;
      r.bytesOut.value += bytesOut;
    },
    upstream(route, seconds) {
      const r = routeOf(route);
      observe((r.upstream ??= upstream.series(route || 'none')), seconds);
    },
    hook(plugin, hook, outcome, seconds) {
      const p = pluginOf(plugin);
      const h = HOOKS.indexOf(hook);
      const o = OUTCOMES.indexOf(outcome);
      const byOutcome = (p.calls[h] ??= []);
      (byOutcome[o] ??= calls.series(plugin, hook, outcome)).value++;
      observe((p.duration[h] ??= hookDuration.series(plugin, hook)), seconds);
    },
    cache(plugin, result) {
      const p = pluginOf(plugin);
      let c = p.cache.get(result);
      if (!c) p.cache.set(result, (c = lookups.series(plugin, result)));
      c.value++;
    },
  };
}

/** `hookgate_hook_cache_entries{plugin}`: verdicts this process's caches hold, computed on scrape. */
export function cacheEntriesGauge(registry: Registry, entries: () => Array<{ plugin: string; entries: number }>): void {
  new Gauge({
    name: 'hookgate_hook_cache_entries',
    help: 'Verdicts held by the verdict caches of caching bindings, by plugin',
    labelNames: ['plugin'],
    registers: [registry],
    collect() {
      this.reset();
      const sum = new Map<string, number>();
      for (const e of entries()) sum.set(e.plugin, (sum.get(e.plugin) ?? 0) + e.entries);
      for (const [plugin, n] of sum) this.set({ plugin }, n);
    },
  });
}

/** What one process's hook pools hold now: connections by plugin, busy or idle. */
export interface PoolCounts {
  plugin: string;
  busy: number;
  idle: number;
}

/** `hookgate_hook_pool_connections{plugin,state}`: this process's pool connections (busy, idle), computed on scrape. */
export function poolConnectionsGauge(registry: Registry, pools: () => PoolCounts[]): void {
  new Gauge({
    name: 'hookgate_hook_pool_connections',
    help: 'Connections of the pools to plugin sockets, by plugin and state (busy: a call in flight or being opened; idle)',
    labelNames: ['plugin', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of pools()) {
        this.inc({ plugin: p.plugin, state: 'busy' }, p.busy);
        this.inc({ plugin: p.plugin, state: 'idle' }, p.idle);
      }
    },
  });
}

/** `hookgate_open_connections{listener}`: connections open now on this process's listeners, computed on scrape. */
export function openConnectionsGauge(registry: Registry, open: () => Array<{ listener: string; count: number }>): void {
  new Gauge({
    name: 'hookgate_open_connections',
    help: 'Client connections open now, by listener (gateway, admin, runner)',
    labelNames: ['listener'],
    registers: [registry],
    collect() {
      this.reset();
      for (const o of open()) this.inc({ listener: o.listener }, o.count);
    },
  });
}

/** A recorder that records nothing (tests, tools, and `metrics.requests: false`). */
export const NO_TRAFFIC: TrafficRecorder = { request() {}, upstream() {}, hook() {}, cache() {} };
