/**
 * @module config-stream
 * The runner's side of the config stream (docs/protocol.md §3): follows a config
 * source over Server-Sent Events (`put`, `patch`, `delete`, `reconnect`),
 * keeps the item document with its version rules (`config-doc.ts`),
 * validates every result as a whole with `parseConfig` before handing it to
 * the runner (`onConfig`), and persists the last good config so a runner
 * that starts while the source is unreachable still serves.
 *
 * What it owns:
 * - **Applying.** Each event is applied to a copy of the document; the
 *   result, merged with the local settings (listeners, never from the
 *   stream), is validated, the runner's policy included (`stream-policy.ts`:
 *   plugins only from the allow-list, keys only as references); only a valid result is passed to `onConfig` and
 *   committed. An invalid one is logged with every problem, each naming its
 *   item (`routes/<id>.action: ...`), and the previous config keeps
 *   serving; the stream goes on. A result equal to the config in force
 *   (after a `put` of unchanged items) is not passed on. Events are applied
 *   one at a time, in order.
 * - **Faults.** Malformed event data (not JSON, or refused by the item
 *   model) restarts the stream without applying anything; `reconnect`
 *   restarts it at once. Any other failure (refused connection, HTTP
 *   error, stream ended, no byte for `readTimeoutMs`: the source sends
 *   heartbeats) reconnects with exponential backoff and jitter (`baseMs`
 *   doubling to `maxMs`, ±20 %), reset once a stream has delivered a
 *   complete valid `put` (the source is back: its next hiccup is retried
 *   after `baseMs`, so a change made meanwhile arrives within seconds) or
 *   has stayed up for `healthyMs`. 401/403 is logged once per change ("the config source
 *   refused the credential") and retried every `authRetryMs`; a source that
 *   fails TLS verification (`config-tls.ts`: CA, host name, pin) is logged
 *   once per change and retried with the backoff. The key is only ever
 *   sent through `fetch`, so with the CLI's it goes nowhere unverified, and
 *   redirects are refused.
 * - **Persistence.** After every committed change, `<stateDir>/last-good.json`
 *   is written atomically (a temp file in the same folder, fsync, rename).
 *   Format (version 1):
 *   `{"format":1,"saved_at":"<ISO time>","input":{routes,actions,plugins,runner:{keys}},"items":{"routes":{"<id>":{"version":N,"order":K,"data":{...}}},"actions":{},"plugins":{},"keys":{}},"tombstones":{"routes":{"<id>":N},"actions":{},"plugins":{},"keys":{}}}`.
 *   `input` is the config input without local settings (for people and
 *   tools); `items` and `tombstones` restore the document, so the version
 *   rules hold across restarts.
 *
 * Left to others: the runner (`runner.ts`) applies configs and answers
 * /readyz; the CLI (`cli.ts`) picks listeners, loads the persisted state
 * and wires signals; the item model and version rules are `config-doc.ts`'s.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { applyDelete, applyPatch, applyPut, configInput, type ConfigDoc } from '../../src/core/config/config-doc.ts';
import type { Config } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
import { Retry } from '../retry.ts';
import { ConfigCommitter, docFromJson, errorText, LAST_GOOD_FILE } from './config-commit.ts';
import { PIN_MISMATCH } from './config-tls.ts';
import type { StreamPolicy } from './stream-policy.ts';

/** Longest event accepted (characters), a whole config put included. */
const MAX_EVENT_CHARS = 32 * 1024 * 1024;
/** Most events waiting to be applied before the stream is restarted. */
const MAX_QUEUED_EVENTS = 1000;

export { LAST_GOOD_FILE, streamConfig } from './config-commit.ts';

/** Reconnect timings (ms). */
export interface Backoff {
  /** first delay after a failure; doubles per failure (default 1000) */
  baseMs: number;
  /** longest delay (default 30000) */
  maxMs: number;
  /** a stream up this long resets the delay to `baseMs` (default 60000) */
  healthyMs: number;
  /** delay between attempts while the source refuses the credential (default 60000) */
  authRetryMs: number;
}

const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 30_000, healthyMs: 60_000, authRetryMs: 60_000 };

export interface ConfigStreamOptions {
  /** the stream's URL, e.g. `http://config:9000/v1/stream` */
  url: string;
  /** the credential, sent as `Authorization: Bearer <key>` (only over the `fetch` given: the CLI's checks TLS first) */
  key: string;
  /** which plugins a streamed config may name (`stream-policy.ts`); default: none */
  policy?: StreamPolicy;
  /** local settings merged into every config (`gateway`, `admin`, `runner.listen`) */
  local: Record<string, unknown>;
  /** applies a validated config (the runner's `apply`); a rejection leaves the previous document in force */
  onConfig: (config: Config) => Promise<void>;
  /** told of each commit that changed the config or was refused (metrics) */
  onResult?: (result: 'applied' | 'refused') => void;
  /** where `last-good.json` is written; without it nothing is persisted */
  stateDir?: string;
  /** the state to continue from (`ConfigStream.loadPersisted`), already serving */
  initial?: PersistedState | null;
  logger: Logger;
  clock?: Clock;
  fetch?: typeof fetch;
  /** no byte (heartbeats included) for this long restarts the stream (default 45000) */
  readTimeoutMs?: number;
  backoff?: Partial<Backoff>;
  /** jitter source, [0, 1) (tests pin it) */
  random?: () => number;
}

/** What `last-good.json` restores: the document and its config input (without local settings). */
export interface PersistedState {
  doc: ConfigDoc;
  input: Record<string, unknown>;
}

type Outcome =
  | { kind: 'reconnect' }
  | { kind: 'malformed' }
  | { kind: 'timeout' }
  | { kind: 'auth'; status: number }
  | { kind: 'tls'; why: string }
  | { kind: 'error'; why: string }
  | { kind: 'stopped' };

interface Connection {
  abort: AbortController;
  outcome: Outcome | null;
  /** ends the connection (first outcome wins); queued events are dropped */
  end(outcome: Outcome): void;
}

/**
 * Follows a config stream.
 *
 * Contract: `start()` once (later calls are no-ops); it returns at once and
 * never throws: every failure is logged and retried. `onConfig` is only
 * ever called with a valid config, one call at a time. `stop()` is
 * idempotent and safe at any time: it aborts the request, clears timers,
 * waits for an `onConfig` in progress, and after it nothing more is
 * applied or persisted. `reconnect()` drops the current stream and
 * connects again at once.
 *
 * @example
 * const stream = new ConfigStream({ url, key, local, onConfig: (c) => runner.apply(c), stateDir, logger });
 * stream.start();
 * ...
 * await stream.stop();
 */
export class ConfigStream {
  #opts: ConfigStreamOptions;
  #log: Logger;
  #clock: Clock;
  #fetch: typeof fetch;
  #backoff: Backoff;
  #readTimeoutMs: number;
  #committer: ConfigCommitter;
  #conn: Connection | null = null;
  #loop: Promise<void> | null = null;
  #stopped = false;
  #retry: Retry;
  #authRefused = false;
  #tlsRefused = false;

  constructor(opts: ConfigStreamOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#clock = opts.clock ?? realClock;
    this.#fetch = opts.fetch ?? fetch;
    this.#backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.#retry = new Retry({ baseMs: this.#backoff.baseMs, maxMs: this.#backoff.maxMs, clock: this.#clock, random: opts.random });
    this.#readTimeoutMs = opts.readTimeoutMs ?? 45_000;
    this.#committer = new ConfigCommitter({
      local: opts.local,
      policy: opts.policy,
      onConfig: opts.onConfig,
      onResult: opts.onResult,
      stateDir: opts.stateDir,
      initial: opts.initial?.doc ?? null,
      logger: opts.logger,
    });
  }

  /** The document in force (read-only use). */
  get doc(): ConfigDoc {
    return this.#committer.doc;
  }

  #connected = false;

  /** Whether a stream from the source is open now (`hookgate_config_source_connected`). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts following the stream in the background. */
  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#run();
  }

  /** Drops the current stream and connects again without waiting. */
  reconnect(): void {
    this.#conn?.end({ kind: 'reconnect' });
    this.#retry.wake();
  }

  /** Stops following; see the class contract. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#conn?.end({ kind: 'stopped' });
    this.#retry.wake();
    await this.#loop;
  }

  /**
   * Reads `<stateDir>/last-good.json`. Returns null when there is none, or
   * when it cannot be used (logged when a logger is given): a runner then
   * starts without it rather than failing.
   *
   * @example
   * const persisted = ConfigStream.loadPersisted('/var/lib/hookgate');
   * const config = persisted && streamConfig(configInput(persisted.doc, local), policy);
   */
  static loadPersisted(stateDir: string, logger?: Logger): PersistedState | null {
    const file = join(stateDir, LAST_GOOD_FILE);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger?.warn({ file, err: (err as Error).message }, 'cannot read the last good config; starting without it');
      return null;
    }
    try {
      const doc = docFromJson(JSON.parse(text));
      return { doc, input: configInput(doc, {}) };
    } catch (err) {
      logger?.warn({ file, err: (err as Error).message }, 'the last good config file is unusable; starting without it');
      return null;
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const outcome = await this.#connectOnce();
      if (this.#stopped || outcome.kind === 'stopped') break;
      let delay: number;
      if (outcome.kind === 'reconnect') {
        delay = 0;
        this.#log.info('config source asked to reconnect; reconnecting');
      } else if (outcome.kind === 'auth') {
        delay = this.#backoff.authRetryMs;
      } else if (outcome.kind === 'tls') {
        delay = this.#retry.nextDelay();
        if (!this.#tlsRefused) {
          this.#tlsRefused = true;
          this.#log.error(
            { url: this.#opts.url, why: outcome.why, retry_ms: delay },
            'the config source failed TLS verification, so the key was not sent; keeping the current config and retrying (check --config-ca / --config-pin)',
          );
        }
      } else {
        delay = this.#retry.nextDelay();
        const why = outcome.kind === 'timeout' ? `no data for ${this.#readTimeoutMs} ms` : outcome.kind === 'malformed' ? 'a malformed event' : outcome.why;
        this.#log.warn({ url: this.#opts.url, why, retry_ms: delay }, 'config stream interrupted; keeping the current config and reconnecting');
      }
      if (delay > 0) await this.#retry.sleep(delay);
    }
  }

  /** One connection, from the request to its end; resolves with why it ended. */
  async #connectOnce(): Promise<Outcome> {
    const abort = new AbortController();
    const conn: Connection = {
      abort,
      outcome: null,
      end(outcome) {
        conn.outcome ??= outcome;
        abort.abort();
      },
    };
    this.#conn = conn;
    let readTimer: TimerHandle | null = null;
    let healthyTimer: TimerHandle | null = null;
    const armRead = () => {
      this.#clock.clearTimeout(readTimer);
      readTimer = this.#clock.setTimeout(() => conn.end({ kind: 'timeout' }), this.#readTimeoutMs, true);
    };
    // Events are applied one at a time, in order; the chain ends with the connection.
    // Both what waits in the chain and an unfinished event are bounded: past
    // the bounds the stream restarts, and the source's fresh put catches up.
    let chain: Promise<void> = Promise.resolve();
    let queued = 0;
    let unfinished = 0;
    const parser = createParser({
      onEvent: (ev) => {
        unfinished = 0;
        if (++queued > MAX_QUEUED_EVENTS) return conn.end({ kind: 'error', why: `more than ${MAX_QUEUED_EVENTS} events waiting to be applied` });
        chain = chain.then(async () => {
          try {
            if (!conn.outcome) await this.#handle(ev, conn);
          } finally {
            queued--;
          }
        });
      },
    });
    try {
      armRead();
      const res = await this.#fetch(this.#opts.url, {
        headers: { accept: 'text/event-stream', authorization: `Bearer ${this.#opts.key}` },
        signal: abort.signal,
        cache: 'no-store',
        // A redirect could lead the credential (or the trust) elsewhere.
        redirect: 'error',
      });
      if (res.status === 401 || res.status === 403) {
        void res.body?.cancel().catch(() => {});
        if (!this.#authRefused) {
          this.#authRefused = true;
          this.#log.error(
            { url: this.#opts.url, status: res.status, retry_ms: this.#backoff.authRetryMs },
            'the config source refused the credential; keeping the current config and retrying slowly (check --config-key-env)',
          );
        }
        return { kind: 'auth', status: res.status };
      }
      this.#tlsRefused = false;
      if (this.#authRefused) {
        this.#authRefused = false;
        this.#log.info({ url: this.#opts.url, status: res.status }, 'the config source accepts the credential again');
      }
      if (!res.ok || !res.body) {
        void res.body?.cancel().catch(() => {});
        return { kind: 'error', why: `HTTP ${res.status}` };
      }
      const type = res.headers.get('content-type') ?? '';
      if (!type.startsWith('text/event-stream')) {
        void res.body.cancel().catch(() => {});
        return { kind: 'error', why: `expected text/event-stream, got "${type}"` };
      }
      this.#log.info({ url: this.#opts.url }, 'config stream connected');
      this.#connected = true;
      healthyTimer = this.#clock.setTimeout(() => this.#retry.reset(), this.#backoff.healthyMs, true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armRead();
        unfinished += value.length;
        if (unfinished > MAX_EVENT_CHARS) {
          conn.end({ kind: 'malformed' });
          break;
        }
        parser.feed(value);
      }
      await chain;
      return conn.outcome ?? { kind: 'error', why: 'the source ended the stream' };
    } catch (err) {
      if (conn.outcome) return conn.outcome;
      const tls = tlsFailure(err);
      if (tls) return { kind: 'tls', why: tls };
      return { kind: 'error', why: errorText(err) };
    } finally {
      conn.outcome ??= { kind: 'error', why: 'ended' };
      this.#connected = false;
      abort.abort();
      this.#clock.clearTimeout(readTimer);
      this.#clock.clearTimeout(healthyTimer);
      // An onConfig in progress finishes before the next connection (or stop) goes on.
      await chain.catch(() => {});
      if (this.#conn === conn) this.#conn = null;
    }
  }

  async #handle(ev: EventSourceMessage, conn: Connection): Promise<void> {
    const name = ev.event;
    if (name === 'reconnect') return conn.end({ kind: 'reconnect' });
    if (name !== 'put' && name !== 'patch' && name !== 'delete') {
      this.#log.warn({ event: name ?? 'message' }, 'unknown event from the config source ignored');
      return;
    }
    let next: ConfigDoc;
    let path: string | undefined;
    try {
      const data: unknown = JSON.parse(ev.data);
      if (name === 'put') next = applyPut(this.#committer.doc, data);
      else {
        path = typeof (data as { path?: unknown })?.path === 'string' ? (data as { path: string }).path : undefined;
        const r = name === 'patch' ? applyPatch(this.#committer.doc, data) : applyDelete(this.#committer.doc, data);
        if (!r.applied) {
          const version = name === 'patch' ? (data as { data: { version: number } }).data.version : (data as { version: number }).version;
          this.#log.info({ event: name, path, version }, 'stale event ignored: its version is not greater than the one held for the item');
          return;
        }
        next = r.doc;
      }
    } catch (err) {
      this.#log.error({ event: name, path, err: errorText(err) }, 'malformed event from the config source; restarting the stream without applying it');
      return conn.end({ kind: 'malformed' });
    }
    const committed = await this.#committer.commit(next, { event: name, path });
    // A whole valid config arrived: the source works again, whatever came before.
    if (committed && name === 'put') this.#retry.reset();
  }
}

// ---------------------------------------------------------------------------

/** What failed when a request failed TLS verification (a CA, host name or pin problem), else ''. */
function tlsFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  if (code !== PIN_MISMATCH && !/CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)/.test(code)) return '';
  return `${code}: ${String(cause?.message ?? '')}`;
}

