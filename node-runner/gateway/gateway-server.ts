/**
 * @module gateway-server
 * The self-hosted gateway's listeners, wired: one core pipeline and one
 * Node data plane (`http-plane.ts`, `ws-proxy.ts` for WebSocket
 * upgrades) served on every listener of `gateway.listeners` (or the
 * `gateway.listen` shorthand). A plain listener is a node:http server with
 * the slow-client limits (`client-limits.ts`), or one that redirects to
 * HTTPS; a TLS listener (`gateway/tls-listener.ts`) hands decrypted
 * connections to a node:http server of its own (HTTP/1.1) or to a
 * node:http2 server (h2 by ALPN), and relays pass routes' connections
 * before any handshake. Then the drain at shutdown. The runner serves the
 * listeners in its own process; each gateway worker (`gateway-worker.ts`)
 * serves them all on the shared ports.
 *
 * Where the state, the hooks and the certificates come from is the owner's business.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { accessFields } from '../../src/core/gateway/access-log.ts';
import type { GatewaySettings } from '../../src/core/config/config.ts';
import { createGateway } from '../../src/core/gateway/gateway.ts';
import { isWebSocketUpgrade } from '../../src/core/protocol/headers.ts';
import type { Logger } from '../../src/core/log.ts';
import { Pipeline, type HookClient } from '../../src/core/gateway/pipeline.ts';
import type { GatewayState } from '../../src/core/state/state.ts';
import { challengeDir, serveChallenge } from './acme-challenges.ts';
import { applyClientLimits, ConnectionLimit, headServerOptions, type ClientLimits } from './client-limits.ts';
import type { CertStore } from './cert-store.ts';
import { notReady, redirectHttps } from './listeners.ts';
import { TlsListener } from './tls-listener.ts';
import { createHttpPlane, PlaneResponse } from './http-plane.ts';
import type { TrafficRecorder } from '../admin/traffic-metrics.ts';
import type { Upstream } from './upstream.ts';
import { upgradeHandler, type UpgradeHandler } from './ws-proxy.ts';

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
  /** whether to log one `access` line per request, and with the query (read per request: a reload may turn it on or off) */
  accessLog?: () => { access: boolean; access_query?: boolean };
}

/** One listener to open. */
export interface ListenSpec {
  /** the config path it came from, for errors ("gateway", "gateway.listeners[1]") */
  name: string;
  listen: string;
  host: string;
  port: number;
  /** TLS (and HTTP/2 by ALPN) with these certificates */
  tls?: CertStore;
  /** answer with a redirect to the first TLS listener */
  redirectHttps?: boolean;
}

/** Where a connection's byte count stood when its previous request ended (what the next one's `bytes_in` starts from). */
const READ_MARK = Symbol('hookgate.bytesRead');
type MarkedSocket = Socket & { [READ_MARK]?: number };

/** The node:http servers here make `PlaneResponse`s. */
type PlaneServer = Server<typeof IncomingMessage, typeof PlaneResponse>;

/** A listener that listens. */
export interface BoundListener {
  listen: string;
  tls: boolean;
  port: number;
  /** e.g. "https://127.0.0.1:8443" */
  url: string;
}

/**
 * The self-hosted gateway: one data plane served on every listener.
 *
 * Contract: `listen` once. `stop(drainMs)` is idempotent: it stops
 * accepting, lets requests in flight finish for at most `drainMs`, then
 * ends WebSocket sessions (each reports on_disconnect) and every
 * connection. The owner stops its plugins after `stop` resolves.
 */
export class GatewayServer {
  #log: Logger;
  #inflight = 0;
  #drained: (() => void) | null = null;
  #stopping: Promise<void> | null = null;
  #limits: Omit<GatewaySettings, 'listen'>;
  #state: () => GatewayState | null;
  #hooks: HookClient;
  #handle: (req: IncomingMessage, res: PlaneResponse) => void;
  #upgrade: UpgradeHandler;
  /** every listening server (plain HTTP, and the TCP side of TLS listeners) */
  #servers: NetServer[] = [];
  /** every node:http server (plain listeners, and the HTTP/1.1 side of TLS listeners) */
  #http: PlaneServer[] = [];
  #clientLimits: ClientLimits[] = [];
  #tls: TlsListener[] = [];
  #h2Sessions = new Set<ServerHttp2Session>();
  #challenges: string | null;
  #connections = 0;
  #traffic: TrafficRecorder | undefined;
  #access: GatewayServerOptions['accessLog'];

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
    this.#challenges = challengeDir(opts.limits);
    this.#traffic = opts.traffic;
    this.#access = opts.accessLog;
    const plane = createHttpPlane({ pipeline, upstream: opts.upstream, logger: opts.logger, traffic: opts.traffic });
    // One listener for every response (no closure per request); the response carries its own facts.
    const self = this;
    const onClose = function (this: PlaneResponse) {
      self.#done(this);
    };
    const handle = (req: IncomingMessage, res: PlaneResponse) => {
      res.startedAt = performance.now();
      res.conn = req.socket;
      res.written0 = req.socket.bytesWritten;
      this.#inflight++;
      res.on('close', onClose);
      if (this.#stopping && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
      plane(req, res);
    };

    this.#limits = opts.limits;
    this.#state = opts.state;
    this.#handle = handle;
    this.#upgrade = upgradeHandler({ gateway, hooks: opts.hooks, logger: opts.logger });
    this.#hooks = opts.hooks;
  }

  /**
   * A node:http server serving the data plane within the client limits;
   * `countClients` false where the TCP connection is counted before it
   * gets here (TLS listeners count their raw connections).
   */
  #httpServer(countClients: boolean, redirect: (() => number | null) | null): PlaneServer {
    const limits = countClients ? this.#limits : { ...this.#limits, max_connections_per_client: 0 };
    let clientLimits: ClientLimits | null = null;
    const server = createServer<typeof IncomingMessage, typeof PlaneResponse>(
      {
        ServerResponse: PlaneResponse,
        keepAliveTimeout: 65_000,
        ...headServerOptions(limits),
        // Only WebSocket upgrades on GET are tunnelled; any other Upgrade
        // (h2c, made-up tokens) is a plain request through the pipeline,
        // where Upgrade and Connection are dropped as hop-by-hop.
        shouldUpgradeCallback: (req) => isWebSocketUpgrade(req.method ?? '', req.headers.upgrade),
      },
      (req, res) => {
        if (this.#challenges && serveChallenge(this.#challenges, req, res)) return;
        if (redirect && redirectHttps(req, res, redirect())) return;
        if (!this.#state()) return notReady(res);
        // client-limits passes the response it was given on: ours.
        clientLimits!.serve(req, res, this.#handle as (req: IncomingMessage, res: ServerResponse) => void);
      },
    );
    server.on('connection', (socket: Socket) => {
      this.#connections++;
      socket.once('close', () => this.#connections--);
    });
    clientLimits = applyClientLimits(server, limits, this.#log);
    this.#clientLimits.push(clientLimits);
    server.on('upgrade', this.#upgrade);
    this.#http.push(server);
    return server;
  }

  /** The HTTP/2 server of a TLS listener (fed decrypted connections that chose h2 by ALPN). */
  #h2Server(): Http2Server {
    const server = createH2Server({ settings: { maxConcurrentStreams: 128 } }, (req, res) => {
      if (!this.#state()) return notReady(res);
      // The compatibility objects offer every member the data plane uses
      // (`gateway/h2.ts` handles the heads, drops and the few differences).
      // Streams of one connection run concurrently: one request per
      // connection at a time (`oneAtATime`) is HTTP/1.1's rule.
      this.#handle(req as unknown as IncomingMessage, res as unknown as PlaneResponse);
    });
    server.on('session', (session) => {
      this.#h2Sessions.add(session);
      session.once('close', () => this.#h2Sessions.delete(session));
      if (this.#stopping) session.close();
    });
    return server;
  }

  /**
   * Listens on every listener (`reusePort`: several processes may share
   * the ports, Linux). Resolves with each one's bound address; rejects,
   * with a message naming the listener, when one cannot listen (the ones
   * already listening stay open: stop them with `stop`).
   */
  async listen(specs: ListenSpec[], reusePort = false, ticketKeys?: Buffer): Promise<BoundListener[]> {
    let httpsPort: number | null = null;
    const bound: BoundListener[] = [];
    for (const spec of specs) {
      let server: NetServer;
      if (spec.tls) {
        const http1 = this.#httpServer(false, null);
        // node:http tracks connections (header timeouts, closeIdleConnections) from 'listening' on;
        // this one is fed connections by the TLS listener and never listens itself.
        http1.emit('listening');
        const t = new TlsListener({
          store: spec.tls,
          state: this.#state,
          hooks: this.#hooks,
          logger: this.#log,
          http1,
          h2: this.#h2Server(),
          handshakeTimeoutMs: this.#limits.header_timeout,
          perClient: this.#limits.max_connections_per_client > 0 ? new ConnectionLimit(this.#limits.max_connections_per_client) : null,
          ticketKeys,
        });
        this.#tls.push(t);
        server = t.server;
      } else {
        server = this.#httpServer(true, spec.redirectHttps ? () => httpsPort : null);
      }
      this.#servers.push(server);
      const a = await new Promise<AddressInfo>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) => {
          reject(new Error(`${spec.name}.listen ${spec.listen}: ${err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message}`));
        });
        server.listen({ port: spec.port, host: spec.host, reusePort }, () => resolve(server.address() as AddressInfo));
      });
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      if (spec.tls && httpsPort === null) httpsPort = a.port;
      bound.push({ listen: spec.listen, tls: !!spec.tls, port: a.port, url: `${spec.tls ? 'https' : 'http'}://${host}:${a.port}` });
    }
    return bound;
  }

  /** Requests in flight. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Client connections open now on the HTTP/1.1 servers (WebSocket sessions included; HTTP/2 sessions are not counted). */
  get connections(): number {
    return this.#connections;
  }

  stop(drainMs: number): Promise<void> {
    return (this.#stopping ??= this.#stop(drainMs));
  }

  async #stop(drainMs: number): Promise<void> {
    const closed = this.#servers.map((server) => new Promise<void>((r) => server.close(() => r())));
    for (const server of this.#http) server.closeIdleConnections();
    // HTTP/2 clients are told (GOAWAY) to open no new streams; the ones under way may finish.
    for (const session of this.#h2Sessions) session.close();
    if (this.#inflight > 0) {
      this.#log.info({ inflight: this.#inflight, drain_ms: drainMs }, 'draining requests in flight');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => (this.#drained = r)), new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
      clearTimeout(timer);
    }
    // Sessions end before the plugins stop, so their on_disconnect still reaches them.
    await Promise.all([this.#upgrade.closeAll(), ...this.#tls.map((t) => t.closeSessions())]);
    for (const server of this.#http) server.closeAllConnections();
    for (const session of this.#h2Sessions) session.destroy();
    for (const l of this.#clientLimits) l.close();
    for (const t of this.#tls) t.close();
    await Promise.all(closed);
  }

  /** A request's answer is done (or cut off): the drain's count, its metrics and its access line. */
  #done(res: PlaneResponse): void {
    if (--this.#inflight === 0 && this.#drained) this.#drained();
    const traffic = this.#traffic;
    const log = this.#access?.();
    if (!traffic && !log?.access) return;
    const req = res.req;
    const socket = res.conn as MarkedSocket;
    res.conn = null;
    const code = res.headersSent ? res.statusCode : 0;
    const ms = performance.now() - res.startedAt;
    const out = socket.bytesWritten - res.written0;
    // From the end of the connection's previous request: this request's head and body (approximate when pipelined).
    const read = socket.bytesRead;
    const bytesIn = read - (socket[READ_MARK] ?? 0);
    socket[READ_MARK] = read;
    traffic?.request(res.route, req.method ?? '', code, ms / 1000, bytesIn, out);
    if (!log?.access) return;
    const fields = accessFields(
      {
        requestId: res.requestId,
        route: res.route,
        method: req.method ?? '',
        host: req.headers.host ?? '',
        target: req.url ?? '/',
        status: code,
        bytesIn,
        bytesOut: out,
        durationMs: ms,
        client: socket.remoteAddress ?? '',
        upstream: res.target,
        upstreamMs: res.upstreamMs,
        onRequestMs: res.onRequestMs,
        onRequestVerdict: res.onRequestVerdict,
        onResponseMs: res.onResponseMs,
        onResponseVerdict: res.onResponseVerdict,
      },
      log.access_query === true,
    );
    this.#log.info(fields as unknown as Record<string, unknown>, 'access');
  }
}
