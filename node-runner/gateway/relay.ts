/**
 * @module gateway/relay
 * The byte relay of a relayed session, one code path for both kinds the
 * gateway has: WebSocket sessions (`ws-proxy.ts`, after the 101) and TLS
 * pass-through (`pass.ts`, from the ClientHello on). It pipes both ways
 * with backpressure, counts bytes each way, ends both sides when either
 * closes or fails, and reports the session's end once, with bytes and
 * duration (the caller turns that into on_disconnect). `Sessions` keeps
 * the open ones so a listener's stop can end them all and wait for their
 * reports. Deciding whether a session may start is the core's
 * (`src/core/connect.ts`).
 */

import type { Duplex } from 'node:stream';

/** How a session ended: bytes from the client (`rx`), to it (`tx`), and its length. */
export interface SessionEnd {
  rx: number;
  tx: number;
  ms: number;
}

export interface RelayOptions {
  /** bytes the client sent that were already read (a peeked ClientHello, an upgrade's head): sent upstream first and counted */
  clientHead?: Buffer;
  /** bytes the upstream sent that were already read: sent to the client first and counted */
  upstreamHead?: Buffer;
  /** when the session started (default: now) */
  startedAt?: number;
  now?: () => number;
}

/**
 * Relays `client` ⇄ `upstream` until either side closes or fails; then
 * both are destroyed and `onEnd` is called exactly once.
 *
 * @example
 * relay(clientSocket, upstreamSocket, { clientHead: hello }, (end) => hooks.onDisconnect(route, { ...end, r: route, tg, a }));
 */
export function relay(client: Duplex, upstream: Duplex, opts: RelayOptions, onEnd: (end: SessionEnd) => void): void {
  const now = opts.now ?? Date.now;
  const started = opts.startedAt ?? now();
  let rx = 0;
  let tx = 0;
  if (opts.clientHead?.length) {
    rx += opts.clientHead.length;
    upstream.write(opts.clientHead);
  }
  if (opts.upstreamHead?.length) {
    tx += opts.upstreamHead.length;
    client.write(opts.upstreamHead);
  }
  client.on('data', (c: Buffer) => (rx += c.length));
  upstream.on('data', (c: Buffer) => (tx += c.length));
  client.pipe(upstream);
  upstream.pipe(client);
  let done = false;
  const close = () => {
    if (done) return;
    done = true;
    client.destroy();
    upstream.destroy();
    onEnd({ rx, tx, ms: now() - started });
  };
  for (const s of [client, upstream]) {
    s.on('error', close);
    s.on('close', close);
  }
}

/**
 * The open sessions of one listener.
 *
 * Contract: `add` a session's client socket with a promise that settles
 * once its end is reported; `closeAll` destroys every client socket (so
 * each relay ends and reports) and resolves when every report is made.
 * Safe to call `closeAll` more than once.
 */
export class Sessions {
  #open = new Map<Duplex, Promise<void>>();

  get size(): number {
    return this.#open.size;
  }

  /** Tracks a session until `ended` settles. */
  add(client: Duplex, ended: Promise<void>): void {
    this.#open.set(client, ended);
    void ended.finally(() => this.#open.delete(client));
  }

  async closeAll(): Promise<void> {
    const waits = [...this.#open.values()];
    for (const s of this.#open.keys()) s.destroy();
    await Promise.all(waits);
  }
}
