/**
 * @module hook-api
 * The runner's API for edge workers (docs/protocol.md §2), served on
 * `runner.listen`:
 *
 * - `POST /v1/hooks`: a batch of hook frames, one merged verdict frame per
 *   request frame, in order (the plugin host fans each out to the route's
 *   plugins and applies `on_error`). Served on Node's request directly
 *   (`handle`); the rest through the Hono `app`.
 * - `GET /v1/hooks/ws`: the same over a multiplexed WebSocket,
 *   `[u32 call id][frame]` each way; call id 0 carries notices
 *   (`{state: version}` when the state changes; `{error, id}` when a call
 *   could not be read).
 * - `GET /v1/state`: the routing snapshot, `ETag` = version.
 *
 * Every call needs `Authorization: Bearer <key>`; anything else gets a
 * bare 401. Every reply carries `Hookgate-State`.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Hono } from 'hono';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeEnvelope, decodeFrames, decodeHookData, encodeFrame, encodeResultFrame, packValue } from '../../src/core/protocol/codec.ts';
import { HookgateError, isHookgateError } from '../../src/core/errors.ts';
import type { HookClient } from '../../src/core/gateway/gateway.ts';
import type { Logger } from '../../src/core/log.ts';
import { FRAMES_TYPE, hookName, type HookData, type HookName } from '../../src/core/protocol/protocol.ts';
import type { StateSnapshot } from '../../src/core/state/routing-snapshot.ts';
import { systemClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
import type { KeyRejection, KeyRing } from './keys.ts';

export { FRAMES_TYPE };
/** Largest batch body accepted: 16 MiB (each frame is still limited to 1 MiB). */
export const MAX_BATCH_BYTES = 16 * 1_048_576;
/** Most frames in one batch. */
export const MAX_BATCH_FRAMES = 1024;

export interface HookApiDeps {
  hooks: HookClient;
  /** the current snapshot, or null while the runner has no config */
  snapshot(): StateSnapshot | null;
  keys(): KeyRing;
  logger: Logger;
  /** wall time, ms since the epoch (what key expiry is compared with); default `clock.now` */
  now?: () => number;
  /** the wall clock keys expire by and a link's expiry timer runs on; default `systemClock` (Date.now and Node timers) */
  clock?: Clock;
  /** where calls and key rejections are counted (default: nowhere) */
  metrics?: HookApiRecorder;
}

/** How a hook API request or WebSocket call ended (`hookgate_hook_api_requests_total`). */
export type HookApiOutcome = 'ok' | 'unauthorized' | 'bad_request' | 'too_large' | 'unavailable' | 'error';

/** What the hook API counts: calls by transport and outcome, key rejections by reason. Cheap, never throws. */
export interface HookApiRecorder {
  /** one `POST /v1/hooks` (http), one call on a link (ws), or one link refused at its upgrade (ws) */
  call(transport: 'http' | 'ws', outcome: HookApiOutcome): void;
  /** a request or link refused for its key (`GET /v1/state` and link upgrades too) */
  rejected(reason: KeyRejection): void;
}

const NO_RECORDER: HookApiRecorder = { call() {}, rejected() {} };

/** A decoded call, ready to run. */
type Call = () => Promise<Uint8Array>;

/**
 * Decodes one request frame's payload into a call. Throws `BAD_PAYLOAD`
 * naming what is wrong.
 */
function callOf(hooks: HookClient, payload: Uint8Array): Call {
  const env = decodeEnvelope(payload);
  const hook = hookName(env.t);
  if (!hook) throw new HookgateError('BAD_PAYLOAD', `unknown hook type ${env.t}`);
  const data = decodeHookData(hook, env.d);
  const route = hook === 'on_response' ? (data as HookData['on_response']).req.r : (data as { r: string }).r;
  if (!route) throw new HookgateError('BAD_PAYLOAD', `${hook}: the data names no route ("r")`);
  return run(hooks, hook, route, data);
}

function run(hooks: HookClient, hook: HookName, route: string, data: unknown): Call {
  switch (hook) {
    case 'on_request':
      return async () => encodeResultFrame(hook, await hooks.onRequest(route, data as HookData['on_request']));
    case 'on_response':
      return async () => encodeResultFrame(hook, await hooks.onResponse(route, data as HookData['on_response']));
    case 'on_connect':
      return async () => encodeResultFrame(hook, await hooks.onConnect(route, data as HookData['on_connect']));
    case 'on_disconnect':
      return async () => {
        hooks.onDisconnect(route, data as HookData['on_disconnect']);
        return encodeResultFrame(hook, null);
      };
  }
}

/**
 * Creates the hook API.
 *
 * Contract: `upgrade` handles a Node server's 'upgrade' event for
 * `/v1/hooks/ws` (other paths get 404); `notifyState` tells every open link
 * the new version; `closeAll` ends every link (at shutdown). Links opened
 * with a key that expires are closed at that moment.
 */
export function createHookApi(deps: HookApiDeps) {
  const log = deps.logger;
  const clock = deps.clock ?? systemClock;
  const now = deps.now ?? (() => clock.now());
  const metrics = deps.metrics ?? NO_RECORDER;
  /** the key an Authorization header names, or null (the rejection counted) */
  const keyOf = (authorization: string | null | undefined) => {
    const r = deps.keys().check(authorization, now());
    if ('reason' in r) {
      metrics.rejected(r.reason);
      return null;
    }
    return r;
  };
  const version = () => deps.snapshot()?.version ?? 'none';
  const app = new Hono();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1_048_576 + 8 });
  /** open links, with the Authorization header each was opened with */
  const links = new Map<WebSocket, string>();

  app.use('*', async (c, next) => {
    c.header('Hookgate-State', version());
    if (!keyOf(c.req.header('authorization'))) {
      return c.body(null, 401, { 'Hookgate-State': version() });
    }
    await next();
  });

  app.get('/v1/state', (c) => {
    const snap = deps.snapshot();
    if (!snap) return c.json({ error: 'the runner has no config yet' }, 503);
    const etag = `"${snap.version}"`;
    const inm = c.req.header('if-none-match');
    if (inm && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)) {
      return c.body(null, 304, { ETag: etag });
    }
    return c.json(snap, 200, { ETag: etag, 'Cache-Control': 'no-cache' });
  });

  app.notFound((c) => c.json({ error: 'not found' }, 404));
  app.onError((err, c) => {
    log.error({ err: err.message }, 'hook API request failed');
    return c.json({ error: 'internal error' }, 500);
  });

  /**
   * `POST /v1/hooks`, served straight on Node's request and response: a
   * hook call is small and frequent, and going through web Request and
   * stream objects cost more than the call itself.
   */
  async function batch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = (status: number, body?: Uint8Array | string, type?: string) => {
      metrics.call('http', status === 200 ? 'ok' : status === 401 ? 'unauthorized' : status === 413 ? 'too_large' : status === 503 ? 'unavailable' : status >= 500 ? 'error' : 'bad_request');
      const headers: Record<string, string | number> = { 'hookgate-state': version() };
      if (type) headers['content-type'] = type;
      headers['content-length'] = body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length;
      res.writeHead(status, headers);
      res.end(body);
    };
    const error = (status: number, message: string) => reply(status, JSON.stringify({ error: message }), 'application/json');
    if (!keyOf(req.headers.authorization)) {
      req.resume();
      return reply(401);
    }
    if (!deps.snapshot()) {
      req.resume();
      return error(503, 'the runner has no config yet');
    }
    if ((req.headers['content-type'] ?? '').split(';')[0].trim() !== FRAMES_TYPE) {
      req.resume();
      return error(400, `expected Content-Type: ${FRAMES_TYPE}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_BATCH_BYTES) {
          res.setHeader('connection', 'close');
          return error(413, `batch body over ${MAX_BATCH_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
    } catch {
      return void res.destroy();
    }
    let calls: Call[];
    try {
      const payloads = decodeFrames(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      if (payloads.length === 0) return error(400, 'the body holds no frames');
      if (payloads.length > MAX_BATCH_FRAMES) return error(413, `more than ${MAX_BATCH_FRAMES} frames in one batch`);
      calls = payloads.map((p, i) => {
        try {
          return callOf(deps.hooks, p);
        } catch (err) {
          throw new HookgateError((err as HookgateError).code ?? 'BAD_PAYLOAD', `frame ${i}: ${(err as Error).message}`);
        }
      });
    } catch (err) {
      return error(isHookgateError(err, 'FRAME_TOO_LARGE') ? 413 : 400, (err as Error).message);
    }
    const results = calls.length === 1 ? [await calls[0]()] : await Promise.all(calls.map((call) => call()));
    reply(200, results.length === 1 ? results[0] : Buffer.concat(results), FRAMES_TYPE);
  }

  function reject(socket: Duplex, status: number, text: string): void {
    socket.end(`HTTP/1.1 ${status} ${text}\r\nHookgate-State: ${version()}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  }

  function notice(ws: WebSocket, value: unknown): void {
    const frame = encodeFrame(packValue(value));
    const msg = new Uint8Array(4 + frame.length);
    msg.set(frame, 4);
    if (ws.readyState === ws.OPEN) ws.send(msg);
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/hooks/ws') return reject(socket, 404, 'Not Found');
    const key = keyOf(req.headers.authorization);
    if (!key) {
      metrics.call('ws', 'unauthorized');
      return reject(socket, 401, 'Unauthorized');
    }
    if (!deps.snapshot()) {
      metrics.call('ws', 'unavailable');
      return reject(socket, 503, 'Service Unavailable');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      links.set(ws, req.headers.authorization ?? '');
      let expiry: TimerHandle | null = null;
      const expiresAt = key.expiresAt;
      if (expiresAt !== null) {
        // setTimeout holds at most ~24.8 days; a later expiry is re-armed when
        // it fires. Anything but a positive time left (NaN included) closes.
        const arm = () => {
          const left = expiresAt - now();
          if (!(left > 0)) return ws.close(4001, 'key expired');
          expiry = clock.setTimeout(arm, Math.min(left, 2 ** 31 - 1), true);
        };
        arm();
      }
      let alive = true;
      const ping = setInterval(() => {
        if (!alive) return ws.terminate();
        alive = false;
        ws.ping();
      }, 30_000);
      ping.unref();
      ws.on('pong', () => (alive = true));
      ws.on('close', () => {
        links.delete(ws);
        clock.clearTimeout(expiry);
        clearInterval(ping);
      });
      ws.on('error', () => {});
      notice(ws, { state: version() });
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary || data.length < 8) {
          metrics.call('ws', 'bad_request');
          return notice(ws, { error: 'expected a binary message [u32 call id][frame]', id: 0 });
        }
        const id = data.readUInt32BE(0);
        let call: Call;
        try {
          const payloads = decodeFrames(data.subarray(4));
          if (payloads.length !== 1) throw new HookgateError('BAD_PAYLOAD', 'expected exactly one frame after the call id');
          call = callOf(deps.hooks, payloads[0]);
        } catch (err) {
          metrics.call('ws', 'bad_request');
          return notice(ws, { error: (err as Error).message, id });
        }
        void call().then((result) => {
          metrics.call('ws', 'ok');
          if (ws.readyState !== ws.OPEN) return;
          const msg = Buffer.allocUnsafe(4 + result.length);
          msg.writeUInt32BE(id, 0);
          msg.set(result, 4);
          ws.send(msg);
        });
      });
    });
  }

  return {
    app,
    upgrade,
    /**
     * Serves `POST /v1/hooks` on a Node request; returns false for any
     * other request, which then goes to `app`.
     */
    handle(req: IncomingMessage, res: ServerResponse): boolean {
      if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== '/v1/hooks') return false;
      batch(req, res).catch((err: Error) => {
        log.error({ err: err.message }, 'hook batch failed');
        metrics.call('http', 'error');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json', 'hookgate-state': version() });
        res.end(JSON.stringify({ error: 'internal error' }));
      });
      return true;
    },
    /** Tells every open link that the state changed. */
    notifyState(v: string): void {
      for (const ws of links.keys()) notice(ws, { state: v });
    },
    /** Closes links whose key is no longer valid (after the keys changed). */
    recheckKeys(): void {
      for (const [ws, auth] of links) if (!deps.keys().verify(auth, now())) ws.close(4001, 'key revoked');
    },
    /** Closes every link (at shutdown). */
    closeAll(): void {
      for (const ws of links.keys()) ws.close(1001, 'runner stopping');
      wss.close();
    },
  };
}

export type HookApi = ReturnType<typeof createHookApi>;
