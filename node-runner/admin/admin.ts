/**
 * @module admin
 * The admin listener: probes (`/healthz`, `/readyz`), Prometheus metrics
 * (`/metrics`, metrics.ts) and a JSON admin API:
 *
 * - `GET /api/overview`: hookgate version, uptime, config version and
 *   source, counts of routes, plugins (ready / all) and targets.
 * - `GET /api/routes`: each route's match, plugin bindings, action and
 *   balancer with the targets it has now.
 * - `GET /api/plugins`: each plugin's state, pid, readiness, hooks,
 *   restarts, failures, the delay of a pending restart, last error, socket,
 *   and the runner's pool to it (size, busy, idle, calls waiting).
 * - `GET /api/config`: the running config, secrets redacted (`redact.ts`).
 * - `GET /api/acme`: with `gateway.acme`, each domain's certificate (file,
 *   not-before/after), its next order, failures since the last success
 *   and the last error.
 * - `GET /api/certificates`: each certificate a TLS listener serves: its
 *   listener, pair name, files, names (SANs), issuer, not-before/after,
 *   and whether it is the listener's default (ACME's certificates too).
 * - `POST /api/plugins/:name/restart`: a new process for that plugin.
 * - `POST /api/cache/purge` (body optional: `{"plugin": "<name>"}`): empties
 *   the verdict caches, in gateway workers too.
 * - `POST /api/drain`: `/readyz` answers 503 from now on (traffic is still
 *   served), so a load balancer stops sending before the process stops.
 *
 * With `admin.keys`, `/api/*` and `/metrics` need `Authorization: Bearer
 * <key>` (checked in constant time, `keys.ts`); the probes stay open. An
 * admin listener off loopback must have keys (the config says so).
 * Mutations are POST only; other methods get 405. `GET /` is the status
 * page (admin-page.ts).
 */

import { createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { STATUS_PAGE } from './admin-page.ts';
import type { Config } from '../../src/core/config/config.ts';
import { redactConfig } from '../../src/core/config/redact.ts';
import type { StateSnapshot } from '../../src/core/state/routing-snapshot.ts';
import type { KeyRing } from '../hook-api/keys.ts';
import type { RunnerMetrics } from './metrics.ts';
import type { PluginStatus } from '../plugin/manager.ts';
import type { AcmeCertStatus } from '../gateway/acme.ts';
import type { ListedCertificate } from '../gateway/certificates.ts';

/** Only the page's own inline script and style, and calls to this listener. */
const PAGE_CSP = (() => {
  const hash = (tag: string) => {
    const body = STATUS_PAGE.slice(STATUS_PAGE.indexOf(`<${tag}>`) + tag.length + 2, STATUS_PAGE.indexOf(`</${tag}>`));
    return `'sha256-${createHash('sha256').update(body).digest('base64')}'`;
  };
  return `default-src 'none'; script-src ${hash('script')}; style-src ${hash('style')}; connect-src 'self'; img-src 'self'; frame-ancestors 'none'`;
})();

export interface AdminDeps {
  ready(): boolean;
  /** the `/readyz` body */
  readiness(): Record<string, unknown>;
  plugins(): PluginStatus[];
  config(): Config | null;
  snapshot(): StateSnapshot | null;
  /** where the config comes from: "file", "stream" or "etcd" */
  source: string;
  version: string;
  startedAt: number;
  /** `admin.keys`; empty: the API is open (only allowed on loopback) */
  keys: KeyRing;
  metrics: RunnerMetrics;
  /** restarts a plugin; false when there is no such (started) plugin */
  restartPlugin(name: string): Promise<boolean>;
  /** the certificates the TLS listeners serve */
  certificates?(): ListedCertificate[];
  /** empties the verdict caches (one plugin's, when named; gateway workers too); the verdicts dropped here, or null for an unknown plugin */
  purgeCache(plugin?: string): number | null;
  drain(): void;
  /** `gateway.acme`'s certificates and schedule (null: ACME is off) */
  acme?(): AcmeCertStatus[] | null;
}

/** Targets per route: pushed ones, else the config's. */
export function routeTargets(config: Config, snapshot: StateSnapshot | null): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of config.routes) {
    if (!r.balancer) continue;
    const pushed = snapshot?.targets[r.id];
    out.set(r.id, pushed ? [...pushed.targets] : [...(r.balancer.targets ?? [])]);
  }
  return out;
}

export function createAdminApp(d: AdminDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.text('ok\n'));
  app.get('/readyz', (c) => c.json(d.readiness(), d.ready() ? 200 : 503));
  app.get('/favicon.ico', (c) => c.body(null, 204));
  // The status page holds no data (it reads the API, with the key when one is needed): served openly.
  app.get('/', (c) =>
    c.body(STATUS_PAGE, 200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-frame-options': 'DENY',
      'x-content-type-options': 'nosniff',
      'content-security-policy': PAGE_CSP,
    }),
  );

  const guarded = async (c: Context, next: () => Promise<void>) => {
    if (d.keys.size > 0 && !d.keys.verify(c.req.header('authorization'))) {
      return c.json({ error: 'this admin API needs Authorization: Bearer <one of admin.keys>' }, 401, { 'www-authenticate': 'Bearer' });
    }
    await next();
  };
  app.use('/api/*', guarded);
  app.use('/metrics', guarded);

  app.get('/metrics', async (c) => {
    const { body, contentType } = await d.metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  });

  app.get('/api/overview', (c) => {
    const config = d.config();
    const plugins = d.plugins();
    const snap = d.snapshot();
    const targets = config ? [...routeTargets(config, snap).values()].reduce((n, t) => n + t.length, 0) : 0;
    return c.json({
      version: d.version,
      uptime_s: Math.round((Date.now() - d.startedAt) / 1000),
      ready: d.ready(),
      config: config ? { version: snap?.version ?? null, source: d.source } : null,
      routes: config?.routes.length ?? 0,
      plugins: { total: plugins.length, ready: plugins.filter((p) => p.ready).length },
      targets,
    });
  });

  app.get('/api/routes', (c) => {
    const config = d.config();
    if (!config) return c.json({ routes: [] });
    const targets = routeTargets(config, d.snapshot());
    return c.json({
      routes: config.routes.map((r) => ({
        id: r.id,
        match: r.match,
        plugins: r.plugins.map((b) => ({ plugin: b.plugin, on_error: b.on_error, with_body: b.with_body })),
        action: r.action,
        balancer: r.balancer ? { type: r.balancer.type, targets: targets.get(r.id) ?? [] } : null,
      })),
    });
  });

  app.get('/api/plugins', (c) =>
    c.json({
      plugins: d.plugins().map((p) => ({
        name: p.name,
        state: p.state,
        ready: p.ready,
        pid: p.pid ?? null,
        hooks: p.hooks,
        restarts: p.restarts,
        failures: p.failures,
        // while it waits to be restarted (a crash loop's cadence), else null
        restart_delay_ms: p.restartDelayMs,
        last_error: p.lastError || null,
        socket: p.socket,
        // the runner's own pool (gateway workers keep theirs: see hookgate_hook_pool_connections)
        pool: p.pool,
      })),
    }),
  );

  app.get('/api/config', (c) => c.json({ config: redactConfig(d.config()) }));
  app.get('/api/certificates', (c) => c.json({ certificates: d.certificates?.() ?? [] }));

  app.post('/api/plugins/:name/restart', async (c) => {
    const name = c.req.param('name');
    if (!(await d.restartPlugin(name))) return c.json({ error: `no running plugin "${name}"` }, 404);
    return c.json({ restarted: name });
  });
  app.post('/api/cache/purge', async (c) => {
    let plugin: string | undefined;
    const text = await c.req.text();
    if (text.trim()) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return c.json({ error: 'expected no body, or JSON {"plugin": "<name>"}' }, 400);
      }
      const p = (body as { plugin?: unknown })?.plugin;
      if (p !== undefined && typeof p !== 'string') return c.json({ error: '"plugin": expected a plugin name' }, 400);
      plugin = p as string | undefined;
    }
    const purged = d.purgeCache(plugin);
    if (purged === null) return c.json({ error: `no plugin "${plugin}"` }, 404);
    return c.json({ purged, plugin: plugin ?? null });
  });
  app.get('/api/acme', (c) => {
    const certificates = d.acme?.() ?? null;
    return c.json({ enabled: certificates !== null, certificates: certificates ?? [] });
  });

  app.post('/api/drain', (c) => {
    d.drain();
    return c.json({ draining: true });
  });
  for (const path of ['/api/plugins/:name/restart', '/api/drain', '/api/cache/purge']) app.on(['GET', 'PUT', 'DELETE', 'PATCH'], path, (c) => c.json({ error: 'use POST' }, 405, { allow: 'POST' }));
  app.notFound((c) => c.text('not found\n', 404));
  return app;
}
