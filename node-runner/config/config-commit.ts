/**
 * @module config-commit
 * What every config source of a runner does with a new document (the SSE
 * config stream, `config-stream.ts`, and etcd, `etcd-source.ts`):
 * validate the result as a whole (the core schema, then the runner's
 * policy, `stream-policy.ts`), pass it to the runner only when it differs
 * from the config in force, and persist it as the last good config
 * (`<stateDir>/last-good.json`, written atomically: a temp file in the same
 * folder, fsync, rename) so a runner that starts while its source is
 * unreachable still serves. An invalid result is logged with every problem,
 * each naming its item (`routes/<id>.action: ...`), and the previous config
 * keeps serving. The file format is in `config-stream.ts`.
 */

import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../atomic-write.ts';
import { join } from 'node:path';
import { canonicalJson, configInput, emptyDoc, KINDS, type ConfigDoc, type Item, type Kind } from '../../src/core/config/config-doc.ts';
import { ConfigError, parseConfig, type Config } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import { resolvePaths } from './config-file.ts';
import { CLOSED_POLICY, streamProblems, type StreamPolicy } from './stream-policy.ts';

/** The file in the state directory that holds the last good config. */
export const LAST_GOOD_FILE = 'last-good.json';

/**
 * Validates a config input from a source (or the persisted state): the
 * core schema, then plugin paths and working directories resolved against
 * the runner's working directory (a config server sends absolute ones),
 * then the runner's `policy` (`streamProblems`: the plugin allow-list,
 * keys as references). Throws `ConfigError`.
 *
 * @example
 * const config = streamConfig(configInput(doc, local), { plugins: 'allowlist', allowed: ['/opt/hookgate/plugins/*'] });
 */
export function streamConfig(input: Record<string, unknown>, policy: StreamPolicy = CLOSED_POLICY): Config {
  const config = resolvePaths(parseConfig(input), process.cwd());
  const problems = streamProblems(config, policy);
  if (problems.length) throw new ConfigError(problems);
  return config;
}

export interface CommitterOptions {
  /** local settings merged into every config (`gateway`, `admin`, `runner.listen`) */
  local: Record<string, unknown>;
  /** which plugins a config from the source may name; default: none */
  policy?: StreamPolicy;
  /** applies a validated config (the runner's `apply`); a rejection leaves the previous document in force */
  onConfig: (config: Config) => Promise<void>;
  /** where `last-good.json` is written; without it nothing is persisted */
  stateDir?: string;
  /** the document already serving (restored from `last-good.json`) */
  initial?: ConfigDoc | null;
  logger: Logger;
  /** the source in log lines: "config applied from <source>" (default "the stream") */
  source?: string;
  /** told of each commit that changed the config (applied) or was refused (`hookgate_config_reloads_total`) */
  onResult?: (result: 'applied' | 'refused') => void;
}

/** Commits documents from one source; see the module. One `commit` at a time (the caller's loop). */
export class ConfigCommitter {
  #opts: CommitterOptions;
  #log: Logger;
  #doc: ConfigDoc;
  /** canonical JSON of the config input in force ('' when none came from here) */
  #applied = '';
  #source: string;

  constructor(opts: CommitterOptions) {
    this.#opts = opts;
    this.#source = opts.source ?? 'the stream';
    this.#log = opts.logger;
    this.#doc = opts.initial ?? emptyDoc();
    if (opts.initial) this.#applied = canonicalJson(configInput(opts.initial, opts.local));
  }

  /** The document in force (read-only use). */
  get doc(): ConfigDoc {
    return this.#doc;
  }

  /**
   * Validates `next`, applies it when it changes the config, makes it the
   * document in force and persists it. `fields` go into the log lines
   * (event, path, revision…). Returns false when `next` was refused
   * (invalid, or the runner failed to apply it): the previous document stays.
   */
  async commit(next: ConfigDoc, fields: Record<string, unknown>): Promise<boolean> {
    const input = configInput(next, this.#opts.local);
    let config: Config;
    try {
      config = streamConfig(input, this.#opts.policy);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems.map((p) => nameItems(p, input)) : [errorText(err)];
      this.#log.error({ ...fields, problems }, `config from ${this.#source} refused: the result is invalid; keeping the previous config`);
      this.#opts.onResult?.('refused');
      return false;
    }
    const key = canonicalJson(input);
    if (key !== this.#applied) {
      try {
        await this.#opts.onConfig(config);
      } catch (err) {
        this.#log.error({ ...fields, err: errorText(err) }, `applying the config from ${this.#source} failed; keeping the previous document`);
        this.#opts.onResult?.('refused');
        return false;
      }
      this.#applied = key;
      this.#opts.onResult?.('applied');
      this.#log.info({ ...fields, routes: config.routes.length, plugins: Object.keys(config.plugins).length }, `config applied from ${this.#source}`);
    } else {
      this.#log.debug(fields, `config from ${this.#source} unchanged`);
    }
    this.#doc = next;
    await this.#persist(next);
    return true;
  }

  async #persist(doc: ConfigDoc): Promise<void> {
    const dir = this.#opts.stateDir;
    if (!dir) return;
    const file = join(dir, LAST_GOOD_FILE);
    try {
      mkdirSync(dir, { recursive: true });
      await writeFileAtomic(file, JSON.stringify(docToJson(doc)) + '\n');
    } catch (err) {
      this.#log.error({ file, err: errorText(err) }, 'cannot persist the last good config; a restart while the source is down would not have it');
    }
  }
}

export function errorText(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}

/** Rewrites a problem's leading `routes[i]` / `runner.keys[i]` / `actions.x` / `plugins.x` as the item path `<kind>/<id>`. */
function nameItems(problem: string, input: Record<string, unknown>): string {
  const list = (x: unknown): Array<{ id?: unknown }> => (Array.isArray(x) ? x : []);
  let m = /^routes\[(\d+)\]/.exec(problem);
  if (m) return `routes/${String(list(input.routes)[Number(m[1])]?.id ?? m[1])}${problem.slice(m[0].length)}`;
  m = /^runner\.keys\[(\d+)\]/.exec(problem);
  if (m) return `keys/${String(list((input.runner as { keys?: unknown })?.keys)[Number(m[1])]?.id ?? m[1])}${problem.slice(m[0].length)}`;
  m = /^(actions|plugins)\.([A-Za-z0-9._-]+?)(?=[.:[])/.exec(problem);
  if (m && typeof input[m[1]] === 'object' && Object.hasOwn(input[m[1]] as object, m[2])) return `${m[1]}/${m[2]}${problem.slice(m[0].length)}`;
  return problem;
}


export function docToJson(doc: ConfigDoc): Record<string, unknown> {
  const items = {} as Record<Kind, Record<string, unknown>>;
  const tombstones = {} as Record<Kind, Record<string, number>>;
  for (const k of KINDS) {
    items[k] = Object.fromEntries([...doc.items[k]].map(([id, it]) => [id, { version: it.version, ...(it.order !== undefined ? { order: it.order } : {}), data: it.data }]));
    tombstones[k] = Object.fromEntries(doc.tombstones[k]);
  }
  return { format: 1, saved_at: new Date().toISOString(), input: configInput(doc, {}), items, tombstones };
}

/** Restores a document from `last-good.json`; throws naming the bad field. */
export function docFromJson(raw: unknown): ConfigDoc {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!isObj(raw) || raw.format !== 1) throw new Error('format: expected 1');
  if (!isObj(raw.items) || !isObj(raw.tombstones)) throw new Error('expected "items" and "tombstones" objects');
  const doc = emptyDoc();
  for (const k of KINDS) {
    const items = raw.items[k] ?? {};
    const tombs = raw.tombstones[k] ?? {};
    if (!isObj(items)) throw new Error(`items.${k}: expected an object`);
    if (!isObj(tombs)) throw new Error(`tombstones.${k}: expected an object`);
    for (const [id, it] of Object.entries(items)) {
      if (!isObj(it) || !isVersion(it.version) || !isObj(it.data)) throw new Error(`items.${k}.${id}: expected {version, data}`);
      if (it.order !== undefined && typeof it.order !== 'number') throw new Error(`items.${k}.${id}.order: expected a number`);
      const item: Item = { version: it.version, data: it.data };
      if (it.order !== undefined) item.order = it.order as number;
      doc.items[k].set(id, item);
    }
    for (const [id, v] of Object.entries(tombs)) {
      if (!isVersion(v)) throw new Error(`tombstones.${k}.${id}: expected a version`);
      doc.tombstones[k].set(id, v);
    }
  }
  return doc;
}
