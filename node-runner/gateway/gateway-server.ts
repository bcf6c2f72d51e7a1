/**
 * @module gateway-server
 * One self-hosted gateway listener, wired: the node:http server with the
 * slow-client limits (`client-limits.ts`), the Node data plane
 * (`http-plane.ts`) for plain requests and `ws-proxy.ts` for WebSocket
 * upgrades, both over one core pipeline, and the drain at shutdown. The
 * runner serves one in its own process; each gateway worker
 * (`gateway-worker.ts`) serves one on the shared port.
 *
 * Where the state and the hooks come from is the owner's business.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewaySettings } from '../../src/core/config/config.ts';
import { createGateway } from '../../src/core/gateway/gateway.ts';
import { isWebSocketUpgrade } from '../../src/core/protocol/headers.ts';
import type { Logger } from '../../src/core/log.ts';
import { Pipeline, type HookClient } from '../../src/core/gateway/pipeline.ts';
import type { GatewayState } from '../../src/core/state/state.ts';
import { challengeDir, serveChallenge } from './acme-challenges.ts';
import { applyClientLimits, headServerOptions, type ClientLimits } from './client-limits.ts';
import { createHttpPlane } from './http-plane.ts';
import type { TrafficRecorder } from '../admin/traffic-metrics.ts';
import type { Upstream } from './upstream.ts';
import { upgradeHandler } from './ws-proxy.ts';

export interface GatewayServerOptions {
  /** the routing state; null until the first config (then requests get 503) */
  state: () => GatewayState | null;
  hooks: HookClient;
  upstream: Upstream;
  logger: Logger;
  /** `gateway.*` but `listen` */
  limits: Omit<GatewaySettings, 'listen'>;
  /** where request metrics go (default: nowhere) */
  traffic?: TrafficRecorder;
  /** whether to log one `access` line per request (read per request: a reload may turn it on or off) */
  accessLog?: () => boolean;
}

/**
 * A gateway listener.
 *
 * Contract: `listen` once. `stop(drainMs)` is idempotent: it stops
 * accepting, lets requests in flight finish for at most `drainMs`, then
 * ends WebSocket sessions (each reports on_disconnect) and every
 * connection. The owner stops its plugins after `stop` resolves.
 */
export class GatewayServer {
  readonly server: Server;
  #log: Logger;
  #inflight = 0;
  #drained: (() => void) | null = null;
  #stopping: Promise<void> | null = null;
  #closeSessions: () => Promise<void>;
  #clientLimits: ClientLimits;

  constructor(opts: GatewayServerOptions) {
    this.#log = opts.logger;
    const state = () => opts.state()!;
    // One pipeline for both: plain requests on node:http and undici, WebSocket upgrades planned by the Web gateway.
    const pipeline = new Pipeline({ state, hooks: opts.hooks, logger: opts.logger });
    const gateway = createGateway<never>({
      state,
      hooks: opts.hooks,
      upstream: opts.upstream.fetch,
      logger: opts.logger,
      pipeline,
      // Only `upgrade` is used, which is given the client and the raw request.
      client: () => {
        throw new Error('plain requests are served by http-plane.ts');
      },
      drop: () => new Response(null, { status: 499 }),
    });
    // HTTP-01 answers come before routing: the gateway owns the ACME challenge path once gateway.acme is on.
    const challenges = challengeDir(opts.limits);
    const routed = new WeakMap<ServerResponse, { route: string; id: string }>();
    const traffic = opts.traffic;
    const access = opts.accessLog;
    const plane = createHttpPlane({ pipeline, upstream: opts.upstream, logger: opts.logger, onRoute: traffic || access ? (res, route, id) => routed.set(res, { route, id }) : undefined });
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      if (traffic || access) {
        const t0 = performance.now();
        const sent0 = req.socket.bytesWritten;
        res.once('close', () => {
          const r = routed.get(res);
          const code = res.headersSent ? res.statusCode : 0;
          const seconds = (performance.now() - t0) / 1000;
          traffic?.request(r?.route ?? '', req.method ?? '', code, seconds);
          if (access?.()) {
            const url = req.url ?? '/';
            const q = url.indexOf('?');
            this.#log.info(
              { request_id: r?.id, route: r?.route ?? null, method: req.method, host: req.headers.host, path: q >= 0 ? url.slice(0, q) : url, status: code, bytes_out: req.socket.bytesWritten - sent0, duration_ms: +(seconds * 1000).toFixed(3), client: req.socket.remoteAddress },
              'access',
            );
          }
        });
      }
      this.#track(req, res, plane);
    };
    this.server = createServer(
      {
        keepAliveTimeout: 65_000,
        ...headServerOptions(opts.limits),
        // Only WebSocket upgrades on GET are tunnelled; any other Upgrade
        // (h2c, made-up tokens) is a plain request through the pipeline,
        // where Upgrade and Connection are dropped as hop-by-hop.
        shouldUpgradeCallback: (req) => isWebSocketUpgrade(req.method ?? '', req.headers.upgrade),
      },
      (req, res) => {
        if (challenges && serveChallenge(challenges, req, res)) return;
        if (!opts.state()) {
          res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' });
          return void res.end('not ready: no config yet\n');
        }
        this.#clientLimits.serve(req, res, handle);
      },
    );
    this.#clientLimits = applyClientLimits(this.server, opts.limits, opts.logger);
    const upgrade = upgradeHandler({ gateway, hooks: opts.hooks, logger: opts.logger });
    this.server.on('upgrade', upgrade);
    this.#closeSessions = upgrade.closeAll;
  }

  /** Requests in flight. */
  get inflight(): number {
    return this.#inflight;
  }

  /**
   * Listens on `host:port`; `reusePort` lets several processes share the
   * port (Linux). Rejects with a message naming `name.listen`.
   */
  listen(name: string, listen: string, host: string, port: number, reusePort = false): Promise<AddressInfo> {
    const server = this.server;
    return new Promise((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(new Error(`${name}.listen ${listen}: ${err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message}`));
      });
      server.listen({ port, host, reusePort }, () => resolve(server.address() as AddressInfo));
    });
  }

  stop(drainMs: number): Promise<void> {
    return (this.#stopping ??= this.#stop(drainMs));
  }

  async #stop(drainMs: number): Promise<void> {
    const server = this.server;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    if (this.#inflight > 0) {
      this.#log.info({ inflight: this.#inflight, drain_ms: drainMs }, 'draining requests in flight');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => (this.#drained = r)), new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
      clearTimeout(timer);
    }
    // Sessions end before the plugins stop, so their on_disconnect still reaches them.
    await this.#closeSessions();
    server.closeAllConnections();
    this.#clientLimits.close();
    await closed;
  }

  #track(req: IncomingMessage, res: ServerResponse, listener: (req: IncomingMessage, res: ServerResponse) => unknown): void {
    this.#inflight++;
    res.on('close', () => {
      if (--this.#inflight === 0 && this.#drained) this.#drained();
    });
    if (this.#stopping) res.setHeader('connection', 'close');
    void listener(req, res);
  }
}
