/**
 * @module edge/link
 * The `ws` hook transport: a Durable Object (one per runner URL) keeping
 * one WebSocket to the runner's `/v1/hooks/ws`, with any number of calls in
 * flight, told apart by call id. Workers call it with `POST /call` (a
 * request frame in, the result frame out, `Hookgate-State` in the headers).
 *
 * The link reconnects on demand with exponential backoff (1 s ... 30 s);
 * while it is down calls fail at once (502), and calls in flight when it
 * drops fail cleanly, so the worker can try the next runner.
 */

import { decodeFrames, unpackValue } from '../core/protocol/codec.ts';
import { FRAMES_TYPE } from '../core/protocol/protocol.ts';

interface LinkEnv {
  RUNNER_KEY?: string;
}

interface Waiting {
  resolve: (frame: Uint8Array) => void;
  reject: (err: Error) => void;
}


class KeyRefused extends Error {}
class LinkBroken extends Error {}

export class RunnerLink {
  #env: LinkEnv;
  #ws: WebSocket | null = null;
  #connecting: Promise<WebSocket> | null = null;
  #nextId = 1;
  #waiting = new Map<number, Waiting>();
  #state = '';
  #failures = 0;
  #retryAt = 0;
  /** whether the last attempt to connect was refused for the key */
  #refused = false;

  constructor(_state: unknown, env: LinkEnv) {
    this.#env = env;
  }

  async fetch(req: Request): Promise<Response> {
    const url = req.headers.get('x-runner-url');
    if (!url) return new Response('x-runner-url missing\n', { status: 400 });
    const frame = new Uint8Array(await req.arrayBuffer());
    const msg = new Uint8Array(4 + frame.length);
    msg.set(frame, 4);
    // A link the runner is closing (an expired key, a restart) may still look
    // open: when sending fails, drop it and try once more on a fresh one.
    for (let attempt = 0; ; attempt++) {
      let ws: WebSocket;
      try {
        ws = await this.#connect(url);
      } catch (err) {
        // A refused key is the worker's configuration problem, not a runner failure.
        const status = err instanceof KeyRefused ? 401 : 502;
        return new Response(`runner link down: ${(err as Error).message}\n`, { status });
      }
      const id = this.#nextId;
      this.#nextId = this.#nextId >= 0xfffffffe ? 1 : this.#nextId + 1;
      new DataView(msg.buffer).setUint32(0, id);
      try {
        const result = await new Promise<Uint8Array>((resolve, reject) => {
          this.#waiting.set(id, { resolve, reject });
          req.signal?.addEventListener('abort', () => {
            this.#waiting.delete(id);
            reject(new Error('call abandoned by the worker'));
          });
          try {
            ws.send(msg);
          } catch (err) {
            this.#waiting.delete(id);
            reject(new LinkBroken((err as Error).message));
          }
        });
        return new Response(result, { headers: { 'content-type': FRAMES_TYPE, 'hookgate-state': this.#state } });
      } catch (err) {
        if (err instanceof LinkBroken && attempt === 0) {
          if (this.#ws === ws) this.#ws = null;
          this.#retryAt = 0;
          continue;
        }
        return new Response(`${(err as Error).message}\n`, { status: 502 });
      }
    }
  }

  #connect(url: string): Promise<WebSocket> {
    if (this.#ws) return Promise.resolve(this.#ws);
    if (Date.now() < this.#retryAt) {
      const wait = `retrying in ${this.#retryAt - Date.now()} ms`;
      return Promise.reject(this.#refused ? new KeyRefused(`the runner refused RUNNER_KEY (401); ${wait}`) : new Error(`reconnecting: ${wait}`));
    }
    this.#connecting ??= this.#open(url).finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  async #open(url: string): Promise<WebSocket> {
    let res: Response;
    try {
      res = await fetch(`${url}/v1/hooks/ws`, { headers: { upgrade: 'websocket', authorization: `Bearer ${this.#env.RUNNER_KEY ?? ''}` } });
    } catch (err) {
      this.#refused = false;
      this.#backoff();
      throw err;
    }
    const ws = (res as Response & { webSocket?: WebSocket | null }).webSocket;
    if (!ws) {
      this.#backoff();
      this.#refused = res.status === 401;
      if (this.#refused) throw new KeyRefused('the runner refused RUNNER_KEY (401)');
      throw new Error(`runner refused the link (${res.status})`);
    }
    (ws as WebSocket & { accept(): void }).accept();
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    this.#failures = 0;
    this.#refused = false;
    ws.addEventListener('message', (e) => this.#onMessage(e.data));
    const dropped = (e?: Event) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      // The runner closes a link whose key expired or was revoked with 4001:
      // reconnect at once, so the next call learns the key is refused (401).
      if ((e as CloseEvent | undefined)?.code === 4001) this.#retryAt = 0;
      else this.#backoff();
      for (const [id, w] of this.#waiting) {
        this.#waiting.delete(id);
        w.reject(new Error('the link to the runner dropped'));
      }
    };
    ws.addEventListener('close', dropped);
    ws.addEventListener('error', dropped);
    return ws;
  }

  #backoff(): void {
    this.#failures++;
    this.#retryAt = Date.now() + Math.min(30_000, 1000 * 2 ** (this.#failures - 1));
  }

  #onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer) || data.byteLength < 8) return;
    const bytes = new Uint8Array(data);
    const id = new DataView(data).getUint32(0);
    let frames: Uint8Array[];
    try {
      frames = decodeFrames(bytes.subarray(4));
    } catch {
      return;
    }
    if (frames.length !== 1) return;
    if (id === 0) {
      let notice: unknown;
      try {
        notice = unpackValue(frames[0]);
      } catch {
        return;
      }
      const n = notice as { state?: unknown; error?: unknown; id?: unknown };
      if (typeof n.state === 'string') this.#state = n.state;
      if (typeof n.error === 'string' && typeof n.id === 'number') {
        const w = this.#waiting.get(n.id);
        this.#waiting.delete(n.id);
        w?.reject(new Error(`runner: ${n.error}`));
      }
      return;
    }
    const w = this.#waiting.get(id);
    if (!w) return;
    this.#waiting.delete(id);
    // The result goes back to the worker as a whole frame.
    w.resolve(bytes.slice(4));
  }
}
