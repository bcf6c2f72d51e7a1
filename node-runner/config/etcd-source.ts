/**
 * @module etcd-source
 * Following etcd: `EtcdFollower` hands on the keys under a prefix at each
 * revision; `EtcdSource` makes them a runner's config
 * (`hookgate serve --config-etcd`), and the config server streams them
 * (`hookgate config-server --etcd`). The follower reads every key
 * under the prefix at one revision R (a consistent snapshot), applies it,
 * then watches from R+1. The events of one watch response (etcd sends the
 * events of a revision together, so a transaction's are in one) are applied
 * to the key set together and the result committed as one version, the
 * store's revision: no request sees half a transaction.
 *
 * Faults: the client reconnects across the cluster's endpoints by itself
 * and the watch resumes where it left off; a watch that etcd cancels (its
 * revision was compacted while we were away) or a failed read starts over
 * with a full read, retried with backoff (`baseMs` doubling to `maxMs`,
 * ±20 %) while etcd is unreachable. Through all of it the config in force
 * keeps serving, and every committed version is persisted as the last good
 * config (`config-commit.ts`), so a runner restarted while etcd is down
 * serves what it had. Keys that are not hookgate items are logged and
 * ignored; a config that is invalid as a whole is refused, named by item,
 * and the previous one stays.
 */

import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { applyPut, emptyDoc, type ConfigDoc } from '../../src/core/config/config-doc.ts';
import type { Config } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import { realClock, type Clock } from '../../src/core/clock.ts';
import { Retry } from '../retry.ts';
import { ConfigCommitter, errorText } from './config-commit.ts';
import { openEtcd, putOf, readAll, type EtcdKv, type EtcdSettings } from './etcd.ts';
import type { StreamPolicy } from './stream-policy.ts';

export interface EtcdFollowerOptions {
  settings: EtcdSettings;
  /**
   * Called with every key under the prefix as of `revision`: after the
   * full read (`how` "read") and after each watch response ("watch"). One
   * call at a time, in order.
   */
  onRevision: (kvs: EtcdKv[], revision: number, how: 'read' | 'watch') => Promise<void>;
  logger: Logger;
  clock?: Clock;
  backoff?: { baseMs?: number; maxMs?: number };
  random?: () => number;
}

/**
 * Follows the keys under a prefix: a full read, then a watch, again after
 * a compaction or a failure (see the module). `start()` once; `stop()`
 * ends it (idempotent) and waits for a call of `onRevision` in progress.
 */
export class EtcdFollower {
  #opts: EtcdFollowerOptions;
  #log: Logger;
  #client: Etcd3 | null = null;
  #watcher: Watcher | null = null;
  /** the keys as of `#revision` */
  #kvs = new Map<string, EtcdKv>();
  #stopped = false;
  #loop: Promise<void> | null = null;
  #restart: (() => void) | null = null;
  #retry: Retry;
  /** one change at a time, in order */
  #chain: Promise<void> = Promise.resolve();
  #watching = false;

  /** Whether the watch is connected now. */
  get watching(): boolean {
    return this.#watching;
  }
  #down = false;

  constructor(opts: EtcdFollowerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#retry = new Retry({ baseMs: opts.backoff?.baseMs ?? 1000, maxMs: opts.backoff?.maxMs ?? 30_000, clock: opts.clock ?? realClock, random: opts.random });
  }

  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#run();
  }

  /** Starts over with a full read at once (SIGHUP). */
  reread(): void {
    this.#restart?.();
    this.#retry.wake();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#restart?.();
    this.#retry.wake();
    await this.#loop;
    await this.#chain.catch(() => {});
    this.#client?.close();
    this.#client = null;
  }

  async #run(): Promise<void> {
    const { settings } = this.#opts;
    try {
      this.#client = await openEtcd(settings);
    } catch (err) {
      this.#log.error({ err: errorText(err) }, 'cannot load the etcd client');
      return;
    }
    while (!this.#stopped) {
      const why = await this.#followOnce(this.#client);
      if (this.#stopped) break;
      const delay = why === 'restart' ? 0 : this.#retry.nextDelay();
      if (why !== 'restart') {
        if (!this.#down) this.#log.warn({ endpoints: settings.hosts, why, retry_ms: delay }, 'cannot read the config from etcd; keeping the current config and retrying');
        else this.#log.debug({ why, retry_ms: delay }, 'etcd still unreachable');
        this.#down = true;
      }
      if (delay > 0) await this.#retry.sleep(delay);
    }
  }

  /** A full read, then the watch until it fails or is restarted; resolves with why it ended. */
  async #followOnce(client: Etcd3): Promise<string> {
    const { prefix } = this.#opts.settings;
    let snapshot;
    try {
      snapshot = await readAll(client, prefix);
    } catch (err) {
      return errorText(err);
    }
    if (this.#stopped) return 'restart';
    if (this.#down) this.#log.info({ endpoints: this.#opts.settings.hosts, revision: snapshot.revision }, 'etcd reachable again');
    this.#down = false;
    this.#retry.reset();
    this.#kvs = new Map(snapshot.kvs.map((kv) => [kv.key, kv]));
    await this.#enqueue(snapshot.revision, 'read');

    return new Promise<string>((resolve) => {
      if (this.#stopped) return resolve('restart');
      // The watcher's handlers go on before it connects: the client retries a
      // watch that cannot connect yet, and says so only through these events.
      const w = client.watch().prefix(prefix).startRevision(String(snapshot.revision + 1)).watcher();
      let ended = false;
      const end = (why: string) => {
        if (ended) return;
        ended = true;
        this.#watching = false;
        this.#restart = null;
        if (this.#watcher === w) this.#watcher = null;
        void w.cancel().catch(() => {});
        resolve(why);
      };
      this.#restart = () => end('restart');
      this.#watcher = w;
      w.on('connected', () => {
        this.#watching = true;
        if (this.#down) this.#log.info({ from: w.request.start_revision }, 'etcd watch connected again');
        else this.#log.info({ from: snapshot.revision + 1 }, 'watching etcd for changes');
        this.#down = false;
      });
      w.on('data', (res) => {
        const events = res.events ?? [];
        if (!events.length) return;
        for (const ev of events) this.#applyEvent(ev.type, ev.kv);
        void this.#enqueue(Number(res.header.revision), 'watch');
      });
      w.on('disconnected', (err: Error) => {
        this.#watching = false;
        if (!this.#down) this.#log.warn({ err: err.message }, 'lost the etcd watch; keeping the current config and reconnecting');
        this.#down = true;
      });
      // etcd cancels a watch whose start revision was compacted: start over with a full read.
      w.on('error', (err: Error) => {
        this.#log.warn({ err: err.message }, 'the etcd watch was cancelled (compacted?); reading the whole config again');
        end('restart');
      });
    });
  }

  #applyEvent(type: string, kv: IKeyValue): void {
    const key = kv.key.toString('utf8');
    if (type === 'Delete') this.#kvs.delete(key);
    else this.#kvs.set(key, { key, value: kv.value.toString('utf8'), modRevision: Number(kv.mod_revision) });
  }

  /** Hands the key set as of `revision` on (after the calls before it). */
  #enqueue(revision: number, how: 'read' | 'watch'): Promise<void> {
    const kvs = [...this.#kvs.values()];
    const run = this.#chain.then(() => (this.#stopped ? undefined : this.#opts.onRevision(kvs, revision, how)));
    this.#chain = run.catch((err: unknown) => this.#log.error({ revision, err: errorText(err) }, 'handling a change from etcd failed'));
    return this.#chain;
  }

}

export interface EtcdSourceOptions {
  settings: EtcdSettings;
  policy?: StreamPolicy;
  /** local settings merged into every config (listeners) */
  local: Record<string, unknown>;
  onConfig: (config: Config) => Promise<void>;
  /** told of each commit that changed the config or was refused (metrics) */
  onResult?: (result: 'applied' | 'refused') => void;
  stateDir?: string;
  /** the document already serving (last good) */
  initial?: ConfigDoc | null;
  logger: Logger;
  clock?: Clock;
  backoff?: { baseMs?: number; maxMs?: number };
  random?: () => number;
}

/** A runner's config from etcd: what the follower reads, committed as configs (`config-commit.ts`). */
export class EtcdSource {
  #follower: EtcdFollower;
  #committer: ConfigCommitter;
  #revision = 0;

  constructor(opts: EtcdSourceOptions) {
    const log = opts.logger;
    this.#committer = new ConfigCommitter({ local: opts.local, policy: opts.policy, onConfig: opts.onConfig, onResult: opts.onResult, stateDir: opts.stateDir, initial: opts.initial ?? null, logger: log, source: 'etcd' });
    this.#follower = new EtcdFollower({
      ...opts,
      onRevision: async (kvs, revision, how) => {
        const { put, problems } = putOf(kvs, opts.settings.prefix);
        for (const p of problems) log.warn({ revision }, p);
        let doc: ConfigDoc;
        try {
          doc = applyPut(emptyDoc(), put);
        } catch (err) {
          log.error({ revision, err: errorText(err) }, 'keys in etcd are not a config; keeping the previous config');
          return;
        }
        if (await this.#committer.commit(doc, { revision, how })) this.#revision = revision;
      },
    });
  }

  /** Whether the etcd watch is connected now (`hookgate_config_source_connected`). */
  get connected(): boolean {
    return this.#follower.watching;
  }

  /** The revision of the config in force from etcd (0 before the first read). */
  get revision(): number {
    return this.#revision;
  }

  get doc(): ConfigDoc {
    return this.#committer.doc;
  }

  start(): void {
    this.#follower.start();
  }

  /** Reads the whole config again at once (SIGHUP). */
  reread(): void {
    this.#follower.reread();
  }

  stop(): Promise<void> {
    return this.#follower.stop();
  }
}
