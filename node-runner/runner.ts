/**
 * @module runner
 * One hookgate runner process: the config (from a file via `reload`, or
 * from any source via `apply`, such as the config stream), the plugin host,
 * the routing state kept in step with plugin pushes, and the listeners: the
 * self-hosted gateway (`gateway-server.ts`: the core pipeline on Node,
 * hooks called in process; with `gateway.workers` > 1, in worker processes
 * that this runner supervises and keeps in step, `workers.ts`) and
 * the admin endpoints (/healthz, /readyz), and the hook API for edge
 * workers (when `runner.listen` is set) with the versioned state snapshot
 * they route by. Reload keeps what did not change; stop drains.
 *
 * Signals, arguments and exit codes are the CLI's business.
 */

import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { parseConfig, type Config, type GatewaySettings } from '../src/core/config/config.ts';
import type { TargetSet } from '../src/core/routing/balancer.ts';
import type { Logger } from '../src/core/log.ts';
import { HOOK_BIT } from '../src/core/protocol/protocol.ts';
import { hookNames, snapshotConfig, type StateSnapshot } from '../src/core/state/routing-snapshot.ts';
import { GatewayState, type SpeedSet } from '../src/core/state/state.ts';
import type { Clock } from '../src/core/clock.ts';
import { loadConfigFile } from './config/config-file.ts';
import { createHookApi, type HookApi } from './hook-api/hook-api.ts';
import { KeyRing } from './hook-api/keys.ts';
import { createAdminApp, routeTargets } from './admin/admin.ts';
import { RunnerMetrics } from './admin/metrics.ts';
import { logChanges, warnFixedAtStart } from './reload-log.ts';
import { NO_TRAFFIC } from './admin/traffic-metrics.ts';
import { packageVersion } from './version.ts';
import { PluginManager, type ApplyChanges } from './plugin/manager.ts';
import type { PluginProcessOptions } from './plugin/process.ts';
import { KeeperClient } from './plugin/keeper-client.ts';
import { Reaper } from './plugin/reaper.ts';
import { AcmeManager, acmeDomains, withAcmeStorage } from './gateway/acme.ts';
import { GatewayServer, type BoundListener } from './gateway/gateway-server.ts';
import { certificateExpiryGauge, ListenerCertificates, type ListedCertificate } from './gateway/certificates.ts';
import { loadListeners } from './gateway/listeners.ts';
import { countConnections, listenersOf, splitListen, type Listeners } from './listen.ts';
import type { ToWorker } from './gateway/gateway-worker.ts';
import { createUpstream } from './gateway/upstream.ts';
import { workerCount, WorkerSet } from './gateway/workers.ts';

export interface RunnerOptions {
  logger: Logger;
  /**
   * The config file `reload()` reads (file mode). With a config stream the
   * configs come through `apply()` instead, and this is unset.
   */
  configFile?: string;
  /** plugin supervision timings (tests shorten them) */
  process?: Pick<PluginProcessOptions, 'stopGraceMs' | 'backoffBaseMs' | 'backoffMaxMs'>;
  /** longest time `stop()` waits for in-flight requests (default 10 s) */
  drainMs?: number;
  /**
   * The runner's state dir. With it, plugins are started and held by a
   * keeper (`<stateDir>/keeper.sock`) and survive the runner being killed
   * or restarted; the plugin snapshot is `<stateDir>/plugins.json`
   * (docs/keeper.md). Without it, plugins are the runner's own children and
   * the reaper ends them when it dies.
   */
  stateDir?: string;
  /** the wall clock runner keys expire by (default `systemClock`; tests drive it) */
  wallClock?: Clock;
  /** where configs come from, for the admin API and metrics: "file", "stream" or "etcd" (default: "file" with configFile, else "stream") */
  source?: string;
  /** the log settings in force (`logSettings`), which gateway worker processes take too */
  log?: { level: string; format: string };
  /** `metrics.requests`: false records nothing on the request path (default true); fixed at start */
  requestMetrics?: boolean;
}

export { listenersOf, splitListen, type Listeners } from './listen.ts';

function urlOf(server: Server): string {
  const a = server.address() as AddressInfo;
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

/**
 * A runner.
 *
 * Contract: `start()` once; it rejects (with `BAD_CONFIG`, or a listen
 * error) without leaving anything running. `reload()` may be called any
 * time after start and never throws: an invalid config is logged and the
 * current one stays. `stop()` is idempotent: it stops accepting, waits up
 * to `drainMs` for requests in flight, closes sessions, stops plugins.
 */
export class Runner {
  #opts: RunnerOptions;
  #log: Logger;
  #manager: PluginManager;
  #config: Config | null = null;
  #state: GatewayState | null = null;
  #upstream = createUpstream();
  /** the gateway in this process (gateway.workers 1), or */
  #gateway: GatewayServer | null = null;
  /** the gateway worker processes (gateway.workers > 1) */
  #workers: WorkerSet | null = null;
  /** certificates by ACME (gateway.acme), held here whether or not there are workers */
  #acme: AcmeManager | null = null;
  #feedQueued = false;
  #feedKinds = new Set<'state' | 'hooks' | 'pushes'>();
  #servers: Server[] = [];
  #stopping: Promise<void> | null = null;
  #unsubscribe: Array<() => void> = [];
  #keys = new KeyRing([]);
  #snapshot: StateSnapshot | null = null;
  #hookApi: HookApi | null = null;
  #notified = '';
  #notifyQueued = false;
  /** base URLs once listening */
  readonly urls: { gateway?: string; admin?: string; runner?: string; listeners?: string[] } = {};
  #certs = new ListenerCertificates([]);
  #listen_: Listeners | null = null;

  #draining = false;
  #startedAt = Date.now();
  #metrics: RunnerMetrics;
  /** connections open now on this process's listeners (gateway, admin, runner) */
  #open = new Map<string, () => number>();

  constructor(opts: RunnerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#metrics = new RunnerMetrics({
      plugins: () => this.#manager.status(),
      cacheEntries: () => this.#manager.cacheEntries(),
      targets: () => (this.#config ? [...routeTargets(this.#config, this.snapshot())].map(([route, t]) => ({ route, count: t.length })) : []),
      config: () => {
        const v = this.snapshot()?.version;
        return v ? { version: v, source: opts.source ?? (opts.configFile ? 'file' : 'stream') } : null;
      },
      version: packageVersion(),
      pools: () => this.#manager.status().flatMap((p) => (p.pool ? [{ plugin: p.name, busy: p.pool.busy, idle: p.pool.idle }] : [])),
      connections: () => [...this.#open].map(([listener, count]) => ({ listener, count: count() })),
      requests: opts.requestMetrics,
    });
    const traffic = this.#metrics.traffic === NO_TRAFFIC ? undefined : this.#metrics.traffic;
    this.#manager = opts.stateDir
      ? new PluginManager({
          logger: opts.logger,
          keeper: { client: new KeeperClient({ dir: opts.stateDir, logger: opts.logger }), stateDir: opts.stateDir },
          process: opts.process,
          traffic,
        })
      : new PluginManager({ logger: opts.logger, reaper: Reaper.shared(), process: opts.process, traffic });
  }

  get manager(): PluginManager {
    return this.#manager;
  }

  /** The config in force. */
  get config(): Config | null {
    return this.#config;
  }

  /** Ready: a config is loaded and every plugin with hooks has said ready. */
  get ready(): boolean {
    return !this.#draining && this.#config !== null && this.#manager.status().every((p) => p.ready) && (this.#workers?.ready ?? true);
  }

  /** The Prometheus metrics of this runner (admin `/metrics`). */
  get metrics(): RunnerMetrics {
    return this.#metrics;
  }

  /**
   * Starts the listeners (from `listen`, which never changes while running)
   * and applies `config` when there is one. Without one (a config stream
   * that has not delivered yet) the gateway answers 503 and /readyz says
   * not ready until the first `apply()`.
   */
  async start(listen: Listeners, config: Config | null): Promise<void> {
    this.#listen_ = listen;
    const pushes = this.#manager.pushes.subscribe((change) => {
      const state = this.#state;
      if (state) {
        for (const r of change.routes) {
          if (change.kind === 'targets') {
            const set = this.#manager.pushes.targets(r);
            if (set) state.setTargets(r, set);
          } else state.setSpeed(r, this.#manager.pushes.speed(r));
        }
      }
      this.#feedWorkers('pushes');
      this.#invalidate();
    });
    const hooks = this.#manager.subscribeHooks(() => {
      this.#feedWorkers('hooks');
      this.#invalidate();
    });
    this.#unsubscribe.push(pushes, hooks);
    try {
      if (config) await this.#applyNow(config);
      const limits = withAcmeStorage(listen.gatewayLimits ?? parseConfig({}).gateway, this.#opts.stateDir);
      const loaded = loadListeners(listen.listeners ?? [{ listen: listen.gateway }], listen.shorthand ?? true, this.#log);
      this.#certs = new ListenerCertificates(loaded);
      this.#certs.watch();
      const count = workerCount(limits.workers);
      let bound: BoundListener[];
      if (count > 1) {
        // Each worker loads and watches the same files; the runner's stores are for listing.
        this.#workers = new WorkerSet({ count, listeners: loaded.map(({ name, settings, host, port }) => ({ name, settings, host, port })), limits, logger: this.#log, feed: { current: () => this.#feed() }, log: this.#opts.log, requestMetrics: this.#opts.requestMetrics !== false });
        const workers = this.#workers;
        this.#metrics.workers = () => workers.scrape();
        bound = await this.#workers.start();
      } else {
        const gw = (this.#gateway = new GatewayServer({ state: () => this.#state, hooks: this.#manager, upstream: this.#upstream, logger: this.#log, limits, traffic: this.#opts.requestMetrics === false ? undefined : this.#metrics.traffic, accessLog: () => this.#config?.log ?? { access: false } }));
        this.#open.set('gateway', () => gw.connections);
        bound = await gw.listen(loaded.map((l) => ({ name: l.name, listen: l.settings.listen, host: l.host, port: l.port, tls: l.store ?? undefined, redirectHttps: l.settings.redirect_https })));
        for (const b of bound) this.#log.info({ url: b.url }, 'gateway listening');
      }
      this.urls.gateway = bound[0].url;
      this.urls.listeners = bound.map((b) => b.url);
      if (limits.acme) {
        this.#acme = new AcmeManager({ settings: limits.acme, logger: this.#log.child({ component: 'acme' }), registry: this.#metrics.registry, clock: this.#opts.wallClock });
        this.#acme.start(this.#config ? acmeDomains(this.#config) : []);
        this.addCertificateDir(this.#acme.store.certsDir);
      }
      if (this.#certs.any) certificateExpiryGauge(this.#metrics.registry, () => this.#certs.list());
      this.urls.admin = await this.#listen(createServer(getRequestListener(this.#admin().fetch, { overrideGlobalObjects: false })), listen.admin, 'admin');
      if (listen.runner) {
        if (this.#keys.size === 0) this.#log.warn('runner.listen is set but no usable runner.keys: every hook API call will get 401');
        const api = createHookApi({ hooks: this.#manager, snapshot: () => this.snapshot(), keys: () => this.#keys, logger: this.#log, clock: this.#opts.wallClock, metrics: this.#metrics.hookApi });
        const rest = getRequestListener(api.app.fetch, { overrideGlobalObjects: false });
        const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
          if (!api.handle(req, res)) void rest(req, res);
        });
        server.on('upgrade', api.upgrade);
        this.#hookApi = api;
        this.urls.runner = await this.#listen(server, listen.runner, 'runner');
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * Loads the config file again and applies it (file mode). Never throws:
   * an invalid file is logged and the current config stays. Returns whether
   * the new config was applied.
   */
  async reload(): Promise<boolean> {
    if (!this.#opts.configFile || this.#stopping) return false;
    let next: Config;
    try {
      const file = this.#opts.configFile;
      next = await loadConfigFile(file, (w) => this.#log.warn({ file }, w));
    } catch (err) {
      const problems = (err as { problems?: string[] }).problems ?? [(err as Error).message];
      this.#log.error({ problems }, 'config reload refused: the file is invalid; keeping the previous config');
      this.#metrics.reloads.inc({ result: 'refused' });
      return false;
    }
    const listen = listenersOf(next);
    if (JSON.stringify(listen.listeners) !== JSON.stringify(this.#listen_?.listeners ?? listen.listeners)) this.#log.warn({ listeners: listen.listeners }, 'gateway listeners or their tls settings changed; restart to apply them');
    this.reloadCertificates();
    for (const k of ['gateway', 'admin', 'runner'] as const) {
      if (listen[k] !== this.#listen_?.[k]) this.#log.warn({ [k]: listen[k] }, `${k}.listen changed; restart to apply it`);
    }
    if (this.#config) warnFixedAtStart(this.#log, this.#config, next);
    if (this.#listen_?.gatewayLimits && JSON.stringify(listen.gatewayLimits) !== JSON.stringify(this.#listen_.gatewayLimits)) {
      this.#log.warn({ gateway: listen.gatewayLimits }, 'gateway settings (timeouts, connection limits, workers, acme) changed; restart to apply them');
    }
    const same = JSON.stringify(next) === JSON.stringify(this.#config);
    const changes = await this.apply(next);
    this.#metrics.reloads.inc({ result: 'applied' });
    logChanges(this.#log, 'config reloaded', !same, changes, { routes: next.routes.length, plugins: Object.keys(next.plugins).length });
    return true;
  }

  /**
   * Restarts those of `names` whose code changed on disk since they started
   * (code.ts), keeping the config as it is: what `watch` calls when a
   * watched file changes. Logs what it restarted, or that nothing changed.
   */
  async refreshPlugins(names: ReadonlySet<string>): Promise<ApplyChanges | null> {
    if (!this.#config || this.#stopping) return null;
    const changes = await this.#manager.apply(this.#config, { code: names });
    logChanges(this.#log, 'plugin files changed', false, changes);
    return changes;
  }

  /**
   * Applies a validated config from any source: new routes apply to new
   * requests, unchanged plugins keep running, keys take effect (links whose
   * key went away are closed). Listener settings in it are ignored: they are
   * fixed at start.
   */
  async apply(config: Config): Promise<ApplyChanges> {
    if (this.#stopping) return { started: [], restarted: [], stopped: [], settings: [] };
    const changes = await this.#applyNow(config);
    this.#hookApi?.recheckKeys();
    return changes;
  }

  async #applyNow(config: Config): Promise<ApplyChanges> {
    const changes = await this.#manager.apply(config);
    this.#state = new GatewayState(config, this.#manager.pushes);
    this.#config = config;
    this.#feedWorkers('state');
    this.#acme?.setDomains(acmeDomains(config));
    this.#keys = KeyRing.fromConfig(config, process.env, this.#log);
    if (this.#listen_?.runner && this.#keys.size === 0) this.#log.warn('runner.listen is set but no usable runner.keys: every hook API call will get 401');
    this.#invalidate();
    return changes;
  }

  stop(): Promise<void> {
    return (this.#stopping ??= this.#stop());
  }

  async #stop(): Promise<void> {
    const drainMs = this.#opts.drainMs ?? 10_000;
    const closed = this.#servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.#servers) s.closeIdleConnections();
    // The gateway drains (its WebSocket sessions end, reporting on_disconnect) before the plugins stop.
    await Promise.all([this.#gateway?.stop(drainMs), this.#workers?.stop(drainMs)]);
    this.#hookApi?.closeAll();
    for (const s of this.#servers) s.closeAllConnections();
    await Promise.all(closed);
    for (const u of this.#unsubscribe) u();
    await this.#acme?.stop();
    this.#certs.close();
    await this.#manager.stop();
    await this.#upstream.close();
  }

  /** Reads the TLS listeners' certificate files again (SIGHUP; workers too); never throws (gateway/certificates.ts). */
  reloadCertificates(): void {
    this.#certs.reload();
    this.#workers?.send({ t: 'certs' });
  }

  /** Adds a folder of certificate pairs to the TLS listeners (the one at `listen`), workers too: ACME's hand-over (`ListenerCertificates.addDir`). */
  addCertificateDir(dir: string, listen?: string): number {
    const n = this.#certs.addDir(dir, listen);
    if (n) this.#workers?.send({ t: 'cert-dir', dir, listen });
    return n;
  }

  /** What a gateway worker is sent to be in step: the config, the hook table, the pushes. */
  #feed(): Extract<ToWorker, { t: 'state' }> | null {
    const config = this.#config;
    if (!config) return null;
    return { t: 'state', config, table: this.#manager.hookTable(), ...this.#pushed(config) };
  }

  #pushed(config: Config): { targets: Record<string, TargetSet>; speed: Record<string, SpeedSet> } {
    const targets: Record<string, TargetSet> = {};
    const speed: Record<string, SpeedSet> = {};
    for (const r of config.routes) {
      const t = this.#manager.pushes.targets(r.id);
      if (t) targets[r.id] = t;
      const sp = this.#manager.pushes.speed(r.id);
      if (sp) speed[r.id] = sp;
    }
    return { targets, speed };
  }

  /**
   * Tells every worker what changed, once per turn however many changes
   * came: a new config as a whole (`state`), else the hook table and the
   * pushes (which keep each worker's balancers and their counts).
   */
  #feedWorkers(kind: 'state' | 'hooks' | 'pushes'): void {
    if (!this.#workers) return;
    this.#feedKinds.add(kind);
    if (this.#feedQueued) return;
    this.#feedQueued = true;
    queueMicrotask(() => {
      this.#feedQueued = false;
      const kinds = this.#feedKinds;
      this.#feedKinds = new Set();
      const config = this.#config;
      if (!config || !this.#workers) return;
      if (kinds.has('state')) return void this.#workers.send(this.#feed()!);
      if (kinds.has('hooks')) this.#workers.send({ t: 'hooks', table: this.#manager.hookTable() });
      if (kinds.has('pushes')) this.#workers.send({ t: 'pushes', ...this.#pushed(config) });
    });
  }

  /**
   * The versioned snapshot edge workers route by (null before the first
   * config). Rebuilt lazily after any change; the version is a hash of the
   * content, so equal states have equal versions.
   */
  snapshot(): StateSnapshot | null {
    const config = this.#config;
    if (!config) return null;
    if (this.#snapshot) return this.#snapshot;
    const hooks: StateSnapshot['hooks'] = {};
    const body: string[] = [];
    const cache: NonNullable<StateSnapshot['cache']> = {};
    const targets: StateSnapshot['targets'] = {};
    const speed: StateSnapshot['speed'] = {};
    for (const r of config.routes) {
      const mask = this.#manager.hooksOf(r.id);
      if (mask) hooks[r.id] = hookNames(mask);
      if (this.#manager.wantsBody(r.id)) body.push(r.id);
      const c = mask & HOOK_BIT.on_request ? this.#manager.routeCache(r.id) : null;
      if (c) cache[r.id] = c;
      const t = this.#manager.pushes.targets(r.id);
      if (t) targets[r.id] = t;
      const sp = this.#manager.pushes.speed(r.id);
      if (sp) speed[r.id] = sp;
    }
    const content = { config: snapshotConfig(config), hooks, body, ...(Object.keys(cache).length ? { cache } : {}), targets, speed };
    const version = createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 16);
    return (this.#snapshot = { version, ...content });
  }

  #invalidate(): void {
    this.#snapshot = null;
    if (!this.#hookApi || this.#notifyQueued) return;
    this.#notifyQueued = true;
    queueMicrotask(() => {
      this.#notifyQueued = false;
      const v = this.snapshot()?.version;
      if (v && v !== this.#notified) {
        this.#notified = v;
        this.#hookApi?.notifyState(v);
      }
    });
  }

  #listen(server: Server, listen: string, name: string): Promise<string> {
    const { host, port } = splitListen(listen);
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new Error(`${name}.listen ${listen}: ${err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message}`));
      });
      this.#open.set(name, countConnections(server));
      server.listen(port, host, () => {
        this.#servers.push(server);
        const url = urlOf(server);
        this.#log.info({ url }, `${name} listening`);
        resolve(url);
      });
    });
  }

  #admin(): Hono {
    const keys = KeyRing.fromKeys(this.#listen_?.adminKeys ?? [], process.env, this.#log, 'admin');
    return createAdminApp({
      ready: () => this.ready,
      readiness: () => {
        const plugins = this.#manager.status().map((p) => ({
          name: p.name,
          ready: p.ready,
          state: p.state,
          hooks: p.hooks,
          error: p.lastError || undefined,
          // A crash loop shows its cadence: failures so far and the delay of the pending restart.
          failures: p.failures || undefined,
          restart_delay_ms: p.restartDelayMs ?? undefined,
        }));
        const workers = this.#workers?.status();
        return { ready: this.ready, config: this.#config !== null, ...(this.#draining ? { draining: true } : {}), plugins, ...(workers ? { workers } : {}) };
      },
      plugins: () => this.#manager.status(),
      config: () => this.#config,
      snapshot: () => this.snapshot(),
      source: this.#opts.source ?? (this.#opts.configFile ? 'file' : 'stream'),
      version: packageVersion(),
      startedAt: this.#startedAt,
      keys,
      metrics: this.#metrics,
      restartPlugin: async (name) => {
        if (!this.#config || !this.#manager.status().some((p) => p.name === name && p.state !== 'attached' && p.state !== 'down')) return false;
        const changes = await this.#manager.apply(this.#config, { restart: new Set([name]) });
        this.#log.info({ plugin: name }, 'plugin restarted through the admin API');
        return changes.restarted.some((r) => r.plugin === name);
      },
      certificates: () => this.#certs.list(),
      purgeCache: (plugin) => {
        if (plugin !== undefined && !this.#manager.status().some((p) => p.name === plugin)) return null;
        const purged = this.#manager.purgeCaches(plugin);
        this.#workers?.send({ t: 'purge', plugin });
        this.#log.info({ plugin: plugin ?? '*', purged }, 'verdict caches purged through the admin API');
        return purged;
      },
      acme: () => this.#acme?.status() ?? null,
      drain: () => {
        if (!this.#draining) this.#log.info('draining: /readyz answers 503 from now on; traffic is still served');
        this.#draining = true;
      },
    });
  }
}
