/**
 * @module client-limits
 * The self-hosted gateway's limits on slow and greedy clients, as small
 * rules on a node:http server (`gateway.*` in the config):
 *
 * * `header_timeout`: the time to receive a request's complete head.
 *   Node's own `headersTimeout` (answers 408 and closes, also for a
 *   connection that sends nothing), checked on a tick fine enough for
 *   sub-second values (`headServerOptions`).
 * * `body_timeout`: the longest pause between two reads of a request body
 *   (`BodyWatch`). Time during which the gateway itself does not read
 *   (backpressure from a slow upstream, a request waiting for a slot)
 *   does not count. On expiry the client gets 408 if nothing was sent yet,
 *   else the connection is closed; either way the socket closes, which
 *   aborts the upstream request.
 * * `max_connections_per_client`: open connections per client IP address
 *   (`ConnectionLimit`); one over it is closed at once, unread. So that a
 *   connection holds at most one upstream request, pipelined requests run
 *   one at a time, as nginx runs them (`oneAtATime`); Node would run them
 *   all at once.
 *
 * No timer per request or chunk: one coarse tick (a tenth of the timeout,
 * at most 1 s) runs while bodies are watched, and a chunk costs nothing
 * (the tick compares the socket's byte count). What a route does with the
 * request is the gateway's business; this module only ends connections.
 */

import type { IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { GatewaySettings } from '../../src/core/config/config.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';

/**
 * The tick that checks a deadline of `timeoutMs`: a tenth of it, between
 * 10 ms and 1 s, so a deadline fires at most 10% (or 1 s) late.
 *
 * @example
 * tickFor(10_000) // 1000
 * tickFor(300)    // 30
 */
export function tickFor(timeoutMs: number): number {
  return Math.min(1000, Math.max(10, Math.round(timeoutMs / 10)));
}

/**
 * node:http server options for `header_timeout`: Node's `headersTimeout`
 * (0 turns it off), checked every `tickFor(header_timeout)`. Node's
 * `requestTimeout` stays off: bodies may stream for as long as they move.
 *
 * @example
 * createServer({ keepAliveTimeout: 65_000, ...headServerOptions(config.gateway) }, handler);
 */
export function headServerOptions(s: Pick<GatewaySettings, 'header_timeout'>): Pick<ServerOptions, 'headersTimeout' | 'requestTimeout' | 'connectionsCheckingInterval'> {
  return { headersTimeout: s.header_timeout, requestTimeout: 0, connectionsCheckingInterval: tickFor(s.header_timeout || 30_000) };
}

/** What `BodyWatch` reads of a request: whether its body is done, and its socket's progress. */
export interface WatchedRequest {
  readonly complete: boolean;
  readonly destroyed: boolean;
  readonly headers: IncomingMessage['headers'];
  readonly socket: Pick<Socket, 'bytesRead' | 'isPaused'>;
}

interface Watched<Req, Res> {
  req: Req;
  res: Res;
  /** the socket's bytesRead at the last tick */
  read: number;
  /** when the body last moved, or the gateway last held it back */
  since: number;
}

/**
 * Watches request bodies for pauses longer than `timeoutMs`.
 *
 * Contract: `watch` is cheap (a bodyless request costs two header reads)
 * and may be called for every request; a request leaves the watch when its
 * body is complete, it is destroyed, or it stalled (then `onStall` runs
 * once for it). A socket the gateway paused (backpressure) is not stalled.
 * `close()` stops the tick; it is idempotent.
 *
 * @example
 * const bodies = new BodyWatch({ timeoutMs: 30_000, onStall: (req, res) => answerStalledBody(req, res) });
 * server.on('request', (req, res) => bodies.watch(req, res));
 */
export class BodyWatch<Req extends WatchedRequest = IncomingMessage, Res = ServerResponse> {
  #timeoutMs: number;
  #tickMs: number;
  #clock: Clock;
  #onStall: (req: Req, res: Res) => void;
  #watched = new Set<Watched<Req, Res>>();
  #timer: TimerHandle | null = null;

  constructor(opts: { timeoutMs: number; onStall: (req: Req, res: Res) => void; clock?: Clock }) {
    this.#timeoutMs = opts.timeoutMs;
    this.#tickMs = tickFor(opts.timeoutMs);
    this.#clock = opts.clock ?? realClock;
    this.#onStall = opts.onStall;
  }

  /** Requests being watched. */
  get size(): number {
    return this.#watched.size;
  }

  watch(req: Req, res: Res): void {
    if (this.#timeoutMs <= 0) return;
    const h = req.headers;
    const length = h['content-length'];
    if (h['transfer-encoding'] === undefined && (length === undefined || length === '0')) return;
    this.#watched.add({ req, res, read: req.socket.bytesRead, since: this.#clock.now() });
    this.#timer ??= this.#clock.setTimeout(this.#tick, this.#tickMs, true);
  }

  close(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#watched.clear();
  }

  #tick = (): void => {
    this.#timer = null;
    const now = this.#clock.now();
    for (const w of this.#watched) {
      const req = w.req;
      if (req.complete || req.destroyed) {
        this.#watched.delete(w);
        continue;
      }
      const read = req.socket.bytesRead;
      if (read !== w.read || req.socket.isPaused()) {
        w.read = read;
        w.since = now;
      } else if (now - w.since >= this.#timeoutMs) {
        this.#watched.delete(w);
        this.#onStall(req, w.res);
      }
    }
    if (this.#watched.size > 0) this.#timer = this.#clock.setTimeout(this.#tick, this.#tickMs, true);
  };
}

const STALLED_BODY = 'request body timed out\n';

/**
 * What a stalled body gets: 408 (with `Connection: close`) when no response
 * has started, else the connection is closed. Closing the socket aborts the
 * request, and with it the upstream request its body was streaming to.
 *
 * @example
 * new BodyWatch({ timeoutMs, onStall: answerStalledBody });
 */
export function answerStalledBody(req: IncomingMessage, res: ServerResponse): void {
  if (res.headersSent || res.writableEnded) {
    req.socket.destroy();
    return;
  }
  res.writeHead(408, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(STALLED_BODY.length), connection: 'close' });
  // An answered request is no longer aborted when its socket closes, so it
  // is destroyed here, once the 408 is with the OS ('finish') and before the
  // response's 'close': the request then counts as gone (not as a failed
  // upstream), and its body stream, and so the upstream request, end.
  res.end(STALLED_BODY, () => req.destroy(new Error('request body timed out')));
}

/**
 * Counts open connections per client IP address and refuses those over
 * `max` (0: no limit).
 *
 * Contract: `admit` is called once per accepted socket; it returns false
 * when the socket must be closed (the caller closes it), and otherwise
 * counts it until its 'close'. Counts never go negative and an address
 * with no open connection holds no memory.
 *
 * @example
 * const limit = new ConnectionLimit(256);
 * server.on('connection', (socket) => { if (!limit.admit(socket)) socket.destroy(); });
 */
export class ConnectionLimit {
  readonly max: number;
  #open = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
  }

  /** Open connections from `ip`. */
  openFrom(ip: string): number {
    return this.#open.get(ip) ?? 0;
  }

  admit(socket: Socket): boolean {
    const ip = socket.remoteAddress;
    if (this.max <= 0 || ip === undefined) return true;
    const n = this.#open.get(ip) ?? 0;
    if (n >= this.max) return false;
    this.#open.set(ip, n + 1);
    socket.once('close', () => {
      const left = (this.#open.get(ip) ?? 1) - 1;
      if (left > 0) this.#open.set(ip, left);
      else this.#open.delete(ip);
    });
    return true;
  }
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Per socket: the response in progress, and the pipelined requests behind it. */
interface Pipeline {
  current: ServerResponse;
  waiting: Array<[IncomingMessage, ServerResponse]> | null;
}
const PIPELINE = Symbol('hookgate.pipeline');
type PipelinedSocket = Socket & { [PIPELINE]?: Pipeline };

function isDone(res: ServerResponse): boolean {
  return res.writableFinished || res.destroyed;
}

/**
 * Runs `handle` for a request once every earlier request on its connection
 * has been answered. A client that pipelines gets its answers in the same
 * order as before, one request at a time, so each connection has at most
 * one request in flight upstream. Requests of a connection that closed
 * while they waited are dropped. The usual case (no pipelining) costs a
 * property read and write.
 *
 * @example
 * server.on('request', (req, res) => oneAtATime(req, res, handle));
 */
export function oneAtATime(req: IncomingMessage, res: ServerResponse, handle: Handler): void {
  const socket = req.socket as PipelinedSocket;
  const p = socket[PIPELINE];
  if (!p || (p.waiting === null && isDone(p.current))) {
    if (p) p.current = res;
    else socket[PIPELINE] = { current: res, waiting: null };
    return handle(req, res);
  }
  if (!p.waiting) {
    p.waiting = [];
    const next = () => {
      const q = p.waiting!;
      for (;;) {
        const item = q.shift();
        if (!item) {
          p.waiting = null;
          return;
        }
        if (isDone(item[1])) continue;
        p.current = item[1];
        if (q.length) item[1].once('close', next);
        else p.waiting = null;
        return handle(item[0], item[1]);
      }
    };
    p.current.once('close', next);
  }
  p.waiting.push([req, res]);
}

/** The limits of one gateway server, wired. */
export interface ClientLimits {
  /**
   * Serves a request within the limits: watches its body, and calls
   * `handle` once the connection's earlier requests are answered.
   */
  serve(req: IncomingMessage, res: ServerResponse, handle: Handler): void;
  /** Stops the tick. */
  close(): void;
}

/**
 * Applies `max_connections_per_client` and `body_timeout` to a gateway
 * server (`header_timeout` is in `headServerOptions`, given when the
 * server is created). Refused connections and stalled bodies are logged,
 * at most once a second each.
 *
 * @example
 * const server = createServer({ ...headServerOptions(s) }, (req, res) => limits.serve(req, res, handle));
 * const limits = applyClientLimits(server, s, logger);
 */
export function applyClientLimits(
  server: { on(event: 'connection', fn: (socket: Socket) => void): unknown },
  s: Pick<GatewaySettings, 'body_timeout' | 'max_connections_per_client'>,
  logger: Logger,
  clock: Clock = realClock,
): ClientLimits {
  const throttle = new LogThrottle(1000, () => clock.now());
  const perClient = new ConnectionLimit(s.max_connections_per_client);
  if (perClient.max > 0) {
    server.on('connection', (socket) => {
      if (perClient.admit(socket)) return;
      socket.destroy();
      const held = throttle.admit('refused');
      if (held >= 0) logger.warn({ client: socket.remoteAddress, limit: perClient.max, suppressed: held }, 'connection refused: this client already has max_connections_per_client open');
    });
  }
  const bodies = new BodyWatch({
    timeoutMs: s.body_timeout,
    clock,
    onStall: (req, res) => {
      const held = throttle.admit('stalled');
      if (held >= 0) logger.info({ client: req.socket.remoteAddress, url: req.url, body_timeout_ms: s.body_timeout, suppressed: held }, 'request body stalled longer than body_timeout; request ended');
      answerStalledBody(req, res);
    },
  });
  return {
    serve(req, res, handle) {
      bodies.watch(req, res);
      oneAtATime(req, res, handle);
    },
    close: () => bodies.close(),
  };
}
