/**
 * @module edge/runners
 * How an edge worker reaches its runners: one or more base URLs, a key,
 * and a transport (`http`: one POST of frames per call; `ws`: through the
 * RunnerLink Durable Object's multiplexed WebSocket). Picks a runner per
 * call round robin over the healthy ones; on a connect error or a 5xx it
 * marks that runner down for a while and tries the next one once.
 */

import { decodeFrames } from '../core/protocol/codec.ts';
import { HookgateError } from '../core/errors.ts';
import { FRAMES_TYPE } from '../core/protocol/protocol.ts';


export interface RunnerSettings {
  urls: string[];
  key: string;
  transport: 'http' | 'ws';
  /** how long a failing runner is skipped (default 10 s) */
  downMs: number;
  /** deadline of one hook call, the runner's fan-out included */
  hookTimeoutMs: number;
}

/** What the pool needs of a Durable Object namespace (the ws transport). */
export interface LinkNamespace {
  idFromName(name: string): unknown;
  get(id: never): { fetch(input: string, init?: RequestInit): Promise<Response> };
}

/** A reply from a runner: the result frame's payload and the runner's state version. */
export interface RunnerReply {
  payload: Uint8Array;
  state: string | null;
}

/**
 * The runners of one worker isolate.
 *
 * Contract: `call` and `state` are safe to call concurrently; they throw
 * `PLUGIN_UNAVAILABLE` when no runner answered (the caller applies the
 * route's edge failure verdict). A 401 is not a runner failure but a
 * wrong key: it is reported, not retried.
 */
export class RunnerPool {
  readonly settings: RunnerSettings;
  #links: LinkNamespace | null;
  #down = new Map<string, number>();
  #rr = 0;
  #now: () => number;

  constructor(settings: RunnerSettings, links: LinkNamespace | null, now: () => number = Date.now) {
    if (settings.urls.length === 0) throw new HookgateError('BAD_CONFIG', 'RUNNER_URL: no runner URL configured');
    this.settings = settings;
    this.#links = links;
    this.#now = now;
  }

  /** Runners to try, healthy ones first, starting at the next in round-robin order. */
  #order(): string[] {
    const urls = this.settings.urls;
    const start = this.#rr++ % urls.length;
    const rotated = [...urls.slice(start), ...urls.slice(0, start)];
    const now = this.#now();
    const healthy = rotated.filter((u) => (this.#down.get(u) ?? 0) <= now);
    return healthy.length ? [...healthy, ...rotated.filter((u) => !healthy.includes(u))] : rotated;
  }

  #markDown(url: string): void {
    this.#down.set(url, this.#now() + this.settings.downMs);
  }

  async #try<T>(what: string, attempt: (url: string) => Promise<T | 'retry'>): Promise<T> {
    const order = this.#order().slice(0, 2);
    const reasons: string[] = [];
    for (const url of order) {
      try {
        const r = await attempt(url);
        if (r !== 'retry') {
          this.#down.delete(url);
          return r;
        }
        reasons.push(`${url}: server error`);
      } catch (err) {
        if (err instanceof HookgateError && err.code === 'BAD_CONFIG') throw err;
        reasons.push(`${url}: ${(err as Error).message}`);
      }
      this.#markDown(url);
    }
    throw new HookgateError('PLUGIN_UNAVAILABLE', `${what}: no runner answered (${reasons.join('; ')})`);
  }

  #auth(): Record<string, string> {
    return { authorization: `Bearer ${this.settings.key}` };
  }

  /**
   * Makes one hook call: `frame` is a complete request frame; resolves with
   * the result frame's payload and the runner's `Hookgate-State`.
   */
  call(frame: Uint8Array): Promise<RunnerReply> {
    return this.#try('hook call', async (url) => {
      const signal = AbortSignal.timeout(this.settings.hookTimeoutMs);
      const res =
        this.settings.transport === 'ws' && this.#links
          ? await this.#links.get(this.#links.idFromName(url) as never).fetch('https://runner-link/call', {
              method: 'POST',
              body: frame,
              headers: { 'x-runner-url': url, 'content-type': FRAMES_TYPE },
              signal,
            })
          : await fetch(`${url}/v1/hooks`, { method: 'POST', body: frame, headers: { ...this.#auth(), 'content-type': FRAMES_TYPE }, signal });
      if (res.status === 401) {
        await res.body?.cancel();
        throw new HookgateError('BAD_CONFIG', `runner ${url} refused RUNNER_KEY (401)`);
      }
      if (res.status >= 500) {
        await res.body?.cancel();
        return 'retry';
      }
      if (res.status !== 200) throw new Error(`runner answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const frames = decodeFrames(new Uint8Array(await res.arrayBuffer()));
      if (frames.length !== 1) throw new Error(`runner sent ${frames.length} result frames for one call`);
      return { payload: frames[0], state: res.headers.get('hookgate-state') };
    });
  }

  /**
   * Fetches the state snapshot (conditionally when `etag` is given).
   * Resolves with the parsed JSON, or null for 304 Not Modified.
   */
  state(etag: string | null): Promise<{ snapshot: unknown; etag: string | null } | null> {
    return this.#try('state', async (url) => {
      const headers: Record<string, string> = this.#auth();
      if (etag) headers['if-none-match'] = etag;
      const res = await fetch(`${url}/v1/state`, { headers, signal: AbortSignal.timeout(this.settings.hookTimeoutMs) });
      if (res.status === 304) return null;
      if (res.status === 401) throw new HookgateError('BAD_CONFIG', `runner ${url} refused RUNNER_KEY (401)`);
      if (res.status >= 500) {
        await res.body?.cancel();
        return 'retry';
      }
      if (res.status !== 200) throw new Error(`runner answered ${res.status}`);
      return { snapshot: await res.json(), etag: res.headers.get('etag') };
    });
  }
}
