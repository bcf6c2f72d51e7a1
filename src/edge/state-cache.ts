/**
 * @module edge/state-cache
 * The routing state of one worker isolate: loaded from a runner's
 * `GET /v1/state`, refreshed in the background when a hook reply carries a
 * different `Hookgate-State` or the TTL has passed (a conditional request,
 * usually a 304), and saved in the Cache API so that a new isolate can
 * route even when no runner answers.
 */

import type { Logger } from '../core/log.ts';
import { edgeStateOf, type EdgeState } from '../core/state/routing-snapshot.ts';
import type { RunnerPool } from './runners.ts';

/** The cache key of the last good state (never fetched: only put and matched). */
const CACHE_KEY = 'https://hookgate.internal/v1/state';

/** What the state cache needs of the Cache API. */
export interface StateStore {
  match(key: string): Promise<Response | undefined>;
  put(key: string, res: Response): Promise<void>;
}

/**
 * Contract: `get()` resolves with a state, or null when no runner answers
 * and nothing is cached; it waits for the network only when the isolate
 * has no state yet. `pending` is the background refresh in progress (the
 * worker hands it to `ctx.waitUntil`). Never throws.
 */
export class EdgeStateCache {
  #runners: RunnerPool;
  #ttlMs: number;
  #log: Logger;
  #store: StateStore | null;
  #now: () => number;
  #current: EdgeState | null = null;
  #etag: string | null = null;
  #checked = 0;
  #pending: Promise<void> | null = null;

  constructor(runners: RunnerPool, ttlMs: number, log: Logger, store: StateStore | null, now: () => number = Date.now) {
    this.#runners = runners;
    this.#ttlMs = ttlMs;
    this.#log = log;
    this.#store = store;
    this.#now = now;
  }

  /** The state in use (null before the first load). */
  get current(): EdgeState | null {
    return this.#current;
  }

  /** The background refresh in progress, if any. */
  get pending(): Promise<void> | null {
    return this.#pending;
  }

  async get(): Promise<EdgeState | null> {
    if (!this.#current) {
      await this.refresh();
      if (!this.#current) await this.#loadStored();
      return this.#current;
    }
    if (this.#now() - this.#checked >= this.#ttlMs) this.refreshSoon();
    return this.#current;
  }

  /** A hook reply said the runner's state is `version`: refresh when it is not ours. */
  notice(version: string | null): void {
    if (version && this.#current && version !== this.#current.version && version !== 'none') this.refreshSoon();
  }

  /** Starts a background refresh unless one is running. */
  refreshSoon(): void {
    this.#pending ??= this.refresh().finally(() => {
      this.#pending = null;
    });
  }

  /** Fetches the state now (conditionally); keeps the current one on any failure. */
  async refresh(): Promise<void> {
    this.#checked = this.#now();
    let got: Awaited<ReturnType<RunnerPool['state']>>;
    try {
      got = await this.#runners.state(this.#current ? this.#etag : null);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot refresh the routing state; keeping the last good one');
      return;
    }
    if (!got) return;
    try {
      this.#current = edgeStateOf(got.snapshot);
      this.#etag = got.etag;
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'a runner sent a routing state that does not validate; keeping the last good one');
      return;
    }
    if (this.#store) {
      const body = JSON.stringify(got.snapshot);
      await this.#store
        .put(CACHE_KEY, new Response(body, { headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=31536000', etag: got.etag ?? '' } }))
        .catch((err: Error) => this.#log.warn({ err: err.message }, 'cannot save the routing state in the cache'));
    }
  }

  async #loadStored(): Promise<void> {
    if (!this.#store) return;
    try {
      const res = await this.#store.match(CACHE_KEY);
      if (!res) return;
      this.#current = edgeStateOf(await res.json());
      this.#etag = res.headers.get('etag') || null;
      this.#log.warn({ version: this.#current.version }, 'no runner answered; routing by the last good state from the cache');
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'the cached routing state is unusable');
    }
  }
}
