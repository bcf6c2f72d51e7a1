/**
 * @module gateway-worker
 * One gateway worker process (`gateway.workers` > 1): the self-hosted
 * gateway (`gateway-server.ts`) on the port it shares with the other
 * workers (SO_REUSEPORT), with its own upstream connections and its own
 * pools to the plugins' sockets. It owns nothing else: the runner that
 * forked it (`workers.ts`) sends it the config, the hook table (which
 * plugin serves which hooks on which socket, and each route's bindings) and
 * the pushed targets and speed limits, over IPC, whenever they change.
 *
 * Messages in: `start` (once), `state` (a config, with the hook table and
 * the pushes), `hooks`, `pushes`, `drain`.
 * Messages out: `ready` (listening, with a config and a hook table).
 * The worker exits 0 after a drain, and at once when the runner goes away
 * (the IPC channel closes), so no worker outlives its runner.
 */

import type { TargetSet } from '../../src/core/routing/balancer.ts';
import type { Config, GatewaySettings } from '../../src/core/config/config.ts';
import { HookgateError } from '../../src/core/errors.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import { GatewayState, type SpeedSet } from '../../src/core/state/state.ts';
import { VerdictCache } from '../../src/core/gateway/verdict-cache.ts';
import { GatewayServer } from './gateway-server.ts';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createLogger } from '../log.ts';
import { cacheEntriesGauge, openConnectionsGauge, poolConnectionsGauge, trafficMetrics, type TrafficRecorder } from '../admin/traffic-metrics.ts';
import { HookDispatcher, type HookRoute } from '../plugin/dispatch.ts';
import type { HookTable } from '../plugin/manager.ts';
import { SocketPool } from '../plugin/pool.ts';
import { createUpstream } from './upstream.ts';
import { poolShare, type WorkerListener } from './workers.ts';
import { ListenerCertificates } from './certificates.ts';
import { loadListeners } from './listeners.ts';

/** What the runner sends a worker. */
export type ToWorker =
  | { t: 'start'; index: number; workers: number; listeners: WorkerListener[]; ticketKeys: Uint8Array; limits: Omit<GatewaySettings, 'listen'>; requestMetrics: boolean }
  /** a new config: applied with its hook table and the pushes at once, so no request sees one without the other */
  | { t: 'state'; config: Config; table: HookTable; targets: Record<string, TargetSet>; speed: Record<string, SpeedSet> }
  | { t: 'hooks'; table: HookTable }
  | { t: 'pushes'; targets: Record<string, TargetSet>; speed: Record<string, SpeedSet> }
  | { t: 'drain'; ms: number }
  /** the runner scrapes: answer with `metrics` and the same id */
  | { t: 'metrics'; id: number }
  /** empty the verdict caches (of one plugin's bindings, when named) */
  | { t: 'purge'; plugin?: string }
  /** read the certificate files again (SIGHUP) */
  | { t: 'certs' }
  /** add a folder of certificate pairs to the TLS listeners (the one at `listen`) */
  | { t: 'cert-dir'; dir: string; listen?: string };

/** What a worker sends the runner. */
export type FromWorker = { t: 'ready'; pid: number } | { t: 'failed'; error: string } | { t: 'metrics'; id: number; metrics: unknown[] };

interface WorkerPlugin {
  name: string;
  hooks: number;
  pool: SocketPool | null;
  /** the socket and size the pool was made for */
  socket: string | null;
  size: number;
}

/** One worker's state and listener; driven by `handle(message)`. */
class Worker {
  #log: Logger;
  #send: (m: FromWorker) => void;
  #workers = 1;
  #state: GatewayState | null = null;
  #targets: Record<string, TargetSet> = {};
  #speed: Record<string, SpeedSet> = {};
  #plugins = new Map<string, WorkerPlugin>();
  #routes = new Map<string, HookRoute<WorkerPlugin>>();
  #caches = new Map<string, { generation: string; cache: VerdictCache<unknown> }>();
  #hooksKnown = false;
  #listening = false;
  #readySent = false;
  #upstream = createUpstream();
  #server: GatewayServer | null = null;
  #certs = new ListenerCertificates([]);
  #logThrottle = new LogThrottle();
  #dispatch: HookDispatcher<WorkerPlugin>;
  /** this worker's metrics (its traffic and its process), aggregated by the runner on scrape */
  #registry = new Registry();
  #traffic = trafficMetrics(this.#registry);
  /** the recorder in use: `#traffic`, or none when the runner says `metrics.requests: false` */
  #recording: { on: boolean } = { on: true };

  constructor(log: Logger, send: (m: FromWorker) => void) {
    this.#log = log;
    this.#send = send;
    collectDefaultMetrics({ register: this.#registry });
    const routes = () => this.#routes;
    cacheEntriesGauge(this.#registry, () => {
      const out: Array<{ plugin: string; entries: number }> = [];
      for (const r of routes().values()) for (const b of r.bindings) if (b.cache) out.push({ plugin: b.plugin.name, entries: b.cache.size });
      return out;
    });
    poolConnectionsGauge(this.#registry, () => [...this.#plugins.values()].flatMap((p) => (p.pool ? [{ plugin: p.name, busy: p.pool.busy, idle: p.pool.idle }] : [])));
    openConnectionsGauge(this.#registry, () => (this.#server ? [{ listener: 'gateway', count: this.#server.connections }] : []));
    const recording = this.#recording;
    const traffic = this.#traffic;
    // Until `start` says otherwise, hook calls are recorded (none are made before it).
    const hookTraffic: TrafficRecorder = {
      request: () => {},
      upstream: () => {},
      hook: (p, h, o, s) => recording.on && traffic.hook(p, h, o, s),
      cache: (p, r) => recording.on && traffic.cache(p, r),
    };
    this.#dispatch = new HookDispatcher<WorkerPlugin>({
      traffic: hookTraffic,
      route: (id) => this.#routes.get(id),
      unavailable: (p) => new HookgateError('PLUGIN_UNAVAILABLE', `plugin "${p.name}" is not ready`),
      failed: (p, routeId, hook, err) => {
        const e = err as HookgateError;
        const held = this.#logThrottle.admit(`${p.name} ${routeId} ${hook} ${e.code}`);
        if (held >= 0) this.#log.warn({ plugin: p.name, route: routeId, hook, code: e.code, err: e.message, suppressed: held }, 'hook call failed; applying on_error');
      },
      logger: log,
    });
  }

  async handle(m: ToWorker): Promise<void> {
    switch (m.t) {
      case 'start':
        return this.#start(m);
      case 'state':
        this.#applyHooks(m.table);
        this.#hooksKnown = true;
        this.#targets = m.targets;
        this.#speed = m.speed;
        this.#state = new GatewayState(m.config, { targets: (r) => this.#targets[r], speed: (r) => this.#speed[r] });
        return this.#maybeReady();
      case 'hooks':
        this.#applyHooks(m.table);
        this.#hooksKnown = true;
        return this.#maybeReady();
      case 'pushes': {
        this.#targets = m.targets;
        this.#speed = m.speed;
        const state = this.#state;
        if (!state) return;
        for (const r of state.config.routes) {
          const t = m.targets[r.id];
          if (t) state.setTargets(r.id, t);
          state.setSpeed(r.id, m.speed[r.id]);
        }
        return;
      }
      case 'drain':
        return this.drain(m.ms);
      case 'metrics':
        return void this.#send({ t: 'metrics', id: m.id, metrics: await this.#registry.getMetricsAsJSON() });
      case 'certs':
        return this.#certs.reload();
      case 'cert-dir':
        return void this.#certs.addDir(m.dir, m.listen);
      case 'purge':
        for (const r of this.#routes.values()) for (const b of r.bindings) if (b.cache && (m.plugin === undefined || b.plugin.name === m.plugin)) b.cache.clear();
        return;
    }
  }

  async #start(m: Extract<ToWorker, { t: 'start' }>): Promise<void> {
    this.#workers = m.workers;
    this.#recording.on = m.requestMetrics;
    this.#server = new GatewayServer({ state: () => this.#state, hooks: this.#dispatch, upstream: this.#upstream, logger: this.#log, limits: m.limits, traffic: m.requestMetrics ? this.#traffic : undefined, accessLog: () => this.#state?.config.log ?? { access: false } });
    try {
      const loaded = loadListeners(m.listeners.map((l) => l.settings), m.listeners[0]?.name === 'gateway', this.#log);
      this.#certs = new ListenerCertificates(loaded);
      this.#certs.watch();
      const specs = loaded.map((l, i) => ({ name: l.name, listen: l.settings.listen, host: l.host, port: m.listeners[i].port, tls: l.store ?? undefined, redirectHttps: l.settings.redirect_https }));
      await this.#server.listen(specs, true, Buffer.from(m.ticketKeys));
    } catch (err) {
      this.#send({ t: 'failed', error: (err as Error).message });
      process.exit(1);
    }
    this.#listening = true;
    this.#maybeReady();
  }

  #maybeReady(): void {
    if (this.#readySent || !this.#listening || !this.#state || !this.#hooksKnown) return;
    this.#readySent = true;
    this.#send({ t: 'ready', pid: process.pid });
  }

  /** Pools follow the table: kept while socket and size stay, replaced or closed otherwise. */
  #applyHooks(table: HookTable): void {
    for (const [name, p] of this.#plugins) {
      if (!table.plugins[name]) {
        p.pool?.close();
        this.#plugins.delete(name);
      }
    }
    for (const [name, t] of Object.entries(table.plugins)) {
      const size = poolShare(t.size, this.#workers, t.perWorker);
      let p = this.#plugins.get(name);
      if (!p) this.#plugins.set(name, (p = { name, hooks: t.hooks, pool: null, socket: null, size }));
      p.hooks = t.hooks;
      const socket = t.hooks === 0 ? null : t.socket;
      if (p.socket !== socket || p.size !== size) {
        p.pool?.close();
        p.pool = socket ? new SocketPool(socket, { size, queueLimit: t.queueLimit }) : null;
        p.socket = socket;
        p.size = size;
      }
    }
    const routes = new Map<string, HookRoute<WorkerPlugin>>();
    const caches = new Map<string, { generation: string; cache: VerdictCache<unknown> }>();
    for (const [id, r] of Object.entries(table.routes)) {
      const bindings = r.bindings.flatMap((b, i) => {
        const plugin = this.#plugins.get(b.plugin);
        if (!plugin) return [];
        // Each worker keeps its own verdicts, emptied when the runner's cache of the binding would be.
        let cache: VerdictCache<unknown> | null = null;
        if (b.cache && b.generation) {
          const key = `${id}\n${i}`;
          const held = this.#caches.get(key);
          cache = held?.generation === b.generation ? held.cache : new VerdictCache(b.cache, () => performance.now());
          caches.set(key, { generation: b.generation, cache });
        }
        return [{ plugin, on_error: b.on_error, with_body: b.with_body, cache }];
      });
      let mask = 0;
      for (const b of bindings) mask |= b.plugin.hooks;
      routes.set(id, { route: { id, plugin_timeout: r.timeout }, bindings, mask });
    }
    this.#caches = caches;
    this.#routes = routes;
  }

  /** Stops accepting, drains for at most `ms`, closes every pool and upstream connection. Idempotent. */
  #draining: Promise<void> | null = null;
  drain(ms: number): Promise<void> {
    return (this.#draining ??= (async () => {
      await this.#server?.stop(ms);
      this.#certs.close();
      for (const p of this.#plugins.values()) {
        p.pool?.close();
        await p.pool?.flushed();
      }
      await this.#upstream.close();
    })());
  }
}

/** The process's entry: only when forked by a runner, with an IPC channel. */
function main(): void {
  if (!process.send) {
    process.stderr.write('hookgate gateway-worker: this program is started by `hookgate serve` (gateway.workers), not by hand\n');
    process.exit(2);
  }
  const log = createLogger({ name: 'hookgate' }).child({ worker: process.pid });
  const send = (m: FromWorker) => {
    if (process.connected) process.send!(m);
  };
  const worker = new Worker(log, send);
  process.on('message', (m: ToWorker) => {
    worker.handle(m).then(
      () => {
        if (m.t === 'drain') process.exit(0);
      },
      (err) => {
        log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'gateway worker failed');
        process.exit(1);
      },
    );
  });
  // The runner is gone (even killed): nobody supervises this worker any more.
  process.on('disconnect', () => {
    void worker.drain(0).finally(() => process.exit(0));
  });
  // Signals go to the runner (the worker drains when it says so).
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
}

main();
