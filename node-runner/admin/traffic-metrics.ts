/**
 * @module traffic-metrics
 * The metrics recorded on the request path, defined once for every
 * process that serves traffic (the runner, and each gateway worker, whose
 * registries the runner aggregates on scrape): requests by route, method
 * and status with their durations, and hook calls by plugin, hook and
 * outcome with theirs, and verdict-cache lookups. Recording is a counter
 * increment and a histogram observation: label values are route ids,
 * plugin names and a fixed set of methods, never raw paths.
 */

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { HookName } from '../../src/core/protocol/protocol.ts';

/** What a data plane reports; both methods are cheap and never throw. */
export interface TrafficRecorder {
  /** one request answered (or cut off: code 0); `route` '' when no route matched */
  request(route: string, method: string, code: number, seconds: number): void;
  /** one call to a plugin; outcome allow / deny / drop / fallback / ok / error / timeout / on_error_allowed */
  hook(plugin: string, hook: HookName, outcome: HookOutcome, seconds: number): void;
  /** one verdict-cache lookup of a caching binding */
  cache(plugin: string, result: 'hit' | 'miss' | 'stale'): void;
}

export type HookOutcome = 'allow' | 'deny' | 'drop' | 'fallback' | 'ok' | 'error' | 'timeout' | 'on_error_allowed';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE']);

/** Defines the traffic metrics on `registry`; returns the recorder that feeds them. */
export function trafficMetrics(registry: Registry): TrafficRecorder {
  const requests = new Counter({ name: 'hookgate_http_requests_total', help: 'Requests answered by the gateway, by route id (none: no route matched), method and status (0: cut off before a status was sent)', labelNames: ['route', 'method', 'code'], registers: [registry] });
  const duration = new Histogram({
    name: 'hookgate_http_request_duration_seconds',
    help: 'From the request head to the end of the answer, by route id',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const calls = new Counter({ name: 'hookgate_hook_calls_total', help: 'Calls to plugins, by plugin, hook and outcome', labelNames: ['plugin', 'hook', 'outcome'], registers: [registry] });
  const hookDuration = new Histogram({
    name: 'hookgate_hook_duration_seconds',
    help: 'Time of one call to a plugin (sending the frame to its reply)',
    labelNames: ['plugin', 'hook'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [registry],
  });
  const lookups = new Counter({ name: 'hookgate_hook_cache_lookups_total', help: 'Verdict-cache lookups of caching bindings, by plugin and result', labelNames: ['plugin', 'result'], registers: [registry] });
  return {
    request(route, method, code, seconds) {
      const r = route || 'none';
      requests.inc({ route: r, method: METHODS.has(method) ? method : 'other', code: String(code) });
      duration.observe({ route: r }, seconds);
    },
    hook(plugin, hook, outcome, seconds) {
      calls.inc({ plugin, hook, outcome });
      hookDuration.observe({ plugin, hook }, seconds);
    },
    cache(plugin, result) {
      lookups.inc({ plugin, result });
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

/** A recorder that records nothing (tests, tools). */
export const NO_TRAFFIC: TrafficRecorder = { request() {}, hook() {}, cache() {} };
