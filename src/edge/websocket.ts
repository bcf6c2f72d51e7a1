/**
 * @module edge/websocket
 * WebSocket sessions through the edge worker: the core decides (route,
 * on_request, on_connect, target); this module connects to the upstream
 * with `fetch` + `Upgrade: websocket`, bridges the two sockets with a
 * WebSocketPair, counts bytes, and reports on_disconnect when either side
 * closes.
 */

import type { ClientInfo, Gateway, HookClient } from '../core/gateway/gateway.ts';
import type { Logger } from '../core/log.ts';

const utf8 = new TextEncoder();

function size(data: unknown): number {
  if (typeof data === 'string') return utf8.encode(data).length;
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/**
 * Proxies one upgrade request. Returns the response for the client (101
 * with the client's end of the pair, or the refusal); `done` settles when
 * the session has ended and on_disconnect was sent (hand it to waitUntil).
 */
export async function proxyWebSocket(
  gateway: Gateway<never>,
  hooks: HookClient,
  req: Request,
  client: ClientInfo,
  log: Logger,
): Promise<{ response: Response; done: Promise<void> | null }> {
  const plan = await gateway.upgrade(req, client);
  if (plan.kind === 'drop') return { response: new Response(null, { status: 403 }), done: null };
  if (plan.kind === 'respond') return { response: plan.response, done: null };
  let res: Response;
  try {
    res = await fetch(plan.url, { headers: plan.headers });
  } catch (err) {
    plan.release();
    log.warn({ route: plan.routeId, target: plan.target, err: (err as Error).message }, 'upstream upgrade failed');
    return { response: new Response('upstream unreachable\n', { status: 502 }), done: null };
  }
  const upstream = (res as Response & { webSocket?: WebSocket | null }).webSocket;
  if (!upstream) {
    // Not upgraded: the answer goes through the response phase like any response.
    plan.release();
    return { response: await plan.refused(res), done: null };
  }
  const pair = new WebSocketPair();
  const [toClient, server] = [pair[0], pair[1]];
  (server as WebSocket & { accept(): void }).accept();
  (upstream as WebSocket & { accept(): void }).accept();
  // Newer compatibility dates deliver binary messages as Blobs; relay bytes as bytes.
  server.binaryType = 'arraybuffer';
  upstream.binaryType = 'arraybuffer';
  const started = Date.now();
  let rx = 0;
  let tx = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  let ended = false;
  const end = (code?: number, reason?: string) => {
    if (ended) return;
    ended = true;
    const c = code && code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000;
    try {
      server.close(c, reason);
    } catch {}
    try {
      upstream.close(c, reason);
    } catch {}
    plan.release();
    hooks.onDisconnect(plan.routeId, { r: plan.routeId, tg: plan.target, a: client.remoteAddr, rx, tx, ms: Date.now() - started });
    finish();
  };
  server.addEventListener('message', (e) => {
    rx += size(e.data);
    try {
      upstream.send(e.data as string | ArrayBuffer);
    } catch {
      end(1011, 'upstream gone');
    }
  });
  upstream.addEventListener('message', (e) => {
    tx += size(e.data);
    try {
      server.send(e.data as string | ArrayBuffer);
    } catch {
      end(1011, 'client gone');
    }
  });
  server.addEventListener('close', (e) => end(e.code, e.reason));
  upstream.addEventListener('close', (e) => end(e.code, e.reason));
  server.addEventListener('error', () => end(1011));
  upstream.addEventListener('error', () => end(1011));
  const headers = new Headers();
  const protocol = res.headers.get('sec-websocket-protocol');
  if (protocol) headers.set('sec-websocket-protocol', protocol);
  return { response: new Response(null, { status: 101, webSocket: toClient, headers } as ResponseInit), done };
}
