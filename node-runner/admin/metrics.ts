/**
 * @module metrics
 * The runner's Prometheus metrics (`GET /metrics` on the admin listener),
 * with prom-client: its default process metrics (CPU, memory, event-loop
 * lag, …) and hookgate's own, named `hookgate_*`, seconds for durations,
 * `_total` for counters, route ids and plugin names as labels (never raw
 * paths). Gauges that mirror state (plugins up, restarts, targets, the
 * config version) are computed when scraped, so nothing is recorded on the
 * request path for them.
 */

import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { HookApiRecorder } from '../hook-api/hook-api.ts';
import type { PluginStatus } from '../plugin/manager.ts';
import { cacheEntriesGauge, NO_TRAFFIC, openConnectionsGauge, poolConnectionsGauge, trafficMetrics, type PoolCounts, type TrafficRecorder } from './traffic-metrics.ts';

export interface MetricsSources {
  plugins(): PluginStatus[];
  /** verdicts held by this process's binding caches */
  cacheEntries(): Array<{ plugin: string; entries: number }>;
  /** per route with a balancer: how many targets it has now */
  targets(): Array<{ route: string; count: number }>;
  /** the config in force: its state version and where it came from (file, stream, etcd) */
  config(): { version: string; source: string } | null;
  /** the package version */
  version: string;
  /** this process's hook pools (busy and idle connections per plugin) */
  pools(): PoolCounts[];
  /** client connections open now on this process's listeners */
  connections(): Array<{ listener: string; count: number }>;
  /** false: the request path records nothing (`metrics.requests: false`); default true */
  requests?: boolean;
}

export class RunnerMetrics {
  readonly registry = new Registry();
  /** configs offered after the first (file reloads, stream and etcd commits), by result (applied, refused) */
  readonly reloads: Counter<'result'>;
  /** what this process's data plane and hook calls record (`NO_TRAFFIC` with `requests: false`) */
  readonly traffic: TrafficRecorder;
  /** what the hook API for edge workers records */
  readonly hookApi: HookApiRecorder;
  /** whether the config source is connected now, set by whoever follows it (null: a file, always 1) */
  sourceConnected: (() => boolean) | null = null;
  /** other processes' metrics to add in (gateway workers), set by the runner */
  workers: (() => Promise<unknown[][]>) | null = null;

  constructor(src: MetricsSources) {
    const registry = this.registry;
    collectDefaultMetrics({ register: registry });
    new Gauge({
      name: 'hookgate_build_info',
      help: 'Always 1; the labels say which hookgate and Node run',
      labelNames: ['version', 'node'],
      registers: [registry],
      collect() {
        this.set({ version: src.version, node: process.version }, 1);
      },
    });
    new Gauge({
      name: 'hookgate_plugin_up',
      help: '1 while the plugin is ready to serve hooks (or, without hooks, running), else 0',
      labelNames: ['plugin'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of src.plugins()) this.set({ plugin: p.name }, p.ready ? 1 : 0);
      },
    });
    new Counter({
      name: 'hookgate_plugin_restarts_total',
      help: 'Plugin processes started after the first one (crashes, config or code changes, admin restarts)',
      labelNames: ['plugin'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of src.plugins()) this.inc({ plugin: p.name }, p.restarts);
      },
    });
    new Gauge({
      name: 'hookgate_balancer_targets',
      help: 'Targets a route’s balancer has now (pushed, else from the config)',
      labelNames: ['route'],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of src.targets()) this.set({ route: t.route }, t.count);
      },
    });
    new Gauge({
      name: 'hookgate_config_info',
      help: 'Always 1 for the config in force; version is its state version',
      labelNames: ['version', 'source'],
      registers: [registry],
      collect() {
        this.reset();
        const c = src.config();
        if (c) this.set({ version: c.version, source: c.source }, 1);
      },
    });
    // The request families exist either way (a scrape shows them, unchanging, when off).
    const traffic = trafficMetrics(registry);
    this.traffic = src.requests === false ? NO_TRAFFIC : traffic;
    cacheEntriesGauge(registry, src.cacheEntries);
    poolConnectionsGauge(registry, src.pools);
    openConnectionsGauge(registry, src.connections);
    const self = this;
    new Gauge({
      name: 'hookgate_config_source_connected',
      help: '1 while the runner is connected to its config source (a config file: always 1), else 0',
      registers: [registry],
      collect() {
        this.set(self.sourceConnected === null || self.sourceConnected() ? 1 : 0);
      },
    });
    const apiCalls = new Counter({
      name: 'hookgate_hook_api_requests_total',
      help: 'Calls edge workers made to the runner’s hook API, by transport (http: a POST /v1/hooks batch; ws: one call on a link, or a refused link) and outcome',
      labelNames: ['transport', 'outcome'],
      registers: [registry],
    });
    const rejections = new Counter({
      name: 'hookgate_hook_api_key_rejections_total',
      help: 'Hook API requests and links refused for their key, by reason (missing, unknown, expired)',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.hookApi = {
      call: (transport, outcome) => apiCalls.inc({ transport, outcome }),
      rejected: (reason) => rejections.inc({ reason }),
    };
    this.reloads = new Counter({ name: 'hookgate_config_reloads_total', help: 'Configs offered to the runner after the first, by result', labelNames: ['result'], registers: [registry] });
  }

  /** The text exposition and its content type. */
  async render(): Promise<{ body: string; contentType: string }> {
    if (!this.workers) return { body: await this.registry.metrics(), contentType: this.registry.contentType };
    // With gateway workers, one view: their registries and ours, summed by prom-client's aggregator.
    const [own, others] = await Promise.all([this.registry.getMetricsAsJSON(), this.workers()]);
    const merged = AggregatorRegistry.aggregate([own, ...others]);
    return { body: await merged.metrics(), contentType: this.registry.contentType };
  }
}
