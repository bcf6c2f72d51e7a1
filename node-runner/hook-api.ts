/**
 * @module hook-api
 * The runner's API for edge workers (PROTOCOL.md §2), served on
 * `runner.listen`:
 *
 * - `POST /v1/hooks`: a batch of hook frames, one merged verdict frame per
 *   request frame, in order (the plugin host fans each out to the route's
 *   plugins and applies `on_error`).
 * - `GET /v1/hooks/ws`: the same over a multiplexed WebSocket,
 *   `[u32 call id][frame]` each way; call id 0 carries notices
 *   (`{state: version}` when the state changes; `{error, id}` when a call
 *   could not be read).
 * - `GET /v1/state`: the routing snapshot, `ETag` = version.
 *
 * Every call needs `Authorization: Bearer <key>`; anything else gets a
 * bare 401. Every reply carries `Hookgate-State`.
 */

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Hono } from 'hono';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeEnvelope, decodeFrames, decodeHookData, encodeFrame, encodeResultFrame, packValue } from '../src/core/codec.ts';
import { HookgateError, isHookgateError } from '../src/core/errors.ts';
import type { HookClient } from '../src/core/gateway.ts';
import type { Logger } from '../src/core/log.ts';
import { hookName, type HookData, type HookName } from '../src/core/protocol.ts';
import type { StateSnapshot } from '../src/core/snapshot.ts';
import type { KeyRing } from './keys.ts';

export const FRAMES_TYPE = 'application/vnd.hookgate.frames';
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
  now?: () => number;
}

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

async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body as unknown as AsyncIterable<Uint8Array>) {
    n += c.length;
    if (n > limit) throw new HookgateError('FRAME_TOO_LARGE', `batch body over ${limit} bytes`);
    chunks.push(c);
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
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
  const now = deps.now ?? Date.now;
  const version = () => deps.snapshot()?.version ?? 'none';
  const app = new Hono();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1_048_576 + 8 });
  /** open links, with the Authorization header each was opened with */
  const links = new Map<WebSocket, string>();

  app.use('*', async (c, next) => {
    c.header('Hookgate-State', version());
    if (!deps.keys().verify(c.req.header('authorization'), now())) {
      return c.body(null, 401, { 'Hookgate-State': version() });
    }
    await next();
  });

  app.post('/v1/hooks', async (c) => {
    if (!deps.snapshot()) return c.json({ error: 'the runner has no config yet' }, 503);
    const type = c.req.header('content-type') ?? '';
    if (type.split(';')[0].trim() !== FRAMES_TYPE) return c.json({ error: `expected Content-Type: ${FRAMES_TYPE}` }, 400);
    let calls: Call[];
    try {
      const payloads = decodeFrames(await readLimited(c.req.raw.body, MAX_BATCH_BYTES));
      if (payloads.length === 0) return c.json({ error: 'the body holds no frames' }, 400);
      if (payloads.length > MAX_BATCH_FRAMES) return c.json({ error: `more than ${MAX_BATCH_FRAMES} frames in one batch` }, 413);
      calls = payloads.map((p, i) => {
        try {
          return callOf(deps.hooks, p);
        } catch (err) {
          throw new HookgateError((err as HookgateError).code ?? 'BAD_PAYLOAD', `frame ${i}: ${(err as Error).message}`);
        }
      });
    } catch (err) {
      const tooLarge = isHookgateError(err, 'FRAME_TOO_LARGE');
      return c.json({ error: (err as Error).message }, tooLarge ? 413 : 400);
    }
    const results = await Promise.all(calls.map((call) => call()));
    let n = 0;
    for (const r of results) n += r.length;
    const body = new Uint8Array(n);
    let off = 0;
    for (const r of results) {
      body.set(r, off);
      off += r.length;
    }
    return c.body(body, 200, { 'Content-Type': FRAMES_TYPE, 'Hookgate-State': version() });
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
    const key = deps.keys().verify(req.headers.authorization, now());
    if (!key) return reject(socket, 401, 'Unauthorized');
    if (!deps.snapshot()) return reject(socket, 503, 'Service Unavailable');
    wss.handleUpgrade(req, socket, head, (ws) => {
      links.set(ws, req.headers.authorization ?? '');
      let expiry: NodeJS.Timeout | undefined;
      if (key.expiresAt !== null) {
        // setTimeout holds at most ~24.8 days; a later expiry is re-armed when it fires.
        const arm = () => {
          const left = key.expiresAt! - now();
          if (left <= 0) return ws.close(4001, 'key expired');
          expiry = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
          expiry.unref();
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
        clearTimeout(expiry);
        clearInterval(ping);
      });
      ws.on('error', () => {});
      notice(ws, { state: version() });
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary || data.length < 8) return notice(ws, { error: 'expected a binary message [u32 call id][frame]', id: 0 });
        const id = data.readUInt32BE(0);
        let call: Call;
        try {
          const payloads = decodeFrames(data.subarray(4));
          if (payloads.length !== 1) throw new HookgateError('BAD_PAYLOAD', 'expected exactly one frame after the call id');
          call = callOf(deps.hooks, payloads[0]);
        } catch (err) {
          return notice(ws, { error: (err as Error).message, id });
        }
        void call().then((result) => {
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
