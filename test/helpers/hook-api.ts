/**
 * @module test/helpers/hook-api
 * Clients of a runner's hook API (docs/protocol.md §2), as an edge worker calls
 * it: `postFrames` (POST /v1/hooks), `getState` (GET /v1/state) and
 * `openLink` (the /v1/hooks/ws WebSocket, with the `ws` package because it
 * can send an Authorization header).
 */

import { WebSocket as WsClient, type RawData } from 'ws';
import { FRAMES_TYPE } from '../../node-runner/hook-api/hook-api.ts';
import { decodeFrames, unpackValue } from '../../src/core/protocol/codec.ts';
import type { Scope } from './scope.ts';

export interface ApiReply {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text(): string;
  json<T = { error: string }>(): T;
}

async function reply(res: Response): Promise<ApiReply> {
  const body = new Uint8Array(await res.arrayBuffer());
  const text = () => new TextDecoder().decode(body);
  return { status: res.status, headers: res.headers, body, text, json: <T>() => JSON.parse(text()) as T };
}

/** The Authorization header for `key` (null: none), or `authorization` as given. */
function auth(key: string | null, authorization?: string): Record<string, string> {
  if (authorization !== undefined) return { authorization };
  return key === null ? {} : { authorization: `Bearer ${key}` };
}

/**
 * `POST /v1/hooks` with `body` (frames, already encoded; several are sent
 * as one body). `key` null sends no Authorization header.
 */
export async function postFrames(url: string, key: string | null, body: Uint8Array | Uint8Array[], opts: { contentType?: string; authorization?: string } = {}): Promise<ApiReply> {
  const headers = { 'content-type': opts.contentType ?? FRAMES_TYPE, ...auth(key, opts.authorization) };
  const bytes = Array.isArray(body) ? Buffer.concat(body) : body;
  return reply(await fetch(`${url}/v1/hooks`, { method: 'POST', headers, body: bytes as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(15_000) }));
}

/** `GET /v1/state`, conditionally with `ifNoneMatch`. */
export async function getState(url: string, key: string | null, ifNoneMatch?: string): Promise<ApiReply> {
  const headers = { ...auth(key), ...(ifNoneMatch ? { 'if-none-match': ifNoneMatch } : {}) };
  return reply(await fetch(`${url}/v1/state`, { headers, signal: AbortSignal.timeout(15_000) }));
}

/** One message from the runner on a hook link: the call id and its frame's payload. */
export interface LinkMessage {
  id: number;
  payload: Uint8Array;
  /** the payload decoded as msgpack (notices on id 0 are plain maps) */
  value: unknown;
}

export interface Link {
  ws: WsClient;
  /** every message received, in order */
  received: LinkMessage[];
  /** Sends `[u32 id][frame]`. */
  call(id: number, frame: Uint8Array): void;
  /** Resolves with the first message (received or to come) matching `pred`. */
  next(pred: (m: LinkMessage) => boolean, timeoutMs?: number): Promise<LinkMessage>;
  closed: Promise<{ code: number; reason: string; at: number }>;
}

/**
 * Opens `GET /v1/hooks/ws` with `key` (null: no Authorization header, or
 * `opts.authorization` as given); resolves once open. Rejects with
 * the HTTP status (`err.status`) when the upgrade is refused. Closed with
 * the scope.
 */
export function openLink(s: Scope, url: string, key: string | null, opts: { authorization?: string } = {}): Promise<Link> {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(`${url.replace(/^http/, 'ws')}/v1/hooks/ws`, { headers: auth(key, opts.authorization) });
    s.defer(() => {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
    });
    const received: LinkMessage[] = [];
    const waiters = new Set<() => void>();
    const closed = new Promise<{ code: number; reason: string; at: number }>((r) =>
      ws.on('close', (code, reason) => r({ code, reason: reason.toString(), at: Date.now() })),
    );
    ws.on('unexpected-response', (_req, res) => {
      const err = Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode ?? 0, headers: res.headers });
      res.resume();
      reject(err);
    });
    ws.on('error', reject);
    ws.on('message', (data: RawData) => {
      const buf = new Uint8Array(data as Buffer);
      const id = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(0);
      const [payload] = decodeFrames(buf.subarray(4));
      let value: unknown;
      try {
        value = unpackValue(payload);
      } catch {
        value = undefined;
      }
      received.push({ id, payload, value });
      for (const w of waiters) w();
    });
    ws.on('open', () =>
      resolve({
        ws,
        received,
        closed,
        call(id, frame) {
          const msg = new Uint8Array(4 + frame.length);
          new DataView(msg.buffer).setUint32(0, id);
          msg.set(frame, 4);
          ws.send(msg);
        },
        next(pred, timeoutMs = 5000) {
          return new Promise<LinkMessage>((res, rej) => {
            const check = () => {
              const m = received.find(pred);
              if (!m) return;
              waiters.delete(check);
              clearTimeout(timer);
              res(m);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              rej(new Error(`no matching link message within ${timeoutMs} ms; got ${JSON.stringify(received.map((m) => ({ id: m.id, value: m.value })))}`));
            }, timeoutMs);
            waiters.add(check);
            check();
          });
        },
      }),
    );
  });
}
